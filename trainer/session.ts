// The facade the node and the simulator train through (see the cross-team contract):
// one phase (autoencoder or U-Net) of one peer's local training on its own dataset.
// Everything random — data order, noise, timesteps, class dropout — comes from one seeded
// Rng whose state is part of exportState(), so a resumed session continues bit-exactly.
import * as tf from '@tensorflow/tfjs-core'
import type { CoopConfig } from '../configs/index.ts'
import { sha256Digest } from '../protocol/digest.ts'
import {
  autoencoderLoss,
  createAutoencoder,
  encodeForDiffusion,
  latentRms,
  latentSize,
  reconstructionMse,
} from './autoencoder.ts'
import {
  EVAL_HOLDOUT_FRACTION,
  EVAL_HOLDOUT_MIN_DATASET,
  EVAL_SEED,
  LATENT_RMS_MOMENTUM,
} from './constants.ts'
import type { ImageDataset } from './data.ts'
import { loss as diffusionLoss } from './diffusion.ts'
import { TrainerError } from './errors.ts'
import type { ParamStore } from './nn.ts'
import { Adam, Ema } from './optim.ts'
import { Rng } from './rng.ts'
import type { RngState } from './rng.ts'
import { makeSchedule } from './schedule.ts'
import type { NoiseSchedule } from './schedule.ts'
import type { Logger, NamedTensor, Phase } from './types.ts'
import { createUnet, nullClass } from './unet.ts'
import { selectedTorchRuntime } from './torch/selection.ts'

export type { NamedTensor, Phase } from './types.ts'

export interface StepInfo {
  /** Optimizer steps taken by this session so far (1 after the first step). */
  step: number
  loss: number
  imgPerSec: number
}

export interface TrainerSessionOptions {
  config: CoopConfig
  phase: Phase
  dataset: ImageDataset
  /** Seeds the initial weights and the training stream (data order, noise, timesteps, dropout). */
  seed: number
  /** Autoencoder weights; required for the U-Net phase (its latents are the U-Net's data). */
  autoencoder?: NamedTensor[]
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
  /** Items with these digests are never used again (training or eval), from the next step. */
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

export function datasetFingerprint(dataset: ImageDataset): string {
  return sha256Digest(new TextEncoder().encode(dataset.items.map((i) => i.sha256).join('\n')))
}

/** Maps dataset labels to model class indices (null class for flat folders or unconditional configs). */
export function mapLabels(config: CoopConfig, dataset: ImageDataset): number[] {
  const nullLabel = nullClass(config)
  if (config.classes.length === 0) return dataset.items.map(() => nullLabel)
  const classIndex = dataset.classes.map((name) => {
    const index = config.classes.indexOf(name)
    if (index < 0)
      throw new TrainerError(
        'UNKNOWN_CLASS',
        `dataset class '${name}' is not one of the model's classes (${config.classes.join(', ')})`,
      )
    return index
  })
  return dataset.items.map((item) => (item.label < 0 ? nullLabel : (classIndex[item.label] as number)))
}

/** Splits item indices into training and held-out evaluation sets, by digest order (not file order). */
export function splitForEval(
  dataset: ImageDataset,
  evalBatch: number,
): { train: number[]; evaluation: number[] } {
  const count = dataset.items.length
  const bySha = Array.from({ length: count }, (_, i) => i).sort((a, b) => {
    const x = (dataset.items[a] as { sha256: string }).sha256
    const y = (dataset.items[b] as { sha256: string }).sha256
    return x < y ? -1 : x > y ? 1 : a - b
  })
  if (count < EVAL_HOLDOUT_MIN_DATASET)
    return {
      train: bySha.slice().sort((a, b) => a - b),
      evaluation: bySha.slice(0, Math.min(evalBatch, count)),
    }
  const held = Math.max(1, Math.min(evalBatch, Math.floor(count * EVAL_HOLDOUT_FRACTION)))
  const evaluation = bySha.slice(0, held)
  const train = bySha.slice(held).sort((a, b) => a - b)
  return { train, evaluation }
}

export class BatchSampler {
  order: number[] = []
  cursor = 0
  epoch = 0
  private readonly pool: readonly number[]
  constructor(pool: readonly number[]) {
    this.pool = pool
  }

