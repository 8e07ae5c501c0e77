// Parameters and the building blocks shared by the autoencoder and the U-Net, written
// with tfjs-core ops only (no tfjs-layers) so that every backend, including wasm with the
// project's gradient kernels, can train them.
//
// A model is a plain function of a ParamStore: the first call (under `initialize`) creates
// each parameter where the forward pass first asks for it, with values from a seeded Rng,
// so parameter names, shapes and initial values are fixed by the config and the seed alone.
import * as tf from '@tensorflow/tfjs-core'
import { GROUPNORM_EPSILON } from './constants.ts'
import { TrainerError } from './errors.ts'
import { convWithBias } from './kernels/conv-bias.ts'
import { groupNorm as fusedGroupNorm } from './kernels/groupnorm.ts'
import { silu as fusedSilu } from './kernels/silu.ts'
import { upsampleNearest2x } from './kernels/upsample.ts'
import type { Rng } from './rng.ts'
import type { NamedTensor } from './types.ts'

export type Init = { kind: 'normal'; std: number } | { kind: 'zeros' } | { kind: 'ones' }

export class ParamStore {
  readonly variables: Map<string, tf.Variable> = new Map()
  /** Non-trainable tensors kept with the weights (e.g. the running latent RMS). */
  readonly buffers: Set<string> = new Set()
  private rng: Rng | undefined

  /**
   * A store over existing variables (e.g. the EMA shadows), so a model runs on them without copying.
   * It shares them: disposing it is a no-op, the owner disposes the variables.
   */
  static over(variables: Map<string, tf.Variable>, buffers: ReadonlySet<string>): ParamStore {
    const view = new ParamStore()
    for (const [name, v] of variables) view.variables.set(name, v)
    for (const name of buffers) view.buffers.add(name)
    view.borrowed = true
    return view
  }

  private borrowed = false

  /** Runs `define` once with parameter creation enabled; later calls only look parameters up. */
  initialize(rng: Rng, define: () => void): void {
    this.rng = rng
    try {
      tf.tidy(define)
    } finally {
      this.rng = undefined
    }
  }

  get(name: string, shape: number[], init: Init, options: { buffer?: boolean } = {}): tf.Variable {
    const existing = this.variables.get(name)
    if (existing !== undefined) {
      if (existing.shape.length !== shape.length || existing.shape.some((d, i) => d !== shape[i]))
        throw new TrainerError(
          'WEIGHTS_MISMATCH',
          `parameter ${name} has shape [${existing.shape}] but the model asks for [${shape}]`,
        )
      return existing
    }
    if (this.rng === undefined) throw new TrainerError('WEIGHTS_MISMATCH', `parameter ${name} does not exist`)
    const size = shape.reduce((a, b) => a * b, 1)
    let values: Float32Array
    if (init.kind === 'normal') {
      values = this.rng.normals(size)
      for (let i = 0; i < size; i++) values[i] = (values[i] as number) * init.std
    } else values = new Float32Array(size).fill(init.kind === 'ones' ? 1 : 0)
    const variable = tf.keep(
      tf.variable(tf.tensor(values, shape, 'float32'), !options.buffer, `${name}_${variableCounter++}`),
    )
    this.variables.set(name, variable)
    if (options.buffer) this.buffers.add(name)
    return variable
  }

  names(): string[] {
    return [...this.variables.keys()].sort()
  }

  trainableNames(): string[] {
    return this.names().filter((n) => !this.buffers.has(n))
  }

  /** Copies of every tensor, sorted by name, read back without blocking (one transfer on a GPU). */
  read(): Promise<NamedTensor[]> {
    return readTensors(this.names().map((name) => [name, this.variables.get(name) as tf.Variable]))
  }

  /** Every tensor flattened into one array, in `names()` order (how weights travel to worker threads). */
  async readFlat(): Promise<Float32Array> {
    const flat = tf.tidy(() =>
      tf.concat(this.names().map((name) => tf.reshape(this.variables.get(name) as tf.Variable, [-1]))),
    )
    try {
      return (await flat.data()) as Float32Array
    } finally {
      flat.dispose()
    }
  }

  /** The inverse of readFlat: same store layout (same config), every tensor replaced. */
  writeFlat(values: Float32Array): void {
    let offset = 0
    const names = this.names()
    const total = names.reduce((sum, name) => sum + (this.variables.get(name) as tf.Variable).size, 0)
    if (values.length !== total)
      throw new TrainerError('WEIGHTS_MISMATCH', `${values.length} values for ${total} parameters`)
    for (const name of names) {
      const v = this.variables.get(name) as tf.Variable
      const part = values.subarray(offset, offset + v.size)
      offset += v.size
      tf.tidy(() => v.assign(tf.tensor(part, v.shape, 'float32')))
    }
  }

