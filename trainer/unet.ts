// The denoiser: a U-Net on latents (Ho et al. 2020; Rombach et al. 2022, small).
// ResBlocks with GroupNorm + SiLU, a sinusoidal timestep embedding through a 2-layer MLP,
// class conditioning by a learned embedding added to the time embedding, with an extra
// "null" class (index = number of classes) for classifier-free guidance, and optional
// multi-head self-attention in the middle, at the lowest resolution.
import * as tf from '@tensorflow/tfjs-core'
import type { CoopConfig } from '../configs/index.ts'
import {
  conv,
  groupNorm,
  linear,
  ParamStore,
  resBlock,
  selfAttention,
  silu,
  timestepEmbedding,
  upsample2x,
} from './nn.ts'
import { Rng } from './rng.ts'

/** Label of the null class: one past the configured classes. */
export function nullClass(config: CoopConfig): number {
  return config.classes.length
}

/** One-hot rows times a table instead of a gather: its gradient is a matMul on every backend. */
function classEmbedding(
  p: ParamStore,
  labels: readonly number[],
  classCount: number,
  dim: number,
): tf.Tensor2D {
  const table = p.get('class_embedding.weight', [classCount, dim], { kind: 'normal', std: 1 })
  // Built in JS: tf.oneHot refuses a depth of 1 (an unconditional model has only the null class).
  const oneHot = new Float32Array(labels.length * classCount)
  labels.forEach((label, row) => {
    oneHot[row * classCount + label] = 1
  })
  return tf.matMul(tf.tensor2d(oneHot, [labels.length, classCount]), table as tf.Tensor2D)
}

/**
 * Predicts epsilon or v (per config) for latents `x` [n,s,s,z] at integer `timesteps`,
 * conditioned on `labels` (class indices; `nullClass(config)` for unconditional).
 * `trace`, when given, receives the shape of every block's output (for tests and docs).
 */
export function unetForward(
  p: ParamStore,
  config: CoopConfig,
  x: tf.Tensor4D,
  timesteps: readonly number[],
  labels: readonly number[],
  trace?: (block: string, shape: number[]) => void,
): tf.Tensor4D {
  const u = config.unet
  const record = (block: string, t: tf.Tensor) => trace?.(block, [...t.shape])
  let emb = linear(p, 'time_mlp.0', timestepEmbedding(timesteps, u.timeEmbedDim), u.timeEmbedDim)
  emb = linear(p, 'time_mlp.1', silu(emb) as tf.Tensor2D, u.timeEmbedDim)
  emb = tf.add(emb, classEmbedding(p, labels, config.classes.length + 1, u.timeEmbedDim))
  record('embedding', emb)

  const levels = u.channels.length
  let h = conv(p, 'conv_in', x, u.channels[0] as number)
  record('conv_in', h)
  const skips: tf.Tensor4D[] = [h]
  for (let level = 0; level < levels; level++) {
    const channels = u.channels[level] as number
    for (let block = 0; block < u.resBlocksPerLevel; block++) {
      h = resBlock(p, `down.${level}.res.${block}`, h, channels, u.groups, emb)
      record(`down.${level}.res.${block}`, h)
      skips.push(h)
    }
    if (level < levels - 1) {
      h = conv(p, `down.${level}.downsample`, h, channels, { stride: 2 })
      record(`down.${level}.downsample`, h)
      skips.push(h)
    }
  }
  const lowest = u.channels[levels - 1] as number
  h = resBlock(p, 'mid.res.0', h, lowest, u.groups, emb)
  record('mid.res.0', h)
  if (u.attention) {
    h = selfAttention(p, 'mid.attention', h, u.attentionHeads, u.groups)
    record('mid.attention', h)
  }
  h = resBlock(p, 'mid.res.1', h, lowest, u.groups, emb)
  record('mid.res.1', h)
  for (let level = levels - 1; level >= 0; level--) {
    const channels = u.channels[level] as number
    for (let block = 0; block <= u.resBlocksPerLevel; block++) {
      const skip = skips.pop() as tf.Tensor4D
      h = resBlock(p, `up.${level}.res.${block}`, tf.concat([h, skip], 3), channels, u.groups, emb)
      record(`up.${level}.res.${block}`, h)
    }
    if (level > 0) {
      // Convolve to the next level's (smaller) width: the same map at 4x the positions costs less.
      h = conv(p, `up.${level}.upsample`, upsample2x(h), u.channels[level - 1] as number)
      record(`up.${level}.upsample`, h)
    }
  }
  const out = conv(
    p,
    'conv_out',
    silu(groupNorm(p, 'norm_out', h, u.groups)) as tf.Tensor4D,
    config.autoencoder.latentChannels,
    { zeroInit: true },
  )
  record('conv_out', out)
  return out
}

/** Creates every U-Net parameter for `config`, deterministically from `seed`. */
export function createUnet(config: CoopConfig, seed: number): ParamStore {
  const p = new ParamStore()
  // Parameter shapes do not depend on the spatial size: discover them on the smallest valid input.
  const s = 2 ** (config.unet.channels.length - 1)
  p.initialize(new Rng(seed), () => {
    unetForward(
      p,
      config,
      tf.zeros([1, s, s, config.autoencoder.latentChannels]) as tf.Tensor4D,
      [0],
      [nullClass(config)],
    )
  })
  return p
}