  next(batchSize: number, rng: Rng, excluded: ReadonlySet<number>): number[] {
    const batch: number[] = []
    while (batch.length < batchSize) {
      if (this.cursor >= this.order.length) {
        const eligible = this.pool.filter((i) => !excluded.has(i))
        if (eligible.length === 0)
          throw new TrainerError('DATA_EMPTY', 'every training item has been excluded')
        this.order = rng.permutation(eligible.length).map((k) => eligible[k] as number)
        this.cursor = 0
        this.epoch++
      }
      const index = this.order[this.cursor++] as number
      if (!excluded.has(index)) batch.push(index)
    }
    return batch
  }
}

function gatherRows(source: Float32Array, rowSize: number, indices: readonly number[]): Float32Array {
  const out = new Float32Array(indices.length * rowSize)
  indices.forEach((index, row) =>
    out.set(source.subarray(index * rowSize, (index + 1) * rowSize), row * rowSize),
  )
  return out
}

/** Encodes every image to diffusion-space latents with the given autoencoder weights. */
function encodeDataset(config: CoopConfig, dataset: ImageDataset, autoencoder: NamedTensor[]): Float32Array {
  const store = createAutoencoder(config, 0)
  try {
    store.write(autoencoder)
    const size = config.image.size
    const rowSize = size * size * 3
    const s = latentSize(config)
    const latentRow = s * s * config.autoencoder.latentChannels
    const out = new Float32Array(dataset.items.length * latentRow)
    const chunk = 64
    for (let start = 0; start < dataset.items.length; start += chunk) {
      const n = Math.min(chunk, dataset.items.length - start)
      const latents = tf.tidy(() => {
        const x = tf.tensor4d(dataset.pixels.subarray(start * rowSize, (start + n) * rowSize), [
          n,
          size,
          size,
          3,
        ])
        return encodeForDiffusion(store, config.autoencoder, x)
      })
      out.set(latents.dataSync() as Float32Array, start * latentRow)
      latents.dispose()
    }
    return out
  } finally {
    store.dispose()
  }
}

class Session implements TrainerSession {
  readonly phase: Phase
  readonly config: CoopConfig
  private readonly store: ParamStore
  private readonly adam: Adam
  private readonly ema: Ema
  private readonly schedule: NoiseSchedule
  private readonly dataset: ImageDataset
  private readonly seed: number
  private readonly log: Logger | undefined
  /** Per-item training input: pixels (autoencoder) or diffusion-space latents (U-Net). */
  private readonly inputs: Float32Array
  private readonly inputShape: [number, number, number]
  private readonly labels: number[]
  private readonly sampler: BatchSampler
  private readonly evaluation: number[]
  /** Fixed per-slot eval noise and timesteps, drawn once from EVAL_SEED. */
  private readonly evalNoise: Float32Array[]
  private readonly evalTimesteps: number[]
  private readonly excludedIndices = new Set<number>()
  private readonly excludedShas = new Set<string>()
  private readonly indicesBySha = new Map<string, number[]>()
  private rng: Rng
  private seen = 0
  private disposed = false

