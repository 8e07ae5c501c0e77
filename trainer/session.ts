// The facade the node and the simulator train through (see the cross-team contract):
// one phase (autoencoder or U-Net) of one peer's local training on its own dataset.
// Everything random — data order, noise, timesteps, class dropout — comes from one seeded
// Rng whose state is part of exportState(), so a resumed session continues bit-exactly.
//
// Nothing on the train, eval or sample paths reads a tensor back synchronously: on a GPU the loss
// of step k is read (asynchronously) while step k+1 is already queued, gradient clipping happens on
// the device, and weights come back with one asynchronous transfer.
import * as tf from '@tensorflow/tfjs-core'
import type { CoopConfig } from '../configs/index.ts'
import { createAutoencoder, encodeImages, latentRms, latentSize, reconstructionMse } from './autoencoder.ts'
import {
  BatchSampler,
  datasetFingerprint,
  drawBatch,
  gatherRows,
  mapLabels,
  splitForEval,
} from './batches.ts'
import { EVAL_SEED, LATENT_RMS_MOMENTUM } from './constants.ts'
import type { ImageDataset } from './data.ts'
import { loss as diffusionLoss } from './diffusion.ts'
import { TrainerError } from './errors.ts'
import type { ParamStore } from './nn.ts'
import { Adam, Ema } from './optim.ts'
import { createGradientEngine } from './parallel/engine.ts'
import type { GradientEngine, ShardTiming } from './parallel/engine.ts'
import { Rng } from './rng.ts'
import { makeSchedule } from './schedule.ts'
import type { NoiseSchedule } from './schedule.ts'
import { stepModelFor } from './step.ts'
import type { Logger, NamedTensor, Phase } from './types.ts'
import { createUnet } from './unet.ts'
import { takeWebGpuError } from './webgpu/device.ts'
import { selectedTorchRuntime } from './torch/selection.ts'

export type { NamedTensor, Phase } from './types.ts'
export type {
  SessionState,
  SessionStateJson,
  StepInfo,
  TrainerSession,
  TrainerSessionOptions,
} from './session-types.ts'
import type { SessionState, StepInfo, TrainerSession, TrainerSessionOptions } from './session-types.ts'

/** A WebGPU error does not throw where it happens (the dispatch is dropped, its output stays zero). */
function assertDeviceHealthy(): void {
  const error = takeWebGpuError()
  if (error !== undefined) throw new TrainerError('DEVICE_ERROR', `${tf.getBackend()} device: ${error}`)
}

/**
 * Only a GPU backend gains from reading a step's loss late (on the CPU, launching a step computed it).
 * Where it lags, a non-finite loss is seen after the next step was queued: the device guard skipped the
 * failing update, but the step count has moved on. On the CPU the failing step is refused before Adam,
 * so NON_FINITE_LOSS leaves step count, samples seen and weights where the previous step left them (as
 * the torch worker does).
 */
function lagging(): boolean {
  return tf.getBackend() === 'webgpu'
}

