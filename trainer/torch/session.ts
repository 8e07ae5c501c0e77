// `--backend torch`: a TrainerSession whose model, optimizer state and forward/backward live in a
// PyTorch worker process (worker.py), while everything the node must decide stays here (draws.ts):
// which items may be used (the dataset given is already consent-filtered; excludeItems takes effect
// from the next step), the batch order, noise, timesteps and class dropout (the same seeded Rng stream
// as the tfjs session, so a seed gives the same batches on both backends), the evaluation slots, and
// the state format (exportState/importState are interchangeable with the tfjs session's).
//
// The worker receives only decoded pixels of the session's dataset, weights, and per-step draws; it
// returns losses and weights. Weights cross in tfjs layout, so checkpoints are the same files.
import { createAutoencoder, latentSize } from '../autoencoder.ts'
import {
  ADAM_BETA1,
  ADAM_BETA2,
  ADAM_EPSILON,
  EMA_WARMUP_OFFSET,
  GRAD_CLIP_NORM,
  LATENT_RMS_MOMENTUM,
} from '../constants.ts'
import type { ImageDataset } from '../data.ts'
import { TrainerError } from '../errors.ts'
import { datasetFingerprint } from '../batches.ts'
import type { SessionState, StepInfo, TrainerSession, TrainerSessionOptions } from '../session-types.ts'
import type { CoopConfig } from '../../configs/index.ts'
import type { Logger, NamedTensor, Phase } from '../types.ts'
import { createUnet } from '../unet.ts'
import { StepDraws } from './draws.ts'
import type { ExplicitDraw } from './draws.ts'
import type { TorchRuntime } from './probe.ts'
import { checkWeights, fromWire, NET_CONSTANTS, parseReport, sendPixels, toWire } from './wire.ts'
import type { Layout, StepReport } from './wire.ts'
import { TorchWorker } from './worker-process.ts'

export type { ExplicitDraw } from './draws.ts'
export { NET_CONSTANTS } from './wire.ts'

const STATE_GROUPS = ['param', 'adam_m', 'adam_v', 'ema'] as const

