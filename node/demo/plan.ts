// Plans the default demo's U-Net rounds from a measured training step: a slower machine gets
// fewer rounds, a faster one (or the 2-thread wasm backend) more. The plan is made once, before the
// charter is signed (the charter fixes the rounds), and recorded in setup/plan.json and
// metrics.json. It fits the rounds into DEMO_PLAN_SECONDS, more than the time limit: the plan is
// the most a run may do, and the time box (time-box.ts) ends it from its measured pace.
//
// Model of a run, in seconds:
//   setup + peers' start                                  DEMO_FIXED_SECONDS
//   each autoencoder round   H * peers * aeStep   * F / cores + DEMO_ROUND_OVERHEAD_SECONDS
//   each U-Net round         H * peers * unetStep * F / cores + DEMO_ROUND_OVERHEAD_SECONDS
//   outputs per U-Net round  DEMO_OUTPUT_STEPS_PER_ROUND * unetStep (grid sampling + scoring, verification)
//   final quality            DEMO_FINAL_QUALITY_STEPS * unetStep
// where a step's cost is the CPU time the calibration measured on one thread, F is
// DEMO_PEER_STEP_COST_FACTOR (what a step costs inside a peer sharing the cores), `cores` the cores the peers can
// use (at most one per peer), scaled down by how much of a core the calibration itself got
// (other load on the machine).
import { availableParallelism, cpus } from 'node:os'
import type { CoopConfig } from '../../configs/index.ts'
import type { ImageDataset } from '../../trainer/data.ts'
import { createTrainerSession } from '../../trainer/session.ts'
import { Rng } from '../../trainer/rng.ts'
import { DEFAULT_MAX_TRAINING_THREADS } from '../../trainer/constants.ts'
import {
  DEMO_PLAN_SECONDS,
  DEMO_TIME_LIMIT_SECONDS,
  DEMO_FINAL_QUALITY_STEPS,
  DEMO_FIXED_SECONDS,
  DEMO_MAX_UNET_ROUNDS,
  DEMO_MIN_UNET_ROUNDS,
  DEMO_OUTPUT_STEPS_PER_ROUND,
  DEMO_PEER_STEP_COST_FACTOR,
  DEMO_ROUND_OVERHEAD_SECONDS,
} from './constants.ts'

export interface StepCalibration {
  /** CPU seconds of one autoencoder / U-Net training step (the cheapest timed batch). */
  autoencoderStepCpu: number
  unetStepCpu: number
  /** CPU time / wall time during the calibration: 1 on an idle core, less when others load the machine. */
  cpuShare: number
  backend: string
}

export interface DemoPlan {
  budgetSeconds: number
  cores: number
  /** Cores the model assumes the peers get: min(cores, peers) * cpuShare. */
  usableCores: number
  calibration: StepCalibration
  autoencoderRoundSeconds: number
  unetRoundSeconds: number
  unetRounds: number
  /** Output work (grid, its score, eval loss, verification) per U-Net round, after training. */
  outputSecondsPerRound: number
  /** The final quality score. */
  finalSeconds: number
  predictedSeconds: number
  /** Why the number is what it is (clamped or not), for the user. */
  note: string
}

/** A synthetic dataset of `count` noise images: a step's cost does not depend on pixel values. */
function noiseDataset(config: CoopConfig, count: number): ImageDataset {
  const size = config.image.size
  const rng = new Rng(1)
  const pixels = new Float32Array(count * size * size * 3)
  for (let i = 0; i < pixels.length; i++) pixels[i] = rng.uniform() * 2 - 1
  const classes = config.classes.length > 0 ? [config.classes[0] as string] : []
  return {
    items: Array.from({ length: count }, (_, i) => ({
      path: `calibration-${i}`,
      sha256: `sha256:${i.toString(16).padStart(64, '0')}`,
      label: classes.length > 0 ? 0 : -1,
    })),
    classes,
    pixels,
    size,
    skipped: [],
    notAllowed: 0,
    optedOut: [],
  }
}

async function timeSteps(
  session: { trainSteps(n: number): Promise<unknown> },
  steps: number,
): Promise<{ cpu: number; wall: number }> {
  // Warm-up: kernel set-up and first allocations. The first U-Net step costs 2-4x the others, and
  // steps 3-10 still ran 20-50 % slower than later ones (27 Nov, 4-step batches: 0.36-0.45 CPU-s
  // in the first two batches, 0.19-0.31 after).
  await session.trainSteps(6)
  // The cheapest of three batches: this machine's other tenants slow a batch now and then, and
  // the peers' steady state (measured in the runs DEMO_PEER_STEP_COST_FACTOR cites) is close to
  // the uncontended cost.
  const batch = Math.max(1, Math.round(steps / CALIBRATION_BATCHES))
  let best = { cpu: Infinity, wall: Infinity }
  for (let b = 0; b < CALIBRATION_BATCHES; b++) {
    const c = process.cpuUsage()
    const w = performance.now()
    await session.trainSteps(batch)
    const used = process.cpuUsage(c)
    const cpu = (used.user + used.system) / 1e6 / batch
    if (cpu < best.cpu) best = { cpu, wall: (performance.now() - w) / 1000 / batch }
  }
  return best
}

/** Timed batches of the calibration (see timeSteps). */
const CALIBRATION_BATCHES = 3

