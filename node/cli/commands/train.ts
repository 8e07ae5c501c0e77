// `coop train`: trains the autoencoder, then the U-Net on its latents, on a local image
// folder, with periodic checkpoints, metrics.jsonl and --resume (see trainer/train.ts).
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { loadConfig } from '../../../configs/index.ts'
import {
  backendFlag,
  parseCommandArgs,
  parseOverride,
  REQUESTED_BACKENDS,
  requireFlags,
  threadsFlag,
  wholeNumberFlag,
} from '../args.ts'
import type { Command } from '../command.ts'
import { componentLogger } from '../../log.ts'

const usage = `Usage: coop train --config <name|path> --data <dir> --out <dir> [options]

Trains the autoencoder, then the U-Net on its latents. Writes <out>/autoencoder/ and
<out>/unet/ (checkpoints: model.safetensors with EMA weights, config.json, training state),
<out>/metrics.jsonl ({phase, step, loss, imgPerSec[, evalLoss]} per logged step) and
<out>/samples/unet-<step>.png at each U-Net checkpoint.

Options:
  --config <name|path>   tiny | emoji32 | gpu256, or a JSON file (may "extends" a name)
  --data <dir>           image folder: <dir>/<class>/*.png|jpg|gif|webp, or flat (unconditional)
  --out <dir>            output folder
  --ae-steps <n>         autoencoder steps (overrides autoencoder.steps)
  --unet-steps <n>       U-Net steps (overrides unet.steps)
  --backend <name>       ${REQUESTED_BACKENDS.join('|')} (default auto)
  --threads <n>          wasm: threads per training step, data-parallel (default min(2, cores))
  --seed <n>             seed of the initial weights and the training stream (default 0)
  --resume               continue the run in --out from its last checkpoints
  --set <key=value>      any other config override, e.g. --set unet.lr=0.0005 (repeatable)`

/** Exit status of a run stopped by Ctrl-C: 128 + SIGINT, as shells report it. */
const EXIT_INTERRUPTED = 130

interface ProgressBar {
  start(total: number, start: number, payload: Record<string, unknown>): void
  update(value: number, payload: Record<string, unknown>): void
  stop(): void
}

function createBar(): ProgressBar {
  const require = createRequire(import.meta.url)
  const cliProgress = require('cli-progress') as {
    SingleBar: new (options: Record<string, unknown>) => ProgressBar
  }
  return new cliProgress.SingleBar({
    format: '{phase} |{bar}| step {value}/{total} | loss {loss} | {rate} img/s | ETA {eta_formatted}',
    stream: process.stderr,
    hideCursor: true,
    etaBuffer: 50,
  })
}

