// `--backend torch`: a TrainerSession whose model, optimizer state and forward/backward live in a
// PyTorch worker process (worker.py), while everything the node must decide stays here: which items
// may be used (the dataset given is already consent-filtered; excludeItems takes effect from the next
// step), the batch order, noise, timesteps and class dropout (the same seeded Rng stream as the tfjs
// session, so a seed gives the same batches on both backends), evaluation slots, and the state format
// (exportState/importState are interchangeable with the tfjs session's).
//
// The worker receives only decoded pixels of the session's dataset, weights, and per-step draws; it
// returns losses and weights. Weights cross in tfjs layout, so checkpoints are the same files.
import type { CoopConfig } from '../../configs/index.ts'
import { createAutoencoder, latentSize } from '../autoencoder.ts'
import {
  ADAM_BETA1,
  ADAM_BETA2,
  ADAM_EPSILON,
  EMA_WARMUP_OFFSET,
  EVAL_SEED,
  GRAD_CLIP_NORM,
  GROUPNORM_EPSILON,
  LATENT_RMS_MOMENTUM,
  LOGVAR_MAX,
  LOGVAR_MIN,
} from '../constants.ts'
import type { ImageDataset } from '../data.ts'
import { lossWeights } from '../diffusion.ts'
import { TrainerError } from '../errors.ts'
import { Rng } from '../rng.ts'
import { makeSchedule } from '../schedule.ts'
import type { NoiseSchedule } from '../schedule.ts'
import { BatchSampler, datasetFingerprint, mapLabels, splitForEval } from '../session.ts'
import type { SessionState, StepInfo, TrainerSession, TrainerSessionOptions } from '../session.ts'
import type { Logger, NamedTensor, Phase } from '../types.ts'
import { createUnet, nullClass } from '../unet.ts'
import { TORCH_DATA_CHUNK_BYTES } from './constants.ts'
import type { WireTensor } from './frames.ts'
import type { TorchRuntime } from './probe.ts'
import { TorchWorker } from './worker-process.ts'

/** The constants nets.py keeps its own copies of; the worker refuses to start if they differ. */
export const NET_CONSTANTS = {
  groupnormEpsilon: GROUPNORM_EPSILON,
  logvarMin: LOGVAR_MIN,
  logvarMax: LOGVAR_MAX,
}

interface StepReport {
  step: number
  loss: number
  applied: boolean
  gradNorm: number
}

/** A step's inputs given by the caller instead of drawn from the session's stream (parity tests). */
export interface ExplicitDraw {
  /** Dataset item indices. */
  indices: number[]
  /** NHWC noise: latent-shaped for the autoencoder, input-shaped for the U-Net. */
  noise: Float32Array
  /** U-Net only. */
  timesteps?: number[]
  /** U-Net only: model class indices (after any dropout). */
  labels?: number[]
}

interface SamplerSnapshot {
  rng: ReturnType<Rng['state']>
  order: number[]
  cursor: number
  epoch: number
}

/** A step report from the worker; non-finite numbers arrive as 'NaN' / 'Infinity' strings (JSON has none). */
function parseReport(raw: unknown): StepReport | null {
  if (raw === null || raw === undefined) return null
  const r = raw as Record<string, unknown>
  if (!Number.isInteger(r.step) || typeof r.applied !== 'boolean')
    throw new TrainerError(
      'WORKER_FAILED',
      `torch worker sent a malformed step report: ${JSON.stringify(raw)}`,
    )
  return { step: r.step as number, loss: Number(r.loss), applied: r.applied, gradNorm: Number(r.gradNorm) }
}

interface Layout {
  name: string
  shape: number[]
}

/** Float pixels that are exactly `byte / 127.5 - 1` (as trainer/data.ts makes them) travel as bytes. */
function asBytes(pixels: Float32Array): Uint8Array | undefined {
  const bytes = new Uint8Array(pixels.length)
  for (let i = 0; i < pixels.length; i++) {
    const value = pixels[i] as number
    const byte = Math.round((value + 1) * 127.5)
    if (byte < 0 || byte > 255 || Math.fround(byte / 127.5 - 1) !== value) return undefined
    bytes[i] = byte
  }
  return bytes
}

