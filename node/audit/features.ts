// The feature space of the audit's second nearest-neighbour search, behind one interface so a
// better extractor drops in: today the autoencoder's posterior mean (the latent the U-Net was
// trained on), later the in-domain classifier's penultimate features (issue 10) when it lands.
// audit.json and the signed statement name the extractor used.
import * as tf from '@tensorflow/tfjs-core'
import type { CoopConfig } from '../../configs/index.ts'
import { createAutoencoder, encode } from '../../trainer/autoencoder.ts'
import type { NamedTensor } from '../../trainer/types.ts'

export interface FeatureExtractor {
  /** Stable name written into audit.json and the statement, e.g. `autoencoder-latent-mean`. */
  readonly name: string
  readonly dims: number
  /** Features of `count` images given as NHWC floats in [-1, 1]; count * dims floats. */
  extract(pixels: Float32Array, count: number): Float32Array
  dispose(): void
}

/** Images encoded per batch: bounds the activation memory of a forward pass. */
const FEATURE_BATCH = 64

/** The autoencoder's posterior mean, flattened: the space the U-Net learned to generate in. */
export function autoencoderFeatures(config: CoopConfig, weights: NamedTensor[]): FeatureExtractor {
  const ae = createAutoencoder(config, 0)
  ae.write(weights)
  const size = config.image.size
  const latent = size / 2 ** (config.autoencoder.channels.length - 1)
  const dims = latent * latent * config.autoencoder.latentChannels
  return {
    name: 'autoencoder-latent-mean',
    dims,
    extract(pixels, count) {
      const out = new Float32Array(count * dims)
      const stride = size * size * 3
      for (let start = 0; start < count; start += FEATURE_BATCH) {
        const n = Math.min(FEATURE_BATCH, count - start)
        const mean = tf.tidy(() => {
          const x = tf.tensor4d(pixels.subarray(start * stride, (start + n) * stride), [n, size, size, 3])
          return encode(ae, config.autoencoder, x).mean
        })
        out.set(mean.dataSync() as Float32Array, start * dims)
        mean.dispose()
      }
      return out
    },
    dispose() {
      ae.dispose()
    },
  }
}