export const command: Command = {
  summary: 'train the autoencoder then the U-Net on an image folder',
  usage,
  async run(argv) {
    const { values } = parseCommandArgs(argv, {
      config: { type: 'string' },
      data: { type: 'string' },
      out: { type: 'string' },
      'ae-steps': { type: 'string' },
      'unet-steps': { type: 'string' },
      backend: { type: 'string' },
      threads: { type: 'string' },
      seed: { type: 'string' },
      resume: { type: 'boolean' },
      set: { type: 'string', multiple: true },
    })
    requireFlags(values, ['config', 'data', 'out'])
    const backend = backendFlag(values.backend)
    const threads = threadsFlag(values.threads)
    const seed = wholeNumberFlag('seed', values.seed) ?? 0
    const overrides: Record<string, unknown> = Object.fromEntries((values.set ?? []).map(parseOverride))
    const aeSteps = wholeNumberFlag('ae-steps', values['ae-steps'])
    const unetSteps = wholeNumberFlag('unet-steps', values['unet-steps'])
    if (aeSteps !== undefined) overrides['autoencoder.steps'] = aeSteps
    if (unetSteps !== undefined) overrides['unet.steps'] = unetSteps
    const config = loadConfig(values.config, overrides)

    const tty = process.stderr.isTTY === true
    const log = componentLogger('train')
    // On a terminal the progress bar is the output; logs would tear it, so only warnings pass.
    const trainerLog = tty ? log.child({}, { level: 'warn' }) : log
    const { initBackend } = await import('../../../trainer/backend.ts')
    const { loadImageFolder } = await import('../../../trainer/data.ts')
    const { runTraining } = await import('../../../trainer/train.ts')
    const choice = await initBackend(backend, log, { threads })
    const dataset = await loadImageFolder({
      dir: values.data,
      size: config.image.size,
      log: trainerLog,
    })
    if (dataset.skipped.length > 0)
      process.stderr.write(
        `coop train: skipped ${dataset.skipped.length} unusable file(s); see the log lines above\n`,
      )
    // Shown even on a terminal (where info logs are hidden): each refusal is the file owner's word.
    for (const refused of dataset.optedOut)
      process.stderr.write(
        `coop train: refused ${refused.path}: its metadata forbids training: ${refused.reason}\n`,
      )
    if (dataset.optedOut.length > 0)
      process.stderr.write(
        `coop train: refused ${dataset.optedOut.length} file(s) whose embedded metadata forbids AI training\n`,
      )
    const out = values.out
    const bar = tty ? createBar() : undefined
    // Ctrl-C: say how to continue. The periodic checkpoints are what --resume starts from.
    const resumeCommand = `coop train ${argv.join(' ')}${values.resume === true ? '' : ' --resume'}`
    process.once('SIGINT', () => {
      bar?.stop()
      process.stderr.write(
        `\ncoop train: interrupted. ${out} keeps the checkpoints written every ${config.training.checkpointEvery} steps; ` +
          `continue from the last one with:\n  ${resumeCommand}\n`,
      )
      process.exit(EXIT_INTERRUPTED)
    })
    let lastLogged = 0
    // Per-step rates jitter with the other work on the machine; the bar shows a moving average.
    let smoothedRate = 0
    const results = await runTraining({
      config,
      dataset,
      outDir: out,
      seed,
      resume: values.resume ?? false,
      log: trainerLog,
      onPhaseStart: (phase, startStep, totalSteps) => {
        bar?.stop()
        smoothedRate = 0
        bar?.start(totalSteps, startStep, { phase, loss: '-', rate: '-' })
        if (!tty)
          log.info(
            { phase, startStep, totalSteps, backend: choice.name, images: dataset.items.length },
            'phase started',
          )
      },
      onProgress: (event) => {
        smoothedRate = smoothedRate === 0 ? event.imgPerSec : 0.9 * smoothedRate + 0.1 * event.imgPerSec
        bar?.update(event.step, {
          phase: event.phase,
          loss: event.loss.toFixed(4),
          rate: smoothedRate.toFixed(1),
        })
        if (
          !tty &&
          (event.step % config.training.logEvery === 0 || event.step === event.totalSteps) &&
          event.step !== lastLogged
        ) {
          lastLogged = event.step
          log.info(
            {
              phase: event.phase,
              step: event.step,
              totalSteps: event.totalSteps,
              loss: event.loss,
              imgPerSec: event.imgPerSec,
            },
            'training step',
          )
        }
      },
    })
    bar?.stop()
    const summary = (name: string, r: (typeof results)['autoencoder']) =>
      `${name}: ${r.steps} steps${r.resumedFrom > 0 ? ` (resumed at ${r.resumedFrom})` : ''}, held-out loss ${r.initialEvalLoss?.toFixed(4) ?? '-'} -> ${r.finalEvalLoss.toFixed(4)}`
    process.stdout.write(
      `${summary('autoencoder', results.autoencoder)}\n${summary('unet', results.unet)}\ncheckpoints in ${join(out, 'autoencoder')} and ${join(out, 'unet')}, backend ${choice.name}\n`,
    )
    return 0
  },
}