  /** Replaces every tensor; names and shapes must match exactly (no missing, no extra). */
  write(weights: readonly NamedTensor[]): void {
    const given = new Map(weights.map((w) => [w.name, w]))
    if (given.size !== weights.length)
      throw new TrainerError('WEIGHTS_MISMATCH', 'duplicate tensor names in weights')
    for (const name of this.variables.keys())
      if (!given.has(name)) throw new TrainerError('WEIGHTS_MISMATCH', `weights lack tensor ${name}`)
    for (const w of weights) {
      const v = this.variables.get(w.name)
      if (v === undefined) throw new TrainerError('WEIGHTS_MISMATCH', `unexpected tensor ${w.name}`)
      const size = v.shape.reduce((a, b) => a * b, 1)
      if (
        w.shape.length !== v.shape.length ||
        w.shape.some((d, i) => d !== v.shape[i]) ||
        w.data.length !== size
      )
        throw new TrainerError(
          'WEIGHTS_MISMATCH',
          `tensor ${w.name} has shape [${w.shape}], the model needs [${v.shape}]`,
        )
    }
    for (const w of weights) {
      const v = this.variables.get(w.name) as tf.Variable
      tf.tidy(() => v.assign(tf.tensor(w.data, v.shape, 'float32')))
    }
  }

  dispose(): void {
    if (!this.borrowed) for (const v of this.variables.values()) v.dispose()
    this.variables.clear()
  }
}

let variableCounter = 0

/**
 * Reads named tensors back to the host asynchronously, as float32 copies in the given order. They are
 * concatenated on the device first, so a GPU backend makes one transfer instead of one per tensor.
 */
export async function readTensors(
  entries: readonly (readonly [string, tf.Tensor])[],
): Promise<NamedTensor[]> {
  if (entries.length === 0) return []
  const flat = tf.tidy(() => tf.concat(entries.map(([, t]) => tf.reshape(tf.cast(t, 'float32'), [-1]))))
  let values: Float32Array
  try {
    values = (await flat.data()) as Float32Array
  } finally {
    flat.dispose()
  }
  let offset = 0
  return entries.map(([name, t]) => {
    const data = values.slice(offset, offset + t.size)
    offset += t.size
    return { name, shape: [...t.shape], data }
  })
}

/** Checks a NamedTensor list against a model's names and shapes without touching variables. */
export function describeWeights(store: ParamStore): { name: string; shape: number[] }[] {
  return store.names().map((name) => ({ name, shape: [...(store.variables.get(name) as tf.Variable).shape] }))
}

/** Normal(0, 1/fan_in): unit-variance activations through linear layers (LeCun init). */
function fanInStd(fanIn: number): number {
  return Math.sqrt(1 / fanIn)
}

/** SiLU with a one-pass gradient (trainer/kernels/silu.ts). */
export function silu(x: tf.Tensor): tf.Tensor {
  return fusedSilu(x)
}

/** 'same'-padded convolution with bias; `zeroInit` for the last conv of a residual branch. */
export function conv(
  p: ParamStore,
  name: string,
  x: tf.Tensor4D,
  outChannels: number,
  options: { kernel?: number; stride?: 1 | 2; zeroInit?: boolean } = {},
): tf.Tensor4D {
  const kernel = options.kernel ?? 3
  const inChannels = x.shape[3]
  const w = p.get(
    `${name}.weight`,
    [kernel, kernel, inChannels, outChannels],
    options.zeroInit ? { kind: 'zeros' } : { kind: 'normal', std: fanInStd(kernel * kernel * inChannels) },
  )
  const b = p.get(`${name}.bias`, [outChannels], { kind: 'zeros' })
  // One kernel, lazy gradients (trainer/kernels/conv-bias.ts).
  return convWithBias(x, w as tf.Tensor4D, b as tf.Tensor1D, options.stride ?? 1)
}

export function linear(
  p: ParamStore,
  name: string,
  x: tf.Tensor2D,
  outFeatures: number,
  options: { zeroInit?: boolean } = {},
): tf.Tensor2D {
  const inFeatures = x.shape[1]
  const w = p.get(
    `${name}.weight`,
    [inFeatures, outFeatures],
    options.zeroInit ? { kind: 'zeros' } : { kind: 'normal', std: fanInStd(inFeatures) },
  )
  const b = p.get(`${name}.bias`, [outFeatures], { kind: 'zeros' })
  return tf.add(tf.matMul(x, w as tf.Tensor2D), b)
}

