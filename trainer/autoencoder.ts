// The KL-regularised convolutional autoencoder (Rombach et al. 2022, much smaller):
// image [n,S,S,3] in [-1,1] -> posterior N(mean, exp(logvar)) over [n,S/f,S/f,z] -> image.
// Encoder: conv, strided convs down to the lowest level, one ResBlock, conv to (mean, logvar).
// Decoder mirrors it with nearest upsampling. A running RMS of the posterior mean is kept as a
// non-trainable buffer with the weights, so every peer scales latents for diffusion the same way.
import * as tf from '@tensorflow/tfjs-core'
import type { AutoencoderConfig, CoopConfig } from '../configs/index.ts'
import { ENCODE_CHUNK, LOGVAR_MAX, LOGVAR_MIN } from './constants.ts'
import type { NamedTensor } from './types.ts'
import { conv, groupNorm, ParamStore, resBlock, silu, upsample2x } from './nn.ts'
import { Rng } from './rng.ts'

export const LATENT_RMS_NAME = 'stats.latent_rms'

export function latentSize(config: CoopConfig): number {
  return config.image.size / 2 ** (config.autoencoder.channels.length - 1)
}

export interface Posterior {
  mean: tf.Tensor4D
  logvar: tf.Tensor4D
}

/** Receives each block's name and output shape (for tests and docs). */
export type ShapeTrace = (block: string, shape: number[]) => void

export function encode(p: ParamStore, ae: AutoencoderConfig, x: tf.Tensor4D, trace?: ShapeTrace): Posterior {
  const channels = ae.channels
  let h = conv(p, 'encoder.conv_in', x, channels[0] as number)
  trace?.('encoder.conv_in', [...h.shape])
  for (let level = 1; level < channels.length; level++) {
    h = conv(p, `encoder.down.${level}`, silu(h) as tf.Tensor4D, channels[level] as number, { stride: 2 })
    trace?.(`encoder.down.${level}`, [...h.shape])
  }
  const lowest = channels[channels.length - 1] as number
  h = resBlock(p, 'encoder.mid', h, lowest, ae.groups)
  trace?.('encoder.mid', [...h.shape])
  const moments = conv(
    p,
    'encoder.conv_out',
    silu(groupNorm(p, 'encoder.norm_out', h, ae.groups)) as tf.Tensor4D,
    2 * ae.latentChannels,
  )
  trace?.('encoder.conv_out', [...moments.shape])
  const [n, s] = moments.shape
  const mean = tf.slice(moments, [0, 0, 0, 0], [n, s, s, ae.latentChannels])
  const logvar = tf.clipByValue(
    tf.slice(moments, [0, 0, 0, ae.latentChannels], [n, s, s, ae.latentChannels]),
    LOGVAR_MIN,
    LOGVAR_MAX,
  )
  return { mean, logvar }
}

export function decode(
  p: ParamStore,
  ae: AutoencoderConfig,
  z: tf.Tensor4D,
  trace?: ShapeTrace,
): tf.Tensor4D {
  const channels = ae.channels
  const lowest = channels[channels.length - 1] as number
  let h = conv(p, 'decoder.conv_in', z, lowest)
  trace?.('decoder.conv_in', [...h.shape])
  h = resBlock(p, 'decoder.mid', h, lowest, ae.groups)
  trace?.('decoder.mid', [...h.shape])
  for (let level = channels.length - 1; level >= 1; level--) {
    h = conv(p, `decoder.up.${level}`, upsample2x(h), channels[level - 1] as number)
    h = silu(groupNorm(p, `decoder.up.${level}.norm`, h, ae.groups)) as tf.Tensor4D
    trace?.(`decoder.up.${level}`, [...h.shape])
  }
  const out = conv(p, 'decoder.conv_out', h, 3)
  trace?.('decoder.conv_out', [...out.shape])
  return out
}

/** The latent RMS buffer (scalar in a [1] tensor), created at 1. */
export function latentRms(p: ParamStore): tf.Variable {
  return p.get(LATENT_RMS_NAME, [1], { kind: 'ones' }, { buffer: true })
}

