// Everything random or consent-bound that a torch session decides in the node, in trainer/session.ts's
// exact order and with its shared pieces (BatchSampler, splitForEval, mapLabels, the seeded Rng): which
// items a step uses (never an excluded one, from the next step on), its noise, timesteps and class
// dropout, and the fixed evaluation slots. The worker receives the outcome as tensors.
import type { CoopConfig } from '../../configs/index.ts'
import { latentSize } from '../autoencoder.ts'
import { EVAL_SEED } from '../constants.ts'
import type { ImageDataset } from '../data.ts'
import { lossWeights } from '../diffusion.ts'
import { TrainerError } from '../errors.ts'
import { Rng } from '../rng.ts'
import type { RngState } from '../rng.ts'
import { makeSchedule } from '../schedule.ts'
import type { NoiseSchedule } from '../schedule.ts'
import { BatchSampler, mapLabels, splitForEval } from '../batches.ts'
import type { SessionStateJson } from '../session-types.ts'
import type { Phase } from '../types.ts'
import { nullClass } from '../unet.ts'
import type { WireTensor } from './frames.ts'

/** A step's inputs given by the caller instead of drawn from the stream (parity tests). */
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

/** The stream's position, to give back the draws of a step that the worker did not apply. */
export interface DrawSnapshot {
  rng: RngState
  order: number[]
  cursor: number
  epoch: number
}

export class StepDraws {
  readonly #config: CoopConfig
  readonly #phase: Phase
  /** Per item: [h, w, c] of the worker's training input (pixels, or latents for the U-Net). */
  readonly #inputShape: [number, number, number]
  readonly #labels: number[]
  readonly #schedule: NoiseSchedule
  readonly #sampler: BatchSampler
  readonly #evaluation: number[]
  /** Fixed per-slot eval noise and timesteps, drawn once from EVAL_SEED. */
  readonly #evalNoise: Float32Array[]
  readonly #evalTimesteps: number[]
  readonly #excludedIndices = new Set<number>()
  readonly #excludedShas = new Set<string>()
  readonly #indicesBySha = new Map<string, number[]>()
  #rng: Rng