  constructor(options: TrainerSessionOptions, inputs: Float32Array, inputShape: [number, number, number]) {
    const { config, phase, dataset, seed } = options
    this.phase = phase
    this.config = config
    this.dataset = dataset
    this.seed = seed
    this.log = options.log
    this.inputs = inputs
    this.inputShape = inputShape
    this.labels = mapLabels(config, dataset)
    const section = phase === 'autoencoder' ? config.autoencoder : config.unet
    this.store = phase === 'autoencoder' ? createAutoencoder(config, seed) : createUnet(config, seed)
    this.adam = new Adam(this.store, section.lr)
    this.ema = new Ema(this.store, section.emaDecay)
    this.schedule = makeSchedule(config.diffusion)
    // The training stream is separate from the initialisation stream of the same seed.
    this.rng = new Rng(seed + 0x9e3779b9)
    const { train, evaluation } = splitForEval(dataset, config.training.evalBatch)
    this.sampler = new BatchSampler(train)
    this.evaluation = evaluation
    const evalRng = new Rng(EVAL_SEED)
    const rowSize = inputShape[0] * inputShape[1] * inputShape[2]
    this.evalNoise = evaluation.map(() => evalRng.normals(rowSize))
    this.evalTimesteps = evaluation.map((_, slot) =>
      Math.floor(((slot + 0.5) * config.diffusion.timesteps) / evaluation.length),
    )
    dataset.items.forEach((item, index) => {
      const list = this.indicesBySha.get(item.sha256) ?? []
      list.push(index)
      this.indicesBySha.set(item.sha256, list)
    })
    this.log?.debug(
      { phase, train: train.length, evaluation: evaluation.length, parameters: this.parameterCount() },
      'trainer session created',
    )
  }

  private parameterCount(): number {
    let total = 0
    for (const v of this.store.variables.values()) total += v.size
    return total
  }

  private assertLive(): void {
    if (this.disposed) throw new TrainerError('INVALID_ARGUMENT', 'trainer session used after dispose()')
  }

  async getWeights(): Promise<NamedTensor[]> {
    this.assertLive()
    return this.store.read()
  }

  async setWeights(weights: NamedTensor[]): Promise<void> {
    this.assertLive()
    this.store.write(weights)
  }

  async getEmaWeights(): Promise<NamedTensor[]> {
    this.assertLive()
    return this.ema.weights()
  }

  samplesSeen(): number {
    return this.seen
  }

  step(): number {
    return this.adam.step
  }

  excludeItems(sha256s: Iterable<string>): void {
    for (const sha of sha256s) {
      this.excludedShas.add(sha)
      for (const index of this.indicesBySha.get(sha) ?? []) this.excludedIndices.add(index)
    }
  }

  private trainStep(): number {
    const batchSize =
      this.phase === 'autoencoder' ? this.config.autoencoder.batchSize : this.config.unet.batchSize
    const indices = this.sampler.next(batchSize, this.rng, this.excludedIndices)
    const [h, w, c] = this.inputShape
    const trainable = this.store.trainableNames().map((name) => this.store.variables.get(name) as tf.Variable)
    let lossValue: number
    if (this.phase === 'autoencoder') {
      const s = latentSize(this.config)
      const noiseValues = this.rng.normals(batchSize * s * s * this.config.autoencoder.latentChannels)
      let batchRms: tf.Scalar | undefined
      const { value, grads } = tf.tidy(() => {
        const x = tf.tensor4d(gatherRows(this.inputs, h * w * c, indices), [batchSize, h, w, c])
        const noise = tf.tensor4d(noiseValues, [batchSize, s, s, this.config.autoencoder.latentChannels])
        return tf.variableGrads(() => {
          const result = autoencoderLoss(this.store, this.config.autoencoder, x, noise)
          batchRms = tf.keep(result.meanRms)
          return result.loss
        }, trainable)
      })
      lossValue = this.applyGradients(value, grads)
      const rms = (batchRms as tf.Scalar).dataSync()[0] as number
      ;(batchRms as tf.Scalar).dispose()
      const buffer = latentRms(this.store)
      const running = (buffer.dataSync() as Float32Array)[0] as number
      tf.tidy(() =>
        buffer.assign(
          tf.tensor1d([LATENT_RMS_MOMENTUM * running + (1 - LATENT_RMS_MOMENTUM) * Math.max(rms, 1e-6)]),
        ),
      )
    } else {
      const timesteps: number[] = []
      const labels: number[] = []
      const nullLabel = nullClass(this.config)
      for (const index of indices) {
        timesteps.push(this.rng.int(this.config.diffusion.timesteps))
        // Always draw, so the stream does not depend on the label.
        const dropped = this.rng.uniform() < this.config.unet.classDropProb
        labels.push(dropped ? nullLabel : (this.labels[index] as number))
      }
      const noiseValues = this.rng.normals(batchSize * h * w * c)
      const { value, grads } = tf.tidy(() => {
        const x0 = tf.tensor4d(gatherRows(this.inputs, h * w * c, indices), [batchSize, h, w, c])
        const noise = tf.tensor4d(noiseValues, [batchSize, h, w, c])
        return tf.variableGrads(
          () =>
            diffusionLoss(this.store, this.config, this.schedule, x0, timesteps, noise, labels, {
              weighted: true,
            }),
          trainable,
        )
      })
      lossValue = this.applyGradients(value, grads)
    }
    this.ema.update(this.adam.step)
    this.seen += batchSize
    return lossValue
  }