/** Times a few training steps of each phase on the current tfjs backend (a few seconds). */
export async function calibrateSteps(
  config: CoopConfig,
  backend: string,
  // 12 steps after the warm-up, the cheapest of 3 batches of 4: single U-Net steps range
  // 0.16-0.30 CPU-s on an idle machine (27 Nov), and the demo's calibrations of that day (median
  // of 8 after one warm-up step, then means of 16 and 12) read 0.19 to 0.33 from run to run,
  // which planned 15 to 43 rounds.
  steps = 12,
): Promise<StepCalibration> {
  const dataset = noiseDataset(config, Math.max(config.autoencoder.batchSize, config.unet.batchSize) * 2)
  // One thread: a step's CPU cost is what the model needs (the peers share the cores), and on 2
  // threads the process's CPU time also counts the second thread's waits, which overstated a
  // U-Net step by ~45% (0.76 CPU-s on 2 threads against ~0.52 in the demo's peers).
  const ae = await createTrainerSession({ config, phase: 'autoencoder', dataset, seed: 0, threads: 1 })
  let aeTiming: { cpu: number; wall: number }
  let autoencoder
  try {
    aeTiming = await timeSteps(ae, steps)
    autoencoder = await ae.getWeights()
  } finally {
    ae.dispose()
  }
  const unet = await createTrainerSession({
    config,
    phase: 'unet',
    dataset,
    seed: 0,
    autoencoder,
    threads: 1,
  })
  let unetTiming: { cpu: number; wall: number }
  try {
    unetTiming = await timeSteps(unet, steps)
  } finally {
    unet.dispose()
  }
  const cpuShare = Math.min(
    1,
    (aeTiming.cpu + unetTiming.cpu) / Math.max(1e-9, aeTiming.wall + unetTiming.wall),
  )
  return { autoencoderStepCpu: aeTiming.cpu, unetStepCpu: unetTiming.cpu, cpuShare, backend }
}

/**
 * Training threads of each peer when the user gives none: the cores shared out among the peers,
 * at least one. Measured 2026-11-27 (emoji32 U-Net, wasm, 4 processes on 2 cores, 40 steps each):
 * one thread per process trained a step in 0.46 s of wall time, two threads in 0.78 s: with more
 * threads than cores, each step's workers wait on each other.
 */
export function defaultPeerThreads(peers: number, cores: number = availableParallelism()): number {
  return Math.max(1, Math.min(DEFAULT_MAX_TRAINING_THREADS, Math.floor(cores / Math.max(1, peers))))
}

/** The number of U-Net rounds that fits the budget (see the module comment), clamped to sane bounds. */
export function planUnetRounds(input: {
  calibration: StepCalibration
  peers: number
  innerSteps: number
  autoencoderRounds: number
  budgetSeconds?: number
  cores?: number
}): DemoPlan {
  const { calibration, peers, innerSteps, autoencoderRounds } = input
  const budgetSeconds = input.budgetSeconds ?? DEMO_PLAN_SECONDS
  const cores = input.cores ?? cpus().length
  // A peer is one process on one core; other load shrinks what the peers get.
  const usableCores = Math.max(0.25, Math.min(cores, peers) * Math.max(0.1, calibration.cpuShare))
  const round = (stepCpu: number) =>
    (innerSteps * peers * stepCpu * DEMO_PEER_STEP_COST_FACTOR) / usableCores + DEMO_ROUND_OVERHEAD_SECONDS
  const autoencoderRoundSeconds = round(calibration.autoencoderStepCpu)
  const unetRoundSeconds = round(calibration.unetStepCpu)
  // Outputs run in the demo process after training (grids on two threads), at the measured share.
  const outputsPerRound =
    (DEMO_OUTPUT_STEPS_PER_ROUND * calibration.unetStepCpu) / Math.max(0.1, calibration.cpuShare)
  const finalQuality =
    (DEMO_FINAL_QUALITY_STEPS * calibration.unetStepCpu) / Math.max(0.1, calibration.cpuShare)
  const fixed = DEMO_FIXED_SECONDS + autoencoderRounds * autoencoderRoundSeconds + finalQuality
  const fitting = Math.floor((budgetSeconds - fixed) / (unetRoundSeconds + outputsPerRound))
  const unetRounds = Math.max(DEMO_MIN_UNET_ROUNDS, Math.min(DEMO_MAX_UNET_ROUNDS, fitting))
  const predictedSeconds = fixed + unetRounds * (unetRoundSeconds + outputsPerRound)
  const note =
    fitting < DEMO_MIN_UNET_ROUNDS
      ? `this machine is too slow for the ${Math.round(DEMO_TIME_LIMIT_SECONDS / 60)}-minute limit: running the minimum of ${DEMO_MIN_UNET_ROUNDS} U-Net rounds (about ${Math.round(predictedSeconds / 60)} min)`
      : fitting > DEMO_MAX_UNET_ROUNDS
        ? `capped at ${DEMO_MAX_UNET_ROUNDS} U-Net rounds (the budget would allow ${fitting})`
        : `up to ${unetRounds} U-Net rounds (fitted to ${Math.round(budgetSeconds / 60)} minutes; the time box ends the run earlier if its pace needs it)`
  return {
    budgetSeconds,
    cores,
    usableCores,
    calibration,
    autoencoderRoundSeconds,
    unetRoundSeconds,
    unetRounds,
    outputSecondsPerRound: outputsPerRound,
    finalSeconds: finalQuality,
    predictedSeconds,
    note,
  }
}