/** Creates every autoencoder parameter for `config`, deterministically from `seed`. */
export function createAutoencoder(config: CoopConfig, seed: number): ParamStore {
  const p = new ParamStore()
  const ae = config.autoencoder
  // Parameter shapes do not depend on the spatial size: discover them on the smallest valid input.
  const side = 2 ** (ae.channels.length - 1)
  p.initialize(new Rng(seed), () => {
    const x = tf.zeros([1, side, side, 3]) as tf.Tensor4D
    const { mean } = encode(p, ae, x)
    decode(p, ae, mean)
    latentRms(p)
  })
  return p
}

/**
 * Reconstruction MSE plus klWeight x the mean per-element KL(q(z|x) || N(0, I)), over a batch of
 * `batchTotal` images of which `x` holds some (a gradient shard): each term is a sum over these rows
 * divided by the whole batch's element count, so the shards' losses and gradients add up to the batch's.
 * `meanSquares` is this shard's share of the mean square of the posterior mean (the latent RMS squared).
 */
export function autoencoderLoss(
  p: ParamStore,
  ae: AutoencoderConfig,
  x: tf.Tensor4D,
  noise: tf.Tensor4D,
  batchTotal: number = x.shape[0],
): { loss: tf.Scalar; meanSquares: tf.Scalar } {
  const { mean, logvar } = encode(p, ae, x)
  const z = tf.add(mean, tf.mul(tf.exp(tf.mul(logvar, 0.5)), noise)) as tf.Tensor4D
  const reconstruction = decode(p, ae, z)
  const imageElements = batchTotal * (x.size / x.shape[0])
  const latentElements = batchTotal * (mean.size / mean.shape[0])
  const mse = tf.div(tf.sum(tf.squaredDifference(reconstruction, x)), imageElements)
  const kl = tf.div(
    tf.sum(tf.mul(0.5, tf.sub(tf.add(tf.square(mean), tf.exp(logvar)), tf.add(1, logvar)))),
    latentElements,
  )
  const loss = tf.add(mse, tf.mul(ae.klWeight, kl)) as tf.Scalar
  const meanSquares = tf.div(tf.sum(tf.square(mean)), latentElements) as tf.Scalar
  return { loss, meanSquares }
}

/** Deterministic reconstruction through the posterior mean; the MSE evalLoss reports. */
export function reconstructionMse(p: ParamStore, ae: AutoencoderConfig, x: tf.Tensor4D): tf.Scalar {
  return tf.tidy(() => tf.mean(tf.squaredDifference(decode(p, ae, encode(p, ae, x).mean), x)) as tf.Scalar)
}

/** Diffusion-space latents: posterior mean divided by the running RMS. */
export function encodeForDiffusion(p: ParamStore, ae: AutoencoderConfig, x: tf.Tensor4D): tf.Tensor4D {
  return tf.tidy(() => tf.div(encode(p, ae, x).mean, latentRms(p)) as tf.Tensor4D)
}

/** Images from diffusion-space latents. */
export function decodeFromDiffusion(p: ParamStore, ae: AutoencoderConfig, z: tf.Tensor4D): tf.Tensor4D {
  return tf.tidy(() => decode(p, ae, tf.mul(z, latentRms(p)) as tf.Tensor4D))
}

/**
 * Encodes `count` images (NHWC pixels in [-1, 1]) to diffusion-space latents with the given autoencoder
 * weights, in chunks of ENCODE_CHUNK, reading each chunk back without blocking.
 */
export async function encodeImages(
  config: CoopConfig,
  pixels: Float32Array,
  count: number,
  weights: NamedTensor[],
): Promise<Float32Array> {
  const store = createAutoencoder(config, 0)
  try {
    store.write(weights)
    const size = config.image.size
    const rowSize = size * size * 3
    const s = latentSize(config)
    const latentRow = s * s * config.autoencoder.latentChannels
    const out = new Float32Array(count * latentRow)
    for (let start = 0; start < count; start += ENCODE_CHUNK) {
      const n = Math.min(ENCODE_CHUNK, count - start)
      const latents = tf.tidy(() =>
        encodeForDiffusion(
          store,
          config.autoencoder,
          tf.tensor4d(pixels.subarray(start * rowSize, (start + n) * rowSize), [n, size, size, 3]),
        ),
      )
      try {
        out.set((await latents.data()) as Float32Array, start * latentRow)
      } finally {
        latents.dispose()
      }
    }
    return out
  } finally {
    store.dispose()
  }
}