  private applyGradients(value: tf.Scalar, grads: tf.NamedTensorMap): number {
    const lossValue = value.dataSync()[0] as number
    value.dispose()
    if (!Number.isFinite(lossValue)) {
      for (const g of Object.values(grads)) g.dispose()
      throw new TrainerError(
        'NON_FINITE_LOSS',
        `${this.phase} loss became ${lossValue} at step ${this.adam.step + 1}`,
      )
    }
    // variableGrads keys gradients by the tfjs variable name; the optimizer uses parameter names.
    const byParam: Record<string, tf.Tensor> = {}
    for (const name of this.store.trainableNames()) {
      const g = grads[(this.store.variables.get(name) as tf.Variable).name]
      if (g === undefined) throw new TrainerError('WEIGHTS_MISMATCH', `no gradient for ${name}`)
      byParam[name] = g
    }
    this.adam.apply(byParam)
    for (const g of Object.values(grads)) g.dispose()
    return lossValue
  }

  async trainSteps(
    n: number,
    onStep?: (s: StepInfo) => void,
  ): Promise<{ lossMean: number; samples: number }> {
    this.assertLive()
    if (!Number.isInteger(n) || n < 0)
      throw new TrainerError('INVALID_ARGUMENT', `step count must be a non-negative integer, got ${n}`)
    let lossSum = 0
    const seenBefore = this.seen
    for (let i = 0; i < n; i++) {
      const started = performance.now()
      const lossValue = this.trainStep()
      const seconds = (performance.now() - started) / 1000
      lossSum += lossValue
      const batchSize =
        this.phase === 'autoencoder' ? this.config.autoencoder.batchSize : this.config.unet.batchSize
      onStep?.({ step: this.adam.step, loss: lossValue, imgPerSec: batchSize / Math.max(seconds, 1e-9) })
      // Let the host's event loop run (libp2p, progress output) between steps.
      await new Promise<void>((resolve) => setImmediate(resolve))
    }
    return { lossMean: n === 0 ? Number.NaN : lossSum / n, samples: this.seen - seenBefore }
  }

  async evalLoss(options: { ema?: boolean } = {}): Promise<number> {
    this.assertLive()
    const slots = this.evaluation
      .map((index, slot) => ({ index, slot }))
      .filter(({ index }) => !this.excludedIndices.has(index))
    if (slots.length === 0) throw new TrainerError('DATA_EMPTY', 'every evaluation item has been excluded')
    const raw = options.ema ? this.store.read() : undefined
    if (options.ema) this.store.write(this.ema.weights())
    try {
      const [h, w, c] = this.inputShape
      const rowSize = h * w * c
      const n = slots.length
      const value = tf.tidy(() => {
        const x = tf.tensor4d(
          gatherRows(
            this.inputs,
            rowSize,
            slots.map((s) => s.index),
          ),
          [n, h, w, c],
        )
        if (this.phase === 'autoencoder') return reconstructionMse(this.store, this.config.autoencoder, x)
        const noise = new Float32Array(n * rowSize)
        slots.forEach(({ slot }, row) => noise.set(this.evalNoise[slot] as Float32Array, row * rowSize))
        return diffusionLoss(
          this.store,
          this.config,
          this.schedule,
          x,
          slots.map(({ slot }) => this.evalTimesteps[slot] as number),
          tf.tensor4d(noise, [n, h, w, c]),
          slots.map(({ index }) => this.labels[index] as number),
        )
      })
      const result = value.dataSync()[0] as number
      value.dispose()
      return result
    } finally {
      if (raw !== undefined) this.store.write(raw)
    }
  }