/** GroupNorm (Wu & He 2018) over NHWC with a learned per-channel scale and shift (fused kernel on wasm/cpu). */
export function groupNorm(p: ParamStore, name: string, x: tf.Tensor4D, groups: number): tf.Tensor4D {
  const c = x.shape[3]
  const gamma = p.get(`${name}.weight`, [c], { kind: 'ones' })
  const beta = p.get(`${name}.bias`, [c], { kind: 'zeros' })
  return fusedGroupNorm(x, gamma as tf.Tensor1D, beta as tf.Tensor1D, groups, GROUPNORM_EPSILON)
}

/** Nearest-neighbour 2x upsampling (trainer/kernels/upsample.ts: gradient is 4x an average pool). */
export function upsample2x(x: tf.Tensor4D): tf.Tensor4D {
  return upsampleNearest2x(x)
}

/**
 * Residual block: GroupNorm, SiLU, conv, (+ projected embedding), GroupNorm, SiLU, conv
 * (zero-initialised, so each block starts as the identity), plus a 1x1 skip when channels change.
 */
export function resBlock(
  p: ParamStore,
  name: string,
  x: tf.Tensor4D,
  outChannels: number,
  groups: number,
  embedding?: tf.Tensor2D,
): tf.Tensor4D {
  let h = conv(p, `${name}.conv1`, silu(groupNorm(p, `${name}.norm1`, x, groups)) as tf.Tensor4D, outChannels)
  if (embedding !== undefined) {
    const projected = linear(p, `${name}.emb`, silu(embedding) as tf.Tensor2D, outChannels)
    h = tf.add(h, tf.reshape(projected, [projected.shape[0], 1, 1, outChannels]))
  }
  h = conv(p, `${name}.conv2`, silu(groupNorm(p, `${name}.norm2`, h, groups)) as tf.Tensor4D, outChannels, {
    zeroInit: true,
  })
  const skip = x.shape[3] === outChannels ? x : conv(p, `${name}.skip`, x, outChannels, { kernel: 1 })
  return tf.add(skip, h)
}

/** Multi-head self-attention over the spatial positions, residual, output projection zero-initialised. */
export function selfAttention(
  p: ParamStore,
  name: string,
  x: tf.Tensor4D,
  heads: number,
  groups: number,
): tf.Tensor4D {
  const [n, h, w, c] = x.shape
  const tokens = h * w
  const headDim = c / heads
  const normalized = tf.reshape(groupNorm(p, `${name}.norm`, x, groups), [n * tokens, c]) as tf.Tensor2D
  const qkv = linear(p, `${name}.qkv`, normalized, 3 * c)
  const split = (index: number) => {
    const part = tf.slice(qkv, [0, index * c], [n * tokens, c])
    // [n, tokens, heads, headDim] -> [n, heads, tokens, headDim] -> [n*heads, tokens, headDim]
    return tf.reshape(tf.transpose(tf.reshape(part, [n, tokens, heads, headDim]), [0, 2, 1, 3]), [
      n * heads,
      tokens,
      headDim,
    ]) as tf.Tensor3D
  }
  const q = split(0)
  const k = split(1)
  const v = split(2)
  const scores = tf.mul(tf.matMul(q, k, false, true), 1 / Math.sqrt(headDim))
  const attended = tf.matMul(tf.softmax(scores), v)
  const merged = tf.reshape(tf.transpose(tf.reshape(attended, [n, heads, tokens, headDim]), [0, 2, 1, 3]), [
    n * tokens,
    c,
  ]) as tf.Tensor2D
  const projected = linear(p, `${name}.proj`, merged, c, { zeroInit: true })
  return tf.add(x, tf.reshape(projected, [n, h, w, c]))
}

/** Sinusoidal embedding of (possibly fractional) timesteps, as in "Attention is all you need" / DDPM. */
export function timestepEmbedding(timesteps: readonly number[], dim: number): tf.Tensor2D {
  const half = dim / 2
  const values = new Float32Array(timesteps.length * dim)
  timesteps.forEach((t, row) => {
    for (let i = 0; i < half; i++) {
      const frequency = Math.exp((-Math.log(10000) * i) / half)
      values[row * dim + i] = Math.sin(t * frequency)
      values[row * dim + half + i] = Math.cos(t * frequency)
    }
  })
  return tf.tensor2d(values, [timesteps.length, dim])
}
