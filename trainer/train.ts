// The training loop behind `coop train`: the autoencoder, then the U-Net on its latents,
// each through a TrainerSession, with periodic atomic checkpoints (EMA weights in
// model.safetensors, the full session state beside them), metrics.jsonl, sample grids of the
// U-Net's progress, and --resume that continues bit-exactly from the last checkpoint.
import { appendFile, mkdir, readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { CoopConfig } from '../configs/index.ts'
import { loadCheckpoint, saveCheckpoint } from './checkpoint.ts'
import type { ImageDataset } from './data.ts'
import { TrainerError } from './errors.ts'
import { reconstructionGrid, sampleGrid } from './sample.ts'
import { createTrainerSession } from './session.ts'
import type { TrainerSession } from './session.ts'
import type { Logger, NamedTensor, Phase } from './types.ts'

export const METRICS_FILE = 'metrics.jsonl'
export const SAMPLES_DIR = 'samples'
/** Samples per class row in the progress grids written at U-Net checkpoints. */
const PROGRESS_SAMPLES_PER_CLASS = 4
/** Images shown (with their reconstructions) in the autoencoder's progress grids. */
const PROGRESS_RECONSTRUCTIONS = 8
/** Fixed seed of the progress grids, so grids at successive steps are comparable. */
const PROGRESS_SAMPLE_SEED = 1234

export interface MetricsLine {
  phase: Phase
  step: number
  /** Mean training loss over the steps since the previous line. */
  loss: number
  imgPerSec: number
  /** Held-out loss (EMA weights), on lines written at a checkpoint. */
  evalLoss?: number
}

export interface ProgressEvent {
  phase: Phase
  step: number
  totalSteps: number
  loss: number
  imgPerSec: number
}

export interface RunTrainingOptions {
  config: CoopConfig
  dataset: ImageDataset
  outDir: string
  seed: number
  resume: boolean
  log?: Logger
  onProgress?: (event: ProgressEvent) => void
  /** Called when a phase starts, with the step it starts from (non-zero after --resume). */
  onPhaseStart?: (phase: Phase, startStep: number, totalSteps: number) => void
}

export interface PhaseResult {
  steps: number
  initialEvalLoss: number | undefined
  finalEvalLoss: number
  resumedFrom: number
}

/** The config without the step counts: a resume may extend a run, not change its model. */
function modelIdentity(config: CoopConfig): string {
  const { autoencoder, unet, ...rest } = config
  const { steps: _aeSteps, ...aeRest } = autoencoder
  const { steps: _unetSteps, ...unetRest } = unet
  return JSON.stringify({ ...rest, name: undefined, autoencoder: aeRest, unet: unetRest })
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path)
    return true
  } catch {
    return false
  }
}

/** Keeps only metrics lines at or before each phase's resumed step (later ones were lost with the crash). */
async function trimMetrics(path: string, keepUpTo: Record<Phase, number>): Promise<void> {
  if (!(await exists(path))) return
  const kept = (await readFile(path, 'utf8'))
    .split('\n')
    .filter((line) => line.trim().length > 0)
    .filter((line) => {
      try {
        const parsed = JSON.parse(line) as MetricsLine
        return parsed.step <= keepUpTo[parsed.phase]
      } catch {
        return false
      }
    })
  await writeFile(path, kept.length > 0 ? `${kept.join('\n')}\n` : '')
}

async function savePhase(
  dir: string,
  session: TrainerSession,
  config: CoopConfig,
  phase: Phase,
): Promise<void> {
  await saveCheckpoint(dir, {
    weights: await session.getEmaWeights(),
    config,
    state: await session.exportState(),
    metadata: { phase, step: String(session.step()), weights: 'ema' },
  })
}