function checkWeights(
  layout: readonly Layout[],
  weights: readonly NamedTensor[],
  code: 'WEIGHTS_MISMATCH' | 'CHECKPOINT_CORRUPT',
  what: string,
): void {
  const given = new Map(weights.map((w) => [w.name, w]))
  if (given.size !== weights.length) throw new TrainerError(code, `duplicate tensor names in ${what}`)
  for (const { name, shape } of layout) {
    const w = given.get(name)
    if (w === undefined) throw new TrainerError(code, `${what} lack tensor ${name}`)
    const size = shape.reduce((a, b) => a * b, 1)
    if (w.shape.length !== shape.length || w.shape.some((d, i) => d !== shape[i]) || w.data.length !== size)
      throw new TrainerError(code, `tensor ${name} has shape [${w.shape}], the model needs [${shape}]`)
  }
  if (given.size !== layout.length) {
    const known = new Set(layout.map((l) => l.name))
    const extra = weights.find((w) => !known.has(w.name))
    throw new TrainerError(code, `unexpected tensor ${extra?.name ?? '?'} in ${what}`)
  }
}

function toWire(prefix: string, tensors: readonly NamedTensor[]): WireTensor[] {
  return tensors.map((t) => ({ name: `${prefix}${t.name}`, shape: t.shape, data: t.data }))
}

function fromWire(tensors: readonly WireTensor[]): NamedTensor[] {
  return tensors
    .map((t) => ({ name: t.name, shape: [...t.shape], data: t.data as Float32Array }))
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
}

class TorchSession implements TrainerSession {
  readonly phase: Phase
  readonly config: CoopConfig
  readonly worker: TorchWorker
  readonly #dataset: ImageDataset
  readonly #seed: number
  readonly #log: Logger | undefined
  readonly #layout: Layout[]
  readonly #trainable: Layout[]
  readonly #inputShape: [number, number, number]
  readonly #labels: number[]
  readonly #sampler: BatchSampler
  readonly #evaluation: number[]
  readonly #evalNoise: Float32Array[]
  readonly #evalTimesteps: number[]
  readonly #schedule: NoiseSchedule
  readonly #excludedIndices = new Set<number>()
  readonly #excludedShas = new Set<string>()
  readonly #indicesBySha = new Map<string, number[]>()
  #rng: Rng
  #seen = 0
  #applied = 0
  #disposed = false
  /** Serialises the session's operations: a step left pending in the worker must be flushed before anything else. */
  #lock: Promise<unknown> = Promise.resolve()