/** A step whose work is queued (on a GPU) or done (on a CPU), and whose loss has not been read yet. */
interface LaunchedStep {
  step: number
  batchSize: number
  loss: tf.Scalar
  shards: ShardTiming[]
  /** Host time spent launching it (all of the compute on a CPU backend, the queueing on a GPU). */
  launchMs: number
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
  private readonly engine: GradientEngine
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
    this.engine = createGradientEngine(stepModelFor(config, phase, this.store), options.threads, this.log)
    this.log?.debug(
      {
        phase,
        train: train.length,
        evaluation: evaluation.length,
        parameters: this.parameterCount(),
        threads: this.engine.threads,
        shards: this.engine.shards,
      },
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

  private batchSize(): number {
    return this.phase === 'autoencoder' ? this.config.autoencoder.batchSize : this.config.unet.batchSize
  }

  /**
   * Draws a batch, computes its gradients (sharded over threads where the engine has them) and queues
   * the update: clip and Adam, the latent RMS (autoencoder), the EMA. The loss stays on the device.
   */
  private async launchStep(): Promise<LaunchedStep> {
    const started = performance.now()
    const batchSize = this.batchSize()
    const indices = this.sampler.next(batchSize, this.rng, this.excludedIndices)
    const shards = drawBatch({
      config: this.config,
      phase: this.phase,
      indices,
      rng: this.rng,
      inputs: this.inputs,
      inputShape: this.inputShape,
      labels: this.labels,
      latentSize: latentSize(this.config),
      shards: this.engine.shards,
    })
    const { result, timings } = await this.engine.compute(shards, batchSize)
    if (!lagging()) {
      // On the CPU the loss is already computed: a non-finite one stops the step before Adam, so the
      // step count, the samples seen and the weights stay where the previous step left them.
      const value = ((await result.loss.data()) as Float32Array)[0] as number
      if (!Number.isFinite(value)) {
        tf.dispose([
          result.loss,
          ...result.grads,
          ...(result.meanSquares === undefined ? [] : [result.meanSquares]),
        ])
        throw new TrainerError(
          'NON_FINITE_LOSS',
          `${this.phase} loss became ${value} at step ${this.adam.step + 1}`,
        )
      }
    }
    try {
      this.adam.apply(result.grads, result.loss)
      if (result.meanSquares !== undefined) this.updateLatentRms(result.meanSquares, result.loss)
      this.ema.update(this.adam.step)
    } catch (error) {
      result.loss.dispose()
      throw error
    } finally {
      tf.dispose([...result.grads, ...(result.meanSquares === undefined ? [] : [result.meanSquares])])
    }
    this.seen += batchSize
    return {
      step: this.adam.step,
      batchSize,
      loss: result.loss,
      shards: timings,
      launchMs: performance.now() - started,
    }
  }

  /** running <- m running + (1 - m) max(rms, 1e-6), on the device; unchanged when the step is skipped. */
  private updateLatentRms(meanSquares: tf.Scalar, loss: tf.Scalar): void {
    const buffer = latentRms(this.store)
    tf.tidy(() => {
      const rms = tf.reshape(tf.sqrt(meanSquares), [1])
      const next = tf.add(
        tf.mul(buffer, LATENT_RMS_MOMENTUM),
        tf.mul(tf.maximum(rms, 1e-6), 1 - LATENT_RMS_MOMENTUM),
      )
      const finite = tf.reshape(tf.logicalAnd(tf.isFinite(meanSquares), tf.isFinite(loss)), [1])
      buffer.assign(tf.where(finite, next, buffer))
    })
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
    // Reading a loss waits for its step to finish on the device; step k is read once k+1 is queued. A
    // step's time is its launch plus that wait: the two partition the wall time between steps.
    const settle = async (launched: LaunchedStep): Promise<void> => {
      const waitStarted = performance.now()
      let value: number
      try {
        value = ((await launched.loss.data()) as Float32Array)[0] as number
      } finally {
        launched.loss.dispose()
      }
      assertDeviceHealthy()
      if (!Number.isFinite(value))
        throw new TrainerError(
          'NON_FINITE_LOSS',
          `${this.phase} loss became ${value} at step ${launched.step}`,
        )
      const seconds = (launched.launchMs + performance.now() - waitStarted) / 1000
      lossSum += value
      onStep?.({
        step: launched.step,
        loss: value,
        imgPerSec: launched.batchSize / Math.max(seconds, 1e-9),
        shards: launched.shards,
      })
    }
    const lagged = lagging()
    let pending: LaunchedStep | undefined
    try {
      for (let i = 0; i < n; i++) {
        const launched = await this.launchStep()
        const previous = pending
        pending = launched
        if (!lagged) {
          pending = undefined
          await settle(launched)
        } else if (previous !== undefined) await settle(previous)
        // Let the host's event loop run (libp2p, progress output) between steps.
        await new Promise<void>((resolve) => setImmediate(resolve))
      }
      const last = pending
      pending = undefined
      if (last !== undefined) await settle(last)
    } finally {
      pending?.loss.dispose()
    }
    return { lossMean: n === 0 ? Number.NaN : lossSum / n, samples: this.seen - seenBefore }
  }

  async evalLoss(options: { ema?: boolean } = {}): Promise<number> {
    this.assertLive()
    const slots = this.evaluation
      .map((index, slot) => ({ index, slot }))
      .filter(({ index }) => !this.excludedIndices.has(index))
    if (slots.length === 0) throw new TrainerError('DATA_EMPTY', 'every evaluation item has been excluded')
    // The EMA shadows are a model of their own: no weights are swapped in and out.
    const store = options.ema ? this.ema.averaged : this.store
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
      if (this.phase === 'autoencoder') return reconstructionMse(store, this.config.autoencoder, x)
      const noise = new Float32Array(n * rowSize)
      slots.forEach(({ slot }, row) => noise.set(this.evalNoise[slot] as Float32Array, row * rowSize))
      return diffusionLoss(
        store,
        this.config,
        this.schedule,
        x,
        slots.map(({ slot }) => this.evalTimesteps[slot] as number),
        tf.tensor4d(noise, [n, h, w, c]),
        slots.map(({ index }) => this.labels[index] as number),
      )
    })
    try {
      const result = ((await value.data()) as Float32Array)[0] as number
      assertDeviceHealthy()
      return result
    } finally {
      value.dispose()
    }
  }

  async exportState(): Promise<SessionState> {
    this.assertLive()
    const [weights, adam, ema] = await Promise.all([
      this.store.read(),
      this.adam.exportState(),
      this.ema.exportState(),
    ])
    const params = weights.map((t) => ({ ...t, name: `param/${t.name}` }))
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
      tensors: [...params, ...adam, ...ema],
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
    this.engine.dispose()
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
  const latents = await encodeImages(config, dataset.pixels, dataset.items.length, options.autoencoder)
  const s = latentSize(config)
  return new Session(options, latents, [s, s, config.autoencoder.latentChannels])
}
