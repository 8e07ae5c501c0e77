// The feature space of the audit's second nearest-neighbour search, behind one interface so a
// better extractor drops in. Issue 11: the quality metric's classifier (issue 10, trainer/quality)
// where it applies, i.e. a model whose classes are all classifier categories (Twemoji); the
// autoencoder's posterior mean (the latent the U-Net was trained on) for any other data, where
// the classifier's features mean nothing. audit.json and the signed statement name the extractor.
import * as tf from '@tensorflow/tfjs-core'
import type { CoopConfig } from '../../configs/index.ts'
import { createAutoencoder, encode } from '../../trainer/autoencoder.ts'
import { loadQualityModel, type QualityModel } from '../../trainer/quality/index.ts'
import type { NamedTensor } from '../../trainer/types.ts'
import type { AuditSource } from './source.ts'

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

/** Name prefix of the classifier extractor; the full name adds the weights' digest. */
export const CLASSIFIER_EXTRACTOR = 'quality-classifier-penultimate'

/**
 * The quality classifier's penultimate features (trainer/quality): a space trained to tell the
 * categories apart, so a sample that copies an image lands next to it even where its pixels
 * drift (background, colour). The name carries the weights' digest: another classifier, another space.
 */
export function classifierFeatures(model: QualityModel, config: CoopConfig): FeatureExtractor {
  const size = config.image.size
  return {
    name: `${CLASSIFIER_EXTRACTOR}@${model.digest}`,
    dims: model.featureDim,
    extract: (pixels, count) => model.features(pixels, count, size),
    dispose: () => model.dispose(),
  }
}

/** Whether the classifier's features apply: a class-conditional model whose classes are all its categories. */
export function classifierApplies(config: CoopConfig, classifierClasses: readonly string[]): boolean {
  return config.classes.length > 0 && config.classes.every((c) => classifierClasses.includes(c))
}

/** The audit's default: the classifier where it applies, the autoencoder's latents otherwise. */
export async function defaultFeatures(source: AuditSource): Promise<FeatureExtractor> {
  if (source.config.classes.length > 0) {
    const model = await loadQualityModel()
    if (classifierApplies(source.config, model.classes)) return classifierFeatures(model, source.config)
    model.dispose()
  }
  return autoencoderFeatures(source.config, source.autoencoder)
}