class TorchSession implements TrainerSession {
  readonly phase: Phase
  readonly config: CoopConfig
  readonly worker: TorchWorker
  readonly #dataset: ImageDataset
  readonly #seed: number
  readonly #log: Logger | undefined
  readonly #layout: Layout[]
  readonly #trainable: Layout[]
  readonly #draws: StepDraws
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
    this.phase = options.phase
    this.config = options.config
    this.worker = worker
    this.#dataset = options.dataset
    this.#seed = options.seed
    this.#log = options.log
    this.#layout = layout
    this.#trainable = trainable
    this.#draws = new StepDraws(options.config, options.phase, options.dataset, options.seed, inputShape)
  }

  /** Runs `operation` after every operation started before it (a getWeights during trainSteps waits for it). */
  #exclusive<T>(operation: () => Promise<T>): Promise<T> {
    if (this.#disposed)
      return Promise.reject(new TrainerError('INVALID_ARGUMENT', 'trainer session used after dispose()'))
    const result = this.#lock.then(operation, operation)
    this.#lock = result.catch(() => undefined)
    return result
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
    this.#draws.exclude(sha256s)
  }

  /** Counts an applied step; a non-finite one becomes NON_FINITE_LOSS (its update was not applied). */
  #account(report: StepReport): void {
    if (!report.applied)
      throw new TrainerError(
        'NON_FINITE_LOSS',
        `${this.phase} loss became ${report.loss} at step ${report.step}${Number.isFinite(report.loss) ? ` (gradient norm ${report.gradNorm})` : ''}`,
      )
    this.#applied = report.step
    this.#seen += this.#draws.batchSize()
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
    const batchSize = this.#draws.batchSize()
    let last = performance.now()
    let pending = false
    const report = (r: StepReport | null) => {
      if (r === null) return
      this.#account(r)
      lossSum += r.loss
      const now = performance.now()
      const seconds = (now - last) / 1000
      last = now
      // One shard: the worker computes the whole batch (no per-thread timing to report).
      onStep?.({ step: r.step, loss: r.loss, imgPerSec: batchSize / Math.max(seconds, 1e-9), shards: [] })
    }
    try {
      for (let i = 0; i < n; i++) {
        // The worker answers a step with the previous step's report: if that one failed, this step was a
        // no-op there, and its draws are given back so the stream continues as the tfjs session's would.
        const before = this.#draws.snapshot()
        const reply = await this.worker.request('step', {}, this.#draws.next())
        pending = true
        const previous = parseReport(reply.header.report)
        if (previous !== null && !previous.applied) {
          pending = false
          this.#draws.restore(before)
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
        const settled = flushed === undefined ? null : parseReport(flushed.header.report)
        if (settled?.applied === true) this.#account(settled)
      }
    }
    return { lossMean: n === 0 ? Number.NaN : lossSum / n, samples: this.#seen - seenBefore }
  }

  evalLoss(options: { ema?: boolean } = {}): Promise<number> {
    return this.#exclusive(async () => {
      const reply = await this.worker.request('eval', { ema: options.ema === true }, this.#draws.evaluation())
      return Number(reply.header.loss)
    })
  }

  /** Loss and gradients of one step (drawn, or `draw`) without updating anything (the parity tests' view). */
  lossAndGradients(draw?: ExplicitDraw): Promise<{ loss: number; gradients: NamedTensor[] }> {
    return this.#exclusive(async () => {
      const inputs = draw === undefined ? this.#draws.next() : this.#draws.explicit(draw)
      const reply = await this.worker.request('grads', {}, inputs)
      const gradients = fromWire(reply.tensors).map((t) => ({ ...t, name: t.name.slice('grad/'.length) }))
      return { loss: Number(reply.header.loss), gradients }
    })
  }

  exportState(): Promise<SessionState> {
    return this.#exclusive(async () => {
      const tensors: NamedTensor[] = []
      for (const group of STATE_GROUPS) {
        const reply = await this.worker.request('get', { group })
        for (const t of fromWire(reply.tensors)) tensors.push({ ...t, name: `${group}/${t.name}` })
      }
      const { rng, sampler, excluded } = this.#draws.state()
      return {
        json: {
          version: 1,
          phase: this.phase,
          step: this.#applied,
          seed: this.#seed,
          rng,
          sampler,
          samplesSeen: this.#seen,
          datasetFingerprint: datasetFingerprint(this.#dataset),
          excluded,
        },
        tensors,
      }
    })
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
    // Every group is checked before anything is sent: a bad state changes nothing.
    const groups = STATE_GROUPS.map((group) => {
      const prefix = `${group}/`
      const tensors = state.tensors
        .filter((t) => t.name.startsWith(prefix))
        .map((t) => ({ ...t, name: t.name.slice(prefix.length) }))
      const layout = group === 'adam_m' || group === 'adam_v' ? this.#trainable : this.#layout
      checkWeights(layout, tensors, 'CHECKPOINT_CORRUPT', `saved ${group} tensors`)
      return { group, tensors }
    })
    for (const { group, tensors } of groups) await this.worker.request('set', { group }, toWire('', tensors))
    await this.worker.request('set_step', { step: json.step })
    this.#applied = json.step
    this.#seen = json.samplesSeen
    this.#draws.restoreState(json)
  }

  dispose(): void {
    if (this.#disposed) return
    this.#disposed = true
    this.worker.close()
    this.#log?.debug({ phase: this.phase }, 'torch worker closed')
  }
}

export interface TorchSessionExtras {
  /** The worker, for tests and benchmarks that look inside (device, pid). */
  readonly worker: TorchWorker
  /** One step's loss and gradients (drawn, or `draw`), without an update (parity tests). */
  lossAndGradients(draw?: ExplicitDraw): Promise<{ loss: number; gradients: NamedTensor[] }>
}

function layoutOf(tensors: readonly { name: string; shape: readonly number[] }[]): Layout[] {
  return tensors.map((t) => ({ name: t.name, shape: [...t.shape] }))
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
    initial = await store.read()
    trainableNames = store.trainableNames()
  } finally {
    store.dispose()
  }
  const layout = layoutOf(initial)
  const trainableSet = new Set(trainableNames)
  const trainable = layout.filter((l) => trainableSet.has(l.name))
  if (phase === 'unet') {
    const ae = createAutoencoder(config, 0)
    const aeLayout = layoutOf(
      ae.names().map((name) => ({ name, shape: ae.variables.get(name)?.shape ?? [] })),
    )
    ae.dispose()
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
    const hyper = {
      lr: section.lr,
      emaDecay: section.emaDecay,
      beta1: ADAM_BETA1,
      beta2: ADAM_BETA2,
      epsilon: ADAM_EPSILON,
      gradClipNorm: GRAD_CLIP_NORM,
      emaWarmupOffset: EMA_WARMUP_OFFSET,
      latentRmsMomentum: LATENT_RMS_MOMENTUM,
    }
    const autoencoder = phase === 'unet' ? toWire('ae/', options.autoencoder as NamedTensor[]) : []
    await worker.request(
      'init_session',
      { config, phase, trainable: trainableNames, hyper, constants: NET_CONSTANTS },
      [...toWire('param/', initial), ...autoencoder],
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