  constructor(
    options: TrainerSessionOptions,
    worker: TorchWorker,
    layout: Layout[],
    trainable: Layout[],
    inputShape: [number, number, number],
  ) {
    const { config, phase, dataset, seed } = options
    this.phase = phase
    this.config = config
    this.worker = worker
    this.#dataset = dataset
    this.#seed = seed
    this.#log = options.log
    this.#layout = layout
    this.#trainable = trainable
    this.#inputShape = inputShape
    this.#labels = mapLabels(config, dataset)
    this.#schedule = makeSchedule(config.diffusion)
    // As trainer/session.ts: the training stream is separate from the initialisation stream of the seed.
    this.#rng = new Rng(seed + 0x9e3779b9)
    const { train, evaluation } = splitForEval(dataset, config.training.evalBatch)
    this.#sampler = new BatchSampler(train)
    this.#evaluation = evaluation
    const evalRng = new Rng(EVAL_SEED)
    const rowSize = inputShape[0] * inputShape[1] * inputShape[2]
    this.#evalNoise = evaluation.map(() => evalRng.normals(rowSize))
    this.#evalTimesteps = evaluation.map((_, slot) =>
      Math.floor(((slot + 0.5) * config.diffusion.timesteps) / evaluation.length),
    )
    dataset.items.forEach((item, index) => {
      const list = this.#indicesBySha.get(item.sha256) ?? []
      list.push(index)
      this.#indicesBySha.set(item.sha256, list)
    })
  }

  #assertLive(): void {
    if (this.#disposed) throw new TrainerError('INVALID_ARGUMENT', 'trainer session used after dispose()')
  }

  /** Runs `operation` after every operation started before it (a getWeights during trainSteps waits for it). */
  #exclusive<T>(operation: () => Promise<T>): Promise<T> {
    try {
      this.#assertLive()
    } catch (error) {
      return Promise.reject(error)
    }
    const result = this.#lock.then(operation, operation)
    this.#lock = result.catch(() => undefined)
    return result
  }

  #batchSize(): number {
    return this.phase === 'autoencoder' ? this.config.autoencoder.batchSize : this.config.unet.batchSize
  }

  getWeights(): Promise<NamedTensor[]> {
    return this.#exclusive(async () =>
      fromWire((await this.worker.request('get', { group: 'param' })).tensors),
    )
  }

  setWeights(weights: NamedTensor[]): Promise<void> {
    return this.#exclusive(async () => {
      checkWeights(this.#layout, weights, 'WEIGHTS_MISMATCH', 'weights')
      await this.worker.request('set', { group: 'param' }, toWire('', weights))
    })
  }

  getEmaWeights(): Promise<NamedTensor[]> {
    return this.#exclusive(async () => fromWire((await this.worker.request('get', { group: 'ema' })).tensors))
  }

  samplesSeen(): number {
    return this.#seen
  }

  step(): number {
    return this.#applied
  }

  excludeItems(sha256s: Iterable<string>): void {
    for (const sha of sha256s) {
      this.#excludedShas.add(sha)
      for (const index of this.#indicesBySha.get(sha) ?? []) this.#excludedIndices.add(index)
    }
  }

  /** The per-sample schedule coefficients and loss weights, float64 rounded once, as diffusion.ts uses them. */
  #coefficients(timesteps: readonly number[], weighted: boolean): Float32Array {
    const n = timesteps.length
    const out = new Float32Array((weighted ? 3 : 2) * n)
    const weights = weighted ? lossWeights(this.config, this.#schedule, timesteps) : []
    timesteps.forEach((t, i) => {
      const abar = this.#schedule.alphasCumprod[t] as number
      out[i] = Math.sqrt(abar)
      out[n + i] = Math.sqrt(1 - abar)
      if (weighted) out[2 * n + i] = weights[i] as number
    })
    return out
  }

  /** Draws one step's batch, noise, timesteps and dropout in exactly trainer/session.ts's order. */
  #drawStep(): WireTensor[] {
    const batchSize = this.#batchSize()
    const indices = this.#sampler.next(batchSize, this.#rng, this.#excludedIndices)
    const [h, w, c] = this.#inputShape
    const wire: WireTensor[] = [{ name: 'indices', shape: [batchSize], data: Int32Array.from(indices) }]
    if (this.phase === 'autoencoder') {
      const s = latentSize(this.config)
      const z = this.config.autoencoder.latentChannels
      wire.push({
        name: 'noise',
        shape: [batchSize, s, s, z],
        data: this.#rng.normals(batchSize * s * s * z),
      })
      return wire
    }
    const timesteps: number[] = []
    const labels: number[] = []
    const nullLabel = nullClass(this.config)
    for (const index of indices) {
      timesteps.push(this.#rng.int(this.config.diffusion.timesteps))
      const dropped = this.#rng.uniform() < this.config.unet.classDropProb
      labels.push(dropped ? nullLabel : (this.#labels[index] as number))
    }
    const noise = this.#rng.normals(batchSize * h * w * c)
    wire.push(
      { name: 'noise', shape: [batchSize, h, w, c], data: noise },
      { name: 'timesteps', shape: [batchSize], data: Int32Array.from(timesteps) },
      { name: 'labels', shape: [batchSize], data: Int32Array.from(labels) },
      { name: 'coefficients', shape: [3, batchSize], data: this.#coefficients(timesteps, true) },
    )
    return wire
  }

  #explicit(draw: ExplicitDraw): WireTensor[] {
    const n = draw.indices.length
    const [h, w, c] = this.#inputShape
    const noiseShape =
      this.phase === 'autoencoder'
        ? [n, latentSize(this.config), latentSize(this.config), this.config.autoencoder.latentChannels]
        : [n, h, w, c]
    const wire: WireTensor[] = [
      { name: 'indices', shape: [n], data: Int32Array.from(draw.indices) },
      { name: 'noise', shape: noiseShape, data: draw.noise },
    ]
    if (this.phase === 'unet') {
      const timesteps = draw.timesteps ?? []
      wire.push(
        { name: 'timesteps', shape: [n], data: Int32Array.from(timesteps) },
        { name: 'labels', shape: [n], data: Int32Array.from(draw.labels ?? []) },
        { name: 'coefficients', shape: [3, n], data: this.#coefficients(timesteps, true) },
      )
    }
    return wire
  }

  #snapshot(): SamplerSnapshot {
    return {
      rng: this.#rng.state(),
      order: this.#sampler.order,
      cursor: this.#sampler.cursor,
      epoch: this.#sampler.epoch,
    }
  }

  #restore(snapshot: SamplerSnapshot): void {
    this.#rng = new Rng(snapshot.rng)
    this.#sampler.order = snapshot.order
    this.#sampler.cursor = snapshot.cursor
    this.#sampler.epoch = snapshot.epoch
  }

  /** Counts an applied step; a non-finite one becomes NON_FINITE_LOSS (its update was not applied). */
  #account(report: StepReport): void {
    if (!report.applied)
      throw new TrainerError(
        'NON_FINITE_LOSS',
        `${this.phase} loss became ${report.loss} at step ${report.step}${Number.isFinite(report.loss) ? ` (gradient norm ${report.gradNorm})` : ''}`,
      )
    this.#applied = report.step
    this.#seen += this.#batchSize()
  }

  trainSteps(n: number, onStep?: (s: StepInfo) => void): Promise<{ lossMean: number; samples: number }> {
    return this.#exclusive(() => this.#trainSteps(n, onStep))
  }

  async #trainSteps(
    n: number,
    onStep?: (s: StepInfo) => void,
  ): Promise<{ lossMean: number; samples: number }> {
    if (!Number.isInteger(n) || n < 0)
      throw new TrainerError('INVALID_ARGUMENT', `step count must be a non-negative integer, got ${n}`)
    let lossSum = 0
    const seenBefore = this.#seen
    const batchSize = this.#batchSize()
    let last = performance.now()
    let pending = false
    const report = (r: StepReport | null) => {
      if (r === null) return
      this.#account(r)
      lossSum += r.loss
      const now = performance.now()
      const seconds = (now - last) / 1000
      last = now
      onStep?.({ step: r.step, loss: r.loss, imgPerSec: batchSize / Math.max(seconds, 1e-9) })
    }
    try {
      for (let i = 0; i < n; i++) {
        // The worker answers a step with the previous step's report: if that one failed, this step was a
        // no-op there, and its draws are given back so the stream continues as the tfjs session's would.
        const before = this.#snapshot()
        const reply = await this.worker.request('step', {}, this.#drawStep())
        pending = true
        const previous = parseReport(reply.header.report)
        if (previous !== null && !previous.applied) {
          pending = false
          this.#restore(before)
        }
        report(previous)
      }
      if (pending) {
        pending = false
        report(parseReport((await this.worker.request('flush')).header.report))
      }
    } finally {
      // Only on an error (from onStep, say): settle the queued step so the counters stay true, and let the
      // original error through.
      if (pending) {
        const flushed = await this.worker.request('flush').catch(() => undefined)
        const last = flushed === undefined ? null : parseReport(flushed.header.report)
        if (last?.applied === true) this.#account(last)
      }
    }
    return { lossMean: n === 0 ? Number.NaN : lossSum / n, samples: this.#seen - seenBefore }
  }

  evalLoss(options: { ema?: boolean } = {}): Promise<number> {
    return this.#exclusive(() => this.#evalLoss(options))
  }

  async #evalLoss(options: { ema?: boolean }): Promise<number> {
    const slots = this.#evaluation
      .map((index, slot) => ({ index, slot }))
      .filter(({ index }) => !this.#excludedIndices.has(index))
    if (slots.length === 0) throw new TrainerError('DATA_EMPTY', 'every evaluation item has been excluded')
    const n = slots.length
    const wire: WireTensor[] = [
      { name: 'indices', shape: [n], data: Int32Array.from(slots.map((s) => s.index)) },
    ]
    if (this.phase === 'unet') {
      const [h, w, c] = this.#inputShape
      const rowSize = h * w * c
      const noise = new Float32Array(n * rowSize)
      slots.forEach(({ slot }, row) => noise.set(this.#evalNoise[slot] as Float32Array, row * rowSize))
      const timesteps = slots.map(({ slot }) => this.#evalTimesteps[slot] as number)
      wire.push(
        { name: 'noise', shape: [n, h, w, c], data: noise },
        { name: 'timesteps', shape: [n], data: Int32Array.from(timesteps) },
        {
          name: 'labels',
          shape: [n],
          data: Int32Array.from(slots.map(({ index }) => this.#labels[index] as number)),
        },
        { name: 'coefficients', shape: [2, n], data: this.#coefficients(timesteps, false) },
      )
    }
    const reply = await this.worker.request('eval', { ema: options.ema === true }, wire)
    return Number(reply.header.loss)
  }

  /** Loss and gradients of one drawn step without updating anything (the parity tests' view). */
  lossAndGradients(draw?: ExplicitDraw): Promise<{ loss: number; gradients: NamedTensor[] }> {
    return this.#exclusive(async () => {
      const reply = await this.worker.request(
        'grads',
        {},
        draw === undefined ? this.#drawStep() : this.#explicit(draw),
      )
      const gradients = fromWire(reply.tensors).map((t) => ({ ...t, name: t.name.slice('grad/'.length) }))
      return { loss: Number(reply.header.loss), gradients }
    })
  }

  exportState(): Promise<SessionState> {
    return this.#exclusive(() => this.#exportState())
  }

  async #exportState(): Promise<SessionState> {
    const groups = ['param', 'adam_m', 'adam_v', 'ema'] as const
    const tensors: NamedTensor[] = []
    for (const group of groups) {
      const reply = await this.worker.request('get', { group })
      for (const t of fromWire(reply.tensors)) tensors.push({ ...t, name: `${group}/${t.name}` })
    }
    return {
      json: {
        version: 1,
        phase: this.phase,
        step: this.#applied,
        seed: this.#seed,
        rng: this.#rng.state(),
        sampler: {
          order: [...this.#sampler.order],
          cursor: this.#sampler.cursor,
          epoch: this.#sampler.epoch,
        },
        samplesSeen: this.#seen,
        datasetFingerprint: datasetFingerprint(this.#dataset),
        excluded: [...this.#excludedShas].sort(),
      },
      tensors,
    }
  }

  importState(state: SessionState): Promise<void> {
    return this.#exclusive(() => this.#importState(state))
  }

  async #importState(state: SessionState): Promise<void> {
    const { json } = state
    if (json.version !== 1 || json.phase !== this.phase)
      throw new TrainerError(
        'RESUME_MISMATCH',
        `saved state is for phase ${json.phase}, this session trains ${this.phase}`,
      )
    if (json.datasetFingerprint !== datasetFingerprint(this.#dataset))
      throw new TrainerError(
        'RESUME_MISMATCH',
        'saved state was trained on a different dataset (image digests differ)',
      )
    const count = this.#dataset.items.length
    if (
      !json.sampler.order.every((i) => Number.isInteger(i) && i >= 0 && i < count) ||
      json.sampler.cursor > json.sampler.order.length
    )
      throw new TrainerError('CHECKPOINT_CORRUPT', 'saved data order does not fit the dataset')
    const byGroup = (group: string, layout: Layout[]): NamedTensor[] => {
      const prefix = `${group}/`
      const tensors = state.tensors
        .filter((t) => t.name.startsWith(prefix))
        .map((t) => ({ ...t, name: t.name.slice(prefix.length) }))
      checkWeights(layout, tensors, 'CHECKPOINT_CORRUPT', `saved ${group} tensors`)
      return tensors
    }
    const groups = {
      param: byGroup('param', this.#layout),
      adam_m: byGroup('adam_m', this.#trainable),
      adam_v: byGroup('adam_v', this.#trainable),
      ema: byGroup('ema', this.#layout),
    }
    for (const [group, tensors] of Object.entries(groups))
      await this.worker.request('set', { group }, toWire('', tensors))
    await this.worker.request('set_step', { step: json.step })
    this.#applied = json.step
    this.#rng = new Rng(json.rng)
    this.#sampler.order = [...json.sampler.order]
    this.#sampler.cursor = json.sampler.cursor
    this.#sampler.epoch = json.sampler.epoch
    this.#seen = json.samplesSeen
    this.excludeItems(json.excluded)
  }

  dispose(): void {
    if (this.#disposed) return
    this.#disposed = true
    this.worker.close()
    this.#log?.debug({ phase: this.phase }, 'torch worker closed')
  }
}

/** Sends the dataset's pixels in bounded frames: as bytes when they are exactly decoded bytes, else float32. */
async function sendPixels(worker: TorchWorker, dataset: ImageDataset): Promise<void> {
  const size = dataset.size
  const rowSize = size * size * 3
  const perChunk = Math.max(1, Math.floor(TORCH_DATA_CHUNK_BYTES / (rowSize * 4)))
  for (let start = 0; start < dataset.items.length; start += perChunk) {
    const n = Math.min(perChunk, dataset.items.length - start)
    const floats = dataset.pixels.subarray(start * rowSize, (start + n) * rowSize)
    const data = asBytes(floats) ?? floats
    await worker.request('add_data', {}, [{ name: 'pixels', shape: [n, size, size, 3], data }])
  }
  await worker.request('finish_data')
}

export interface TorchSessionExtras {
  /** The worker, for tests and benchmarks that look inside (device, pid). */
  readonly worker: TorchWorker
  /** One step's loss and gradients (drawn, or `draw`), without an update (parity tests). */
  lossAndGradients(draw?: ExplicitDraw): Promise<{ loss: number; gradients: NamedTensor[] }>
}

/**
 * A TrainerSession trained by a PyTorch worker on `runtime` (from initBackend or probeTorch). Initial
 * weights come from the same seeded initialiser as the tfjs session (run on the active tfjs backend),
 * so both backends start from the same numbers.
 */
export async function createTorchSession(
  options: TrainerSessionOptions,
  runtime: TorchRuntime,
): Promise<TrainerSession & TorchSessionExtras> {
  const { config, phase, dataset, seed } = options
  if (phase === 'unet' && options.autoencoder === undefined)
    throw new TrainerError('AUTOENCODER_REQUIRED', 'the U-Net phase needs autoencoder weights')
  const store = phase === 'autoencoder' ? createAutoencoder(config, seed) : createUnet(config, seed)
  let initial: NamedTensor[]
  let trainableNames: string[]
  try {
    initial = store.read()
    trainableNames = store.trainableNames()
  } finally {
    store.dispose()
  }
  const layout = initial.map((t) => ({ name: t.name, shape: [...t.shape] }))
  const trainableSet = new Set(trainableNames)
  const trainable = layout.filter((l) => trainableSet.has(l.name))
  if (phase === 'unet') {
    const aeLayout = (() => {
      const ae = createAutoencoder(config, 0)
      try {
        return ae.names().map((name) => ({ name, shape: [...(ae.variables.get(name)?.shape ?? [])] }))
      } finally {
        ae.dispose()
      }
    })()
    checkWeights(aeLayout, options.autoencoder as NamedTensor[], 'WEIGHTS_MISMATCH', 'autoencoder weights')
  }
  const worker = await TorchWorker.start({
    python: runtime.python,
    device: runtime.device,
    threads: runtime.threads,
    ...(options.log === undefined ? {} : { log: options.log }),
  })
  try {
    const section = phase === 'autoencoder' ? config.autoencoder : config.unet
    await worker.request(
      'init_session',
      {
        config,
        phase,
        trainable: trainableNames,
        hyper: {
          lr: section.lr,
          emaDecay: section.emaDecay,
          beta1: ADAM_BETA1,
          beta2: ADAM_BETA2,
          epsilon: ADAM_EPSILON,
          gradClipNorm: GRAD_CLIP_NORM,
          emaWarmupOffset: EMA_WARMUP_OFFSET,
          latentRmsMomentum: LATENT_RMS_MOMENTUM,
        },
        constants: NET_CONSTANTS,
      },
      [
        ...toWire('param/', initial),
        ...(phase === 'unet' ? toWire('ae/', options.autoencoder as NamedTensor[]) : []),
      ],
    )
    await sendPixels(worker, dataset)
    const s = latentSize(config)
    const inputShape: [number, number, number] =
      phase === 'autoencoder'
        ? [config.image.size, config.image.size, 3]
        : [s, s, config.autoencoder.latentChannels]
    const session = new TorchSession(options, worker, layout, trainable, inputShape)
    options.log?.debug(
      {
        phase,
        device: worker.hello.deviceName,
        torch: worker.hello.torch,
        parameters: initial.reduce((sum, t) => sum + t.data.length, 0),
      },
      'torch trainer session created',
    )
    return session
  } catch (error) {
    worker.close()
    throw error
  }
}
