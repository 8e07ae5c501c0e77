// The data side of a training session: which items train and which evaluate, the epoch-shuffled batch
// order, model labels, and the per-step draw of a batch with its noise, timesteps and class dropout.
// Pure JS over the dataset's float arrays: no tfjs, so a worker thread can be handed a shard of a draw.
import type { CoopConfig } from '../configs/index.ts'
import { sha256Digest } from '../protocol/digest.ts'
import { EVAL_HOLDOUT_FRACTION, EVAL_HOLDOUT_MIN_DATASET } from './constants.ts'
import type { ImageDataset } from './data.ts'
import { TrainerError } from './errors.ts'
import type { Rng } from './rng.ts'
import type { Phase } from './types.ts'
import { nullClass } from './unet.ts'

export function datasetFingerprint(dataset: ImageDataset): string {
  return sha256Digest(new TextEncoder().encode(dataset.items.map((i) => i.sha256).join('\n')))
}

/** Maps dataset labels to model class indices (null class for flat folders or unconditional configs). */
export function mapLabels(config: CoopConfig, dataset: ImageDataset): number[] {
  const nullLabel = nullClass(config)
  if (config.classes.length === 0) return dataset.items.map(() => nullLabel)
  // Only folders that hold loaded images count: one of unconsented files does not stop training.
  const used = new Set(dataset.items.map((item) => item.label))
  const unknown = dataset.classes.filter((name, label) => used.has(label) && !config.classes.includes(name))
  if (unknown.length > 0)
    throw new TrainerError(
      'UNKNOWN_CLASS',
      `dataset class${unknown.length > 1 ? 'es' : ''} ${unknown.map((n) => `'${n}'`).join(', ')} not among the model's classes (${config.classes.join(', ')}); ` +
        `a model of your folder's classes needs them in its config (coop train: --set 'classes=${JSON.stringify(dataset.classes)}'; coop simulate: a --config file with "classes"; a cooperative: the charter's config)`,
    )
  const classIndex = dataset.classes.map((name) => config.classes.indexOf(name))
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

export function gatherRows(source: Float32Array, rowSize: number, indices: readonly number[]): Float32Array {
  const out = new Float32Array(indices.length * rowSize)
  indices.forEach((index, row) =>
    out.set(source.subarray(index * rowSize, (index + 1) * rowSize), row * rowSize),
  )
  return out
}

/**
 * One part of a training batch: rows [count, ...inputShape] of inputs (pixels or latents), the noise the
 * step draws for them, and for the U-Net their timesteps and (dropout-applied) labels. Structured-clonable.
 */
export interface BatchShard {
  count: number
  inputs: Float32Array
  noise: Float32Array
  timesteps: number[]
  labels: number[]
}

/**
 * Draws one step's batch from the training stream and cuts it into `shards` contiguous parts (sizes
 * differ by at most one). The stream consumed is the same whatever the shard count, so the data, noise,
 * timesteps and dropout a seed yields do not depend on how the gradient is then computed.
 */
export function drawBatch(options: {
  config: CoopConfig
  phase: Phase
  indices: readonly number[]
  rng: Rng
  inputs: Float32Array
  inputShape: readonly [number, number, number]
  labels: readonly number[]
  latentSize: number
  shards: number
}): BatchShard[] {
  const { config, phase, indices, rng, inputShape } = options
  const batchSize = indices.length
  const rowSize = inputShape[0] * inputShape[1] * inputShape[2]
  let noiseRow: number
  const timesteps: number[] = []
  const labels: number[] = []
  let noise: Float32Array
  if (phase === 'autoencoder') {
    noiseRow = options.latentSize * options.latentSize * config.autoencoder.latentChannels
    noise = rng.normals(batchSize * noiseRow)
  } else {
    const nullLabel = nullClass(config)
    for (const index of indices) {
      timesteps.push(rng.int(config.diffusion.timesteps))
      // Always draw, so the stream does not depend on the label.
      const dropped = rng.uniform() < config.unet.classDropProb
      labels.push(dropped ? nullLabel : (options.labels[index] as number))
    }
    noiseRow = rowSize
    noise = rng.normals(batchSize * noiseRow)
  }
  const parts: BatchShard[] = []
  const count = Math.max(1, Math.min(options.shards, batchSize))
  let start = 0
  for (let s = 0; s < count; s++) {
    const size = Math.floor(batchSize / count) + (s < batchSize % count ? 1 : 0)
    const rows = indices.slice(start, start + size)
    parts.push({
      count: size,
      inputs: gatherRows(options.inputs, rowSize, rows),
      noise: noise.slice(start * noiseRow, (start + size) * noiseRow),
      timesteps: phase === 'unet' ? timesteps.slice(start, start + size) : [],
      labels: phase === 'unet' ? labels.slice(start, start + size) : [],
    })
    start += size
  }
  return parts
}