  constructor(
    config: CoopConfig,
    phase: Phase,
    dataset: ImageDataset,
    seed: number,
    inputShape: [number, number, number],
  ) {
    this.#config = config
    this.#phase = phase
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

  batchSize(): number {
    return this.#phase === 'autoencoder' ? this.#config.autoencoder.batchSize : this.#config.unet.batchSize
  }

  exclude(sha256s: Iterable<string>): void {
    for (const sha of sha256s) {
      this.#excludedShas.add(sha)
      for (const index of this.#indicesBySha.get(sha) ?? []) this.#excludedIndices.add(index)
    }
  }

  excluded(): string[] {
    return [...this.#excludedShas].sort()
  }

  /** The per-sample schedule coefficients and loss weights, float64 rounded once, as diffusion.ts uses them. */
  #coefficients(timesteps: readonly number[], weighted: boolean): Float32Array {
    const n = timesteps.length
    const out = new Float32Array((weighted ? 3 : 2) * n)
    const weights = weighted ? lossWeights(this.#config, this.#schedule, timesteps) : []
    timesteps.forEach((t, i) => {
      const abar = this.#schedule.alphasCumprod[t] as number
      out[i] = Math.sqrt(abar)
      out[n + i] = Math.sqrt(1 - abar)
      if (weighted) out[2 * n + i] = weights[i] as number
    })
    return out
  }

  #noiseShape(n: number): number[] {
    if (this.#phase === 'unet') return [n, ...this.#inputShape]
    const s = latentSize(this.#config)
    return [n, s, s, this.#config.autoencoder.latentChannels]
  }

  /** One training step's inputs, drawn in exactly trainer/session.ts's order. */
  next(): WireTensor[] {
    const batchSize = this.batchSize()
    const indices = this.#sampler.next(batchSize, this.#rng, this.#excludedIndices)
    const noiseShape = this.#noiseShape(batchSize)
    const noiseSize = noiseShape.reduce((a, b) => a * b, 1)
    if (this.#phase === 'autoencoder') return this.explicit({ indices, noise: this.#rng.normals(noiseSize) })
    const timesteps: number[] = []
    const labels: number[] = []
    const nullLabel = nullClass(this.#config)
    for (const index of indices) {
      timesteps.push(this.#rng.int(this.#config.diffusion.timesteps))
      // Always draw, so the stream does not depend on the label.
      const dropped = this.#rng.uniform() < this.#config.unet.classDropProb
      labels.push(dropped ? nullLabel : (this.#labels[index] as number))
    }
    return this.explicit({ indices, noise: this.#rng.normals(noiseSize), timesteps, labels })
  }

  /** A step's inputs as tensors for the worker. */
  explicit(draw: ExplicitDraw): WireTensor[] {
    const n = draw.indices.length
    const wire: WireTensor[] = [
      { name: 'indices', shape: [n], data: Int32Array.from(draw.indices) },
      { name: 'noise', shape: this.#noiseShape(n), data: draw.noise },
    ]
    if (this.#phase === 'unet') {
      const timesteps = draw.timesteps ?? []
      wire.push(
        { name: 'timesteps', shape: [n], data: Int32Array.from(timesteps) },
        { name: 'labels', shape: [n], data: Int32Array.from(draw.labels ?? []) },
        { name: 'coefficients', shape: [3, n], data: this.#coefficients(timesteps, true) },
      )
    }
    return wire
  }

  /** The fixed evaluation batch without excluded items: indices (and the U-Net's noise, timesteps, labels). */
  evaluation(): WireTensor[] {
    const slots = this.#evaluation
      .map((index, slot) => ({ index, slot }))
      .filter(({ index }) => !this.#excludedIndices.has(index))
    if (slots.length === 0) throw new TrainerError('DATA_EMPTY', 'every evaluation item has been excluded')
    const n = slots.length
    const wire: WireTensor[] = [
      { name: 'indices', shape: [n], data: Int32Array.from(slots.map((s) => s.index)) },
    ]
    if (this.#phase === 'autoencoder') return wire
    const rowSize = this.#inputShape[0] * this.#inputShape[1] * this.#inputShape[2]
    const noise = new Float32Array(n * rowSize)
    slots.forEach(({ slot }, row) => noise.set(this.#evalNoise[slot] as Float32Array, row * rowSize))
    const timesteps = slots.map(({ slot }) => this.#evalTimesteps[slot] as number)
    const labels = slots.map(({ index }) => this.#labels[index] as number)
    wire.push(
      { name: 'noise', shape: this.#noiseShape(n), data: noise },
      { name: 'timesteps', shape: [n], data: Int32Array.from(timesteps) },
      { name: 'labels', shape: [n], data: Int32Array.from(labels) },
      { name: 'coefficients', shape: [2, n], data: this.#coefficients(timesteps, false) },
    )
    return wire
  }

  snapshot(): DrawSnapshot {
    const { order, cursor, epoch } = this.#sampler
    return { rng: this.#rng.state(), order, cursor, epoch }
  }

  restore(snapshot: DrawSnapshot): void {
    this.#rng = new Rng(snapshot.rng)
    // The sampler replaces its order array when it reshuffles, so a snapshot may share it.
    this.#sampler.order = snapshot.order
    this.#sampler.cursor = snapshot.cursor
    this.#sampler.epoch = snapshot.epoch
  }

  /** The parts of SessionStateJson this stream owns. */
  state(): Pick<SessionStateJson, 'rng' | 'sampler' | 'excluded'> {
    const { order, cursor, epoch } = this.#sampler
    return {
      rng: this.#rng.state(),
      sampler: { order: [...order], cursor, epoch },
      excluded: this.excluded(),
    }
  }

  restoreState(json: SessionStateJson): void {
    this.restore({
      rng: json.rng,
      order: [...json.sampler.order],
      cursor: json.sampler.cursor,
      epoch: json.sampler.epoch,
    })
    this.exclude(json.excluded)
  }
}