async function runPhase(
  phase: Phase,
  options: RunTrainingOptions,
  autoencoder: NamedTensor[] | undefined,
): Promise<PhaseResult> {
  const { config, dataset, outDir, seed, log } = options
  const totalSteps = phase === 'autoencoder' ? config.autoencoder.steps : config.unet.steps
  const dir = join(outDir, phase)
  const metricsPath = join(outDir, METRICS_FILE)
  const session = await createTrainerSession({
    config,
    phase,
    dataset,
    seed,
    ...(autoencoder === undefined ? {} : { autoencoder }),
    ...(log === undefined ? {} : { log }),
  })
  try {
    let resumedFrom = 0
    if (options.resume && (await exists(dir))) {
      const saved = await loadCheckpoint(dir)
      if (saved.state === undefined)
        throw new TrainerError('RESUME_MISMATCH', `${dir} holds weights but no training state`)
      if (modelIdentity(saved.config) !== modelIdentity(config))
        throw new TrainerError(
          'RESUME_MISMATCH',
          `${dir} was trained with a different configuration (only step counts may change on --resume)`,
        )
      await session.importState(saved.state)
      resumedFrom = session.step()
      log?.info({ phase, step: resumedFrom }, 'resumed from checkpoint')
    }
    options.onPhaseStart?.(phase, resumedFrom, totalSteps)
    const initialEvalLoss = resumedFrom === 0 ? await session.evalLoss() : undefined
    if (initialEvalLoss !== undefined)
      log?.info({ phase, evalLoss: initialEvalLoss }, 'initial held-out loss')
    const { logEvery, checkpointEvery } = config.training
    while (session.step() < totalSteps) {
      const stepsToLog = logEvery - (session.step() % logEvery)
      const stepsToCheckpoint = checkpointEvery - (session.step() % checkpointEvery)
      const n = Math.min(stepsToLog, stepsToCheckpoint, totalSteps - session.step())
      let rateSum = 0
      const { lossMean } = await session.trainSteps(n, (s) => {
        rateSum += s.imgPerSec
        options.onProgress?.({ phase, step: s.step, totalSteps, loss: s.loss, imgPerSec: s.imgPerSec })
      })
      const step = session.step()
      const line: MetricsLine = { phase, step, loss: lossMean, imgPerSec: rateSum / n }
      const atCheckpoint = step % checkpointEvery === 0 || step === totalSteps
      if (atCheckpoint) {
        line.evalLoss = await session.evalLoss({ ema: true })
        await savePhase(dir, session, config, phase)
        if (phase === 'unet' && autoencoder !== undefined)
          await writeProgressGrid(options, autoencoder, session, step)
        if (phase === 'autoencoder') await writeReconstructionGrid(options, session, step)
        log?.info({ phase, step, loss: lossMean, evalLoss: line.evalLoss }, 'checkpoint saved')
      }
      if (step % logEvery === 0 || atCheckpoint) {
        await appendFile(metricsPath, `${JSON.stringify(line)}\n`)
        if (!atCheckpoint) log?.debug({ phase, step, loss: lossMean }, 'training progress')
      }
    }
    if (!(await exists(dir))) await savePhase(dir, session, config, phase) // zero steps: still leave a usable checkpoint
    const finalEvalLoss = await session.evalLoss({ ema: true })
    return { steps: session.step(), initialEvalLoss, finalEvalLoss, resumedFrom }
  } finally {
    session.dispose()
  }
}

async function writeProgressGrid(
  options: RunTrainingOptions,
  autoencoder: NamedTensor[],
  session: TrainerSession,
  step: number,
): Promise<void> {
  const { config, outDir } = options
  const classes = config.classes.length > 0 ? config.classes : [null]
  const png = await sampleGrid({
    config,
    autoencoder,
    unet: await session.getEmaWeights(),
    classes,
    perClass: PROGRESS_SAMPLES_PER_CLASS,
    guidance: config.diffusion.guidance,
    steps: config.diffusion.samplingSteps,
    seed: PROGRESS_SAMPLE_SEED,
  })
  await mkdir(join(outDir, SAMPLES_DIR), { recursive: true })
  await writeFile(join(outDir, SAMPLES_DIR, `unet-${String(step).padStart(7, '0')}.png`), png)
}

async function writeReconstructionGrid(
  options: RunTrainingOptions,
  session: TrainerSession,
  step: number,
): Promise<void> {
  const { config, dataset, outDir } = options
  const count = Math.min(PROGRESS_RECONSTRUCTIONS, dataset.items.length)
  const stride = config.image.size * config.image.size * 3
  // Evenly spaced over the (class-sorted) items, so every class tends to appear.
  const images = new Float32Array(count * stride)
  for (let i = 0; i < count; i++) {
    const index = Math.floor((i * dataset.items.length) / count)
    images.set(dataset.pixels.subarray(index * stride, (index + 1) * stride), i * stride)
  }
  const png = await reconstructionGrid(config, await session.getEmaWeights(), images, count)
  await mkdir(join(outDir, SAMPLES_DIR), { recursive: true })
  await writeFile(join(outDir, SAMPLES_DIR, `autoencoder-${String(step).padStart(7, '0')}.png`), png)
}

/** Trains the autoencoder then the U-Net into `outDir`; see the module comment. */
export async function runTraining(options: RunTrainingOptions): Promise<Record<Phase, PhaseResult>> {
  const { outDir } = options
  const aeDir = join(outDir, 'autoencoder')
  const unetDir = join(outDir, 'unet')
  if (!options.resume && ((await exists(aeDir)) || (await exists(unetDir))))
    throw new TrainerError(
      'OUTPUT_EXISTS',
      `${outDir} already holds a training run; pass --resume to continue it or choose another --out`,
    )
  await mkdir(outDir, { recursive: true })
  if (options.resume) {
    const stepOf = async (dir: string) =>
      (await exists(dir)) ? ((await loadCheckpoint(dir)).state?.json.step ?? 0) : 0
    const aeStep = await stepOf(aeDir)
    // The U-Net learned the latents of the autoencoder as it was; training that further would pull them from under it.
    if ((await exists(unetDir)) && options.config.autoencoder.steps > aeStep)
      throw new TrainerError(
        'RESUME_MISMATCH',
        `the U-Net in ${unetDir} was trained on the autoencoder at step ${aeStep}; it cannot be extended to ${options.config.autoencoder.steps} steps`,
      )
    await trimMetrics(join(outDir, METRICS_FILE), { autoencoder: aeStep, unet: await stepOf(unetDir) })
  }
  const autoencoder = await runPhase('autoencoder', options, undefined)
  const aeWeights = (await loadCheckpoint(aeDir)).weights
  const unet = await runPhase('unet', options, aeWeights)
  return { autoencoder, unet }
}
