// `coop sample`: a PNG grid of DDIM samples from a `coop train` output folder.
// The same checkpoint, options and seed give the same PNG bytes.
import { mkdir, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { backendFlag, parseCommandArgs, REQUESTED_BACKENDS, requireFlags, wholeNumberFlag } from '../args.ts'
import { assertFileOutputFree } from '../outputs.ts'
import type { Command } from '../command.ts'
import { CliError, UsageError } from '../command.ts'
import type { CoopConfig } from '../../../configs/index.ts'
import { sniffFileKind, withArticle } from '../../file-kind.ts'
import type { NamedTensor } from '../../round/tensors.ts'
import { loadCoopSampleSource } from '../../sample/coop-checkpoint.ts'
import { assertStoreFolder } from '../../store/dirs.ts'
import { componentLogger } from '../../log.ts'

/** Bounds a grid to what one process can sample in reasonable time and memory. */
const MAX_SAMPLES = 1024

const usage = `Usage: coop sample --checkpoint <dir> --out <file.png> [options]

Samples images (DDIM, classifier-free guidance) and writes a grid, from either
  - a \`coop train\` output folder (autoencoder/ and unet/; the U-Net's EMA weights), or
  - a cooperative U-Net checkpoint (<store>/checkpoints/unet-rNNNNNN, or an exported demo
    checkpoint such as demo-out/checkpoints/23): its provenance is verified against its charter,
    its files against the signed digests, and the autoencoder it names is looked up beside it,
    in --store, or taken from --autoencoder, and used only if its digests match.

Options:
  --checkpoint <dir>   a \`coop train\` output folder or a cooperative U-Net checkpoint directory
  --store <dir>        the node store to find a cooperative checkpoint's autoencoder in
  --autoencoder <dir>  the autoencoder checkpoint directory the U-Net checkpoint names
  --out <file.png>     the PNG to write
  --n <count>          number of samples (default 16)
  --class <label>      sample only this class; by default classes take turns
  --guidance <w>       guidance weight (default: the config's); 1 = none, 0 = unconditional
  --steps <n>          DDIM steps (default: the config's)
  --seed <n>           seed (default 0)
  --score              also score the samples with the in-domain quality metric (trainer/quality):
                       class accuracy and Fréchet distance against held-out real Twemoji
                       (Twemoji-category models only; use --n of at least 9 per class)
  --backend <name>     ${REQUESTED_BACKENDS.join('|')} (default auto)
  --force              overwrite an existing --out`

/** Which kind of checkpoint folder `dir` is; anything else is named in the error. */
async function resolveSource(dir: string, store?: string, autoencoder?: string): Promise<'coop' | 'train'> {
  const kind = await sniffFileKind(dir)
  if (kind === 'missing') throw new CliError('CHECKPOINT_MISSING', `--checkpoint ${dir}: no such folder`)
  if (kind !== 'folder')
    throw new CliError(
      'WRONG_FILE_KIND',
      `--checkpoint ${dir} is ${withArticle(kind)}, not a checkpoint folder`,
    )
  if (store !== undefined) await assertStoreFolder(store)
  if ((await sniffFileKind(join(dir, 'provenance.json'))) !== 'missing') return 'coop'
  if ((await sniffFileKind(join(dir, 'unet'))) === 'folder') {
    if (store !== undefined || autoencoder !== undefined)
      throw new UsageError(
        '--store and --autoencoder apply to cooperative checkpoints, not to a coop train folder',
      )
    return 'train'
  }
  throw new CliError(
    'NOT_A_CHECKPOINT',
    `--checkpoint ${dir} is neither a coop train output (autoencoder/, unet/) nor a cooperative checkpoint (provenance.json)`,
  )
}

export const command: Command = {
  summary: 'write a PNG grid of samples from a trained checkpoint',
  usage,
  async run(argv) {
    const { values } = parseCommandArgs(argv, {
      checkpoint: { type: 'string' },
      out: { type: 'string' },
      n: { type: 'string' },
      class: { type: 'string' },
      guidance: { type: 'string' },
      steps: { type: 'string' },
      seed: { type: 'string' },
      backend: { type: 'string' },
      force: { type: 'boolean' },
      store: { type: 'string' },
      autoencoder: { type: 'string' },
      score: { type: 'boolean' },
    })
    requireFlags(values, ['checkpoint', 'out'])
    await assertFileOutputFree(values.out, values.force === true)
    const backend = backendFlag(values.backend)
    const n = wholeNumberFlag('n', values.n, { min: 1, max: MAX_SAMPLES }) ?? 16
    const seed = wholeNumberFlag('seed', values.seed, { min: 0, max: Number.MAX_SAFE_INTEGER }) ?? 0
    let guidance: number | undefined
    if (values.guidance !== undefined) {
      guidance = Number(values.guidance)
      if (!Number.isFinite(guidance) || guidance < 0 || guidance > 100)
        throw new UsageError(`--guidance must be a number in [0, 100], got '${values.guidance}'`)
    }
    const log = componentLogger('sample')
    const { initBackend } = await import('../../../trainer/backend.ts')
    const { loadCheckpoint } = await import('../../../trainer/checkpoint.ts')
    const { samplePixels, renderGrid } = await import('../../../trainer/sample.ts')
    const { TrainerError } = await import('../../../trainer/errors.ts')
    const source = await resolveSource(values.checkpoint, values.store, values.autoencoder)
    await initBackend(backend, log)
    let config: CoopConfig
    let weights: { autoencoder: NamedTensor[]; unet: NamedTensor[] }
    let from: string
    if (source === 'coop') {
      const coop = await loadCoopSampleSource(values.checkpoint, {
        ...(values.store === undefined ? {} : { store: values.store }),
        ...(values.autoencoder === undefined ? {} : { autoencoder: values.autoencoder }),
      })
      config = coop.config
      weights = { autoencoder: coop.autoencoder, unet: coop.unet }
      from = `cooperative checkpoint ${coop.checkpoint} (U-Net round ${coop.round}; autoencoder from ${coop.autoencoderFrom}), provenance and digests verified`
    } else {
      const autoencoder = await loadCheckpoint(join(values.checkpoint, 'autoencoder'))
      const unet = await loadCheckpoint(join(values.checkpoint, 'unet'))
      config = unet.config
      weights = { autoencoder: autoencoder.weights, unet: unet.weights }
      from = `${values.checkpoint} (coop train)`
    }
    const steps =
      wholeNumberFlag('steps', values.steps, { min: 1, max: config.diffusion.timesteps }) ??
      config.diffusion.samplingSteps
    const nullLabel = config.classes.length
    let labels: number[]
    if (values.class !== undefined) {
      const label = config.classes.indexOf(values.class)
      if (label < 0)
        throw new TrainerError(
          'UNKNOWN_CLASS',
          `class '${values.class}' is not one of the model's classes (${config.classes.join(', ') || 'none: unconditional'})`,
        )
      labels = new Array(n).fill(label)
    } else if (config.classes.length > 0)
      labels = Array.from({ length: n }, (_, i) => i % config.classes.length)
    else labels = new Array(n).fill(nullLabel)
    const pixels = await samplePixels({
      config,
      autoencoder: weights.autoencoder,
      unet: weights.unet,
      labels,
      guidance: guidance ?? config.diffusion.guidance,
      steps,
      seed,
    })
    // With classes taking turns, one column per class makes each column one class.
    const columns =
      values.class === undefined && config.classes.length > 0
        ? Math.min(config.classes.length, n)
        : Math.ceil(Math.sqrt(n))
    const png = await renderGrid(pixels, n, config.image.size, columns, 2)
    await mkdir(dirname(values.out), { recursive: true })
    await writeFile(values.out, png)
    process.stdout.write(`${n} samples written to ${values.out}\nfrom ${from}\n`)
    if (values.score === true) {
      if (config.classes.length === 0)
        throw new TrainerError('INVALID_ARGUMENT', '--score needs a class-conditional model')
      const { bytesToPixels, heldOutReference, loadQualityModel, scoreImages } =
        await import('../../../trainer/quality/index.ts')
      const model = await loadQualityModel()
      try {
        const names = labels.map((label) => config.classes[label] as string)
        const reference = await heldOutReference(model, config.image.size, [...new Set(names)].sort())
        const score = scoreImages(model, reference, bytesToPixels(pixels), names, config.image.size)
        process.stdout.write(
          `quality of ${score.samples} samples (in-domain classifier, held-out real Twemoji; see trainer/quality/README.md):\n` +
            `  class accuracy ${(score.classAccuracy * 100).toFixed(1)}% (chance ${(100 / config.classes.length).toFixed(1)}%)\n` +
            `  Fréchet distance ${score.frechetDistance.toFixed(3)} (compare only at the same sample count)\n` +
            `  precision ${score.precision.toFixed(3)}, recall ${score.recall.toFixed(3)}\n`,
        )
      } finally {
        model.dispose()
      }
    }
    return 0
  },
}