  async exportState(): Promise<SessionState> {
    this.assertLive()
    const params = this.store.read().map((t) => ({ ...t, name: `param/${t.name}` }))
    return {
      json: {
        version: 1,
        phase: this.phase,
        step: this.adam.step,
        seed: this.seed,
        rng: this.rng.state(),
        sampler: { order: [...this.sampler.order], cursor: this.sampler.cursor, epoch: this.sampler.epoch },
        samplesSeen: this.seen,
        datasetFingerprint: datasetFingerprint(this.dataset),
        excluded: [...this.excludedShas].sort(),
      },
      tensors: [...params, ...this.adam.exportState(), ...this.ema.exportState()],
    }
  }

  async importState(state: SessionState): Promise<void> {
    this.assertLive()
    const { json } = state
    if (json.version !== 1 || json.phase !== this.phase)
      throw new TrainerError(
        'RESUME_MISMATCH',
        `saved state is for phase ${json.phase}, this session trains ${this.phase}`,
      )
    if (json.datasetFingerprint !== datasetFingerprint(this.dataset))
      throw new TrainerError(
        'RESUME_MISMATCH',
        'saved state was trained on a different dataset (image digests differ)',
      )
    const count = this.dataset.items.length
    if (
      !json.sampler.order.every((i) => Number.isInteger(i) && i >= 0 && i < count) ||
      json.sampler.cursor > json.sampler.order.length
    )
      throw new TrainerError('CHECKPOINT_CORRUPT', 'saved data order does not fit the dataset')
    const tensors = new Map(state.tensors.map((t) => [t.name, t]))
    const params = this.store.names().map((name) => {
      const t = tensors.get(`param/${name}`)
      if (t === undefined) throw new TrainerError('CHECKPOINT_CORRUPT', `saved state lacks param/${name}`)
      return { ...t, name }
    })
    this.store.write(params)
    this.adam.importState(json.step, tensors)
    this.ema.importState(tensors)
    this.rng = new Rng(json.rng)
    this.sampler.order = [...json.sampler.order]
    this.sampler.cursor = json.sampler.cursor
    this.sampler.epoch = json.sampler.epoch
    this.seen = json.samplesSeen
    this.excludeItems(json.excluded)
  }

  dispose(): void {
    if (this.disposed) return
    this.disposed = true
    this.store.dispose()
    this.adam.dispose()
    this.ema.dispose()
  }
}

/** Creates a session for one training phase; the U-Net phase first encodes the dataset with the given autoencoder. */
export async function createTrainerSession(options: TrainerSessionOptions): Promise<TrainerSession> {
  const { config, phase, dataset } = options
  if (!Number.isSafeInteger(options.seed) || options.seed < 0)
    throw new TrainerError('INVALID_ARGUMENT', `seed must be a non-negative integer, got ${options.seed}`)
  if (dataset.items.length === 0) throw new TrainerError('DATA_EMPTY', 'the dataset holds no images')
  const size = config.image.size
  if (dataset.size !== size || dataset.pixels.length !== dataset.items.length * size * size * 3)
    throw new TrainerError(
      'INVALID_ARGUMENT',
      `dataset images are ${dataset.size}px, the config needs ${size}px`,
    )
  // `--backend torch`: the same session, trained in a PyTorch worker process (trainer/torch/).
  const torch = selectedTorchRuntime()
  if (torch !== undefined) return (await import('./torch/session.ts')).createTorchSession(options, torch)
  if (phase === 'autoencoder') return new Session(options, dataset.pixels, [size, size, 3])
  if (options.autoencoder === undefined)
    throw new TrainerError('AUTOENCODER_REQUIRED', 'the U-Net phase needs autoencoder weights')
  const latents = encodeDataset(config, dataset, options.autoencoder)
  const s = latentSize(config)
  return new Session(options, latents, [s, s, config.autoencoder.latentChannels])
}
