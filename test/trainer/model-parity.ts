// What the wasm-versus-cpu parity tests share: the cheap configs, a model whose every parameter is
// non-trivial, one batch of inputs, and a relative difference over named gradients.
import * as tf from '@tensorflow/tfjs-core'
import { CONFIG_NAMES, loadConfig } from '../../configs/index.ts'
import type { CoopConfig } from '../../configs/index.ts'
import { createAutoencoder } from '../../trainer/autoencoder.ts'
import type { BatchShard } from '../../trainer/batches.ts'
import type { ParamStore } from '../../trainer/nn.ts'
import { Rng } from '../../trainer/rng.ts'
import type { NamedTensor, Phase } from '../../trainer/types.ts'
import { createUnet, nullClass } from '../../trainer/unet.ts'

/** Rows per batch: two, so a 2-thread step has two one-row shards. */
export const PARITY_BATCH = 2
/** Presets up to this image side run on the pure cpu backend in seconds; gpu256 would take hours. */
const MAX_CHEAP_IMAGE_SIZE = 32

/** Every preset cheap enough to train on the cpu backend in a test, at PARITY_BATCH rows. */
export function cheapConfigs(): CoopConfig[] {
  return CONFIG_NAMES.map((name) =>
    loadConfig(name, {
      'autoencoder.batchSize': PARITY_BATCH,
      'unet.batchSize': PARITY_BATCH,
      'training.evalBatch': PARITY_BATCH,
    }),
  ).filter((config) => config.image.size <= MAX_CHEAP_IMAGE_SIZE)
}

export function createModel(config: CoopConfig, phase: Phase, seed: number): ParamStore {
  return phase === 'autoencoder' ? createAutoencoder(config, seed) : createUnet(config, seed)
}

/**
 * Initial weights moved away from their special values: biases and zero-initialised convolutions
 * (conv_out, each residual branch's last conv) would hide a kernel that drops or mangles them, and unit
 * GroupNorm gains one that ignores them. Every value gets a distinct deterministic offset.
 */
export function nonTrivialWeights(weights: NamedTensor[]): NamedTensor[] {
  let k = 0
  return weights.map((t) => ({
    ...t,
    data: t.data.map((v) => v + 0.05 * Math.sin(++k * 0.7) + 0.02),
  }))
}

/** One batch of PARITY_BATCH rows with every timestep regime and the null class. */
export function parityBatch(
  config: CoopConfig,
  phase: Phase,
  inputShape: readonly [number, number, number],
  latentSize: number,
): BatchShard {
  const rng = new Rng(17)
  const rowSize = inputShape[0] * inputShape[1] * inputShape[2]
  const inputs = rng.normals(PARITY_BATCH * rowSize).map((v) => (phase === 'autoencoder' ? Math.tanh(v) : v))
  const noiseRow =
    phase === 'autoencoder' ? latentSize * latentSize * config.autoencoder.latentChannels : rowSize
  return {
    count: PARITY_BATCH,
    inputs,
    noise: rng.normals(PARITY_BATCH * noiseRow),
    timesteps: phase === 'autoencoder' ? [] : [3, config.diffusion.timesteps - 1],
    labels: phase === 'autoencoder' ? [] : [1, nullClass(config)],
  }
}

/** The batch cut into one-row shards, as the 2-thread engine takes it. */
export function splitRows(batch: BatchShard): BatchShard[] {
  const rows: BatchShard[] = []
  const inputRow = batch.inputs.length / batch.count
  const noiseRow = batch.noise.length / batch.count
  for (let r = 0; r < batch.count; r++)
    rows.push({
      count: 1,
      inputs: batch.inputs.slice(r * inputRow, (r + 1) * inputRow),
      noise: batch.noise.slice(r * noiseRow, (r + 1) * noiseRow),
      timesteps: batch.timesteps.slice(r, r + 1),
      labels: batch.labels.slice(r, r + 1),
    })
  return rows
}

/** ||a - b|| / ||b|| over all tensors, and the worst single tensor's (each against its own norm). */
export function relativeDifference(
  a: NamedTensor[],
  b: NamedTensor[],
): { total: number; worst: number; name: string } {
  let diff = 0
  let norm = 0
  let worst = 0
  let name = ''
  a.forEach((t, i) => {
    const other = b[i] as NamedTensor
    if (t.name !== other.name || t.data.length !== other.data.length)
      throw new Error(`tensor ${i}: ${t.name} [${t.data.length}] vs ${other.name} [${other.data.length}]`)
    let d = 0
    let n = 0
    for (let j = 0; j < t.data.length; j++) {
      d += ((t.data[j] as number) - (other.data[j] as number)) ** 2
      n += (other.data[j] as number) ** 2
    }
    diff += d
    norm += n
    // NaN compares false with everything: make it the worst.
    const relative = Number.isNaN(d) ? Infinity : n > 0 ? Math.sqrt(d / n) : Math.sqrt(d)
    if (relative > worst || name === '') {
      worst = relative
      name = t.name
    }
  })
  const total = Math.sqrt(diff / norm)
  return { total: Number.isNaN(total) ? Infinity : total, worst, name }
}

/** Gradient tensors (engine order = trainableNames order) read back as named tensors. */
export async function namedGradients(store: ParamStore, grads: tf.Tensor[]): Promise<NamedTensor[]> {
  const names = store.trainableNames()
  return Promise.all(
    grads.map(async (g, i) => ({
      name: names[i] as string,
      shape: [...g.shape],
      data: new Float32Array((await g.data()) as Float32Array),
    })),
  )
}
