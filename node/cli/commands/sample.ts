// `coop sample`: a PNG grid of DDIM samples from a `coop train` output folder.
// The same checkpoint, options and seed give the same PNG bytes.
import { mkdir, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { backendFlag, parseCommandArgs, REQUESTED_BACKENDS, requireFlags, wholeNumberFlag } from '../args.ts'
import type { Command } from '../command.ts'
import { UsageError } from '../command.ts'
import { componentLogger } from '../../log.ts'

/** Bounds a grid to what one process can sample in reasonable time and memory. */
const MAX_SAMPLES = 1024

const usage = `Usage: coop sample --checkpoint <out> --out <file.png> [options]

Samples images with the U-Net's EMA weights (DDIM, classifier-free guidance) and writes a grid.

Options:
  --checkpoint <dir>   a \`coop train\` output folder (holding autoencoder/ and unet/)
  --out <file.png>     the PNG to write
  --n <count>          number of samples (default 16)
  --class <label>      sample only this class; by default classes take turns
  --guidance <w>       guidance weight (default: the config's); 1 = none, 0 = unconditional
  --steps <n>          DDIM steps (default: the config's)
  --seed <n>           seed (default 0)
  --backend <name>     ${REQUESTED_BACKENDS.join('|')} (default auto)`

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
    })
    requireFlags(values, ['checkpoint', 'out'])
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
    const { sampleImages, renderGrid } = await import('../../../trainer/sample.ts')
    const { TrainerError } = await import('../../../trainer/errors.ts')
    await initBackend(backend, log)
    const autoencoder = await loadCheckpoint(join(values.checkpoint, 'autoencoder'))
    const unet = await loadCheckpoint(join(values.checkpoint, 'unet'))
    const config = unet.config
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
    const pixels = await sampleImages({
      config,
      autoencoder: autoencoder.weights,
      unet: unet.weights,
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
    process.stdout.write(`${n} samples written to ${values.out}\n`)
    return 0
  },
}
