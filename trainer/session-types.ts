// The TrainerSession contract: what the node, the simulator and `coop train` call (see session.ts for the
// tfjs implementation; other backends implement the same interface).
import type { CoopConfig } from '../configs/index.ts'
import type { ImageDataset } from './data.ts'
import type { ShardTiming } from './parallel/engine.ts'
import type { RngState } from './rng.ts'
import type { Logger, NamedTensor, Phase } from './types.ts'

export interface StepInfo {
  /** The step this loss belongs to (1 for the first step of the session). */
  step: number
  loss: number
  imgPerSec: number
  /** Who computed which shard of the batch, when, and with how much CPU (parallel wasm: one per thread). */
  shards: ShardTiming[]
}

export interface TrainerSessionOptions {
  config: CoopConfig
  phase: Phase
  dataset: ImageDataset
  /** Seeds the initial weights and the training stream (data order, noise, timesteps, dropout). */
  seed: number
  /** Autoencoder weights; required for the U-Net phase (its latents are the U-Net's data). */
  autoencoder?: NamedTensor[]
  /**
   * Threads that compute each step's gradients (wasm only: data-parallel worker threads). Defaults to the
   * process-wide setting of trainer/backend.ts (`--threads`, else min(2, available cores)).
   */
  threads?: number
  log?: Logger
}

/** JSON part of a session's resumable state. */
export interface SessionStateJson {
  version: 1
  phase: Phase
  step: number
  seed: number
  rng: RngState
  sampler: { order: number[]; cursor: number; epoch: number }
  samplesSeen: number
  /** Digest over the dataset's item digests in order: resuming on other data is refused. */
  datasetFingerprint: string
  excluded: string[]
}

export interface SessionState {
  json: SessionStateJson
  /** 'param/<name>', 'adam_m/<name>', 'adam_v/<name>', 'ema/<name>'. */
  tensors: NamedTensor[]
}

export interface TrainerSession {
  readonly phase: Phase
  readonly config: CoopConfig
  /**
   * Current (non-averaged) weights, sorted by name, as copies. Weight transfer is asynchronous:
   * a GPU backend reads buffers back without blocking, and the torch backend lives in a worker.
   */
  getWeights(): Promise<NamedTensor[]>
  /** Replaces the weights; optimizer moments, EMA, step and data position are kept. */
  setWeights(weights: NamedTensor[]): Promise<void>
  trainSteps(n: number, onStep?: (s: StepInfo) => void): Promise<{ lossMean: number; samples: number }>
  /** Deterministic held-out loss (fixed batch, timesteps and noise); `ema` evaluates the EMA weights. */
  evalLoss(options?: { ema?: boolean }): Promise<number>
  /** Items with these digests are never used again (training or eval), from the next step launched. */
  excludeItems(sha256s: Iterable<string>): void
  samplesSeen(): number
  /** Optimizer steps taken so far. */
  step(): number
  /** EMA weights, sorted by name (what sampling uses). */
  getEmaWeights(): Promise<NamedTensor[]>
  exportState(): Promise<SessionState>
  importState(state: SessionState): Promise<void>
  dispose(): void
}
