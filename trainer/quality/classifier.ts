// The quality classifier: a small convolutional network that tells the nine Twemoji categories
// apart, the in-domain counterpart of FID's Inception network. Its penultimate layer (the global
// average of the last convolution's activations) gives the features of the Fréchet distance and
// of precision/recall; its softmax gives class probabilities for class accuracy.
//
//   conv3x3(32) -> conv3x3/2(48) -> conv3x3(48) -> conv3x3/2(96) -> conv3x3(96), each followed by
//   GroupNorm and SiLU; global average pool (96 features); linear to one logit per class.
import * as tf from '@tensorflow/tfjs-core'
import { conv, groupNorm, linear, ParamStore, silu } from '../nn.ts'
import { Rng } from '../rng.ts'
import { TrainerError } from '../errors.ts'
import { CLASSIFIER_CHANNELS, CLASSIFIER_GROUPS, CLASSIFIER_IMAGE_SIZE, FEATURE_CHUNK } from './constants.ts'

/** Strides of the five convolutions: two halvings, 32 -> 8 px. */
const STRIDES: readonly (1 | 2)[] = [1, 2, 1, 2, 1]

/** Features (penultimate layer) and logits of a batch of 32x32 images in [-1, 1]. */
export function classifierForward(
  p: ParamStore,
  x: tf.Tensor4D,
  classCount: number,
): { features: tf.Tensor2D; logits: tf.Tensor2D } {
  let h = x
  CLASSIFIER_CHANNELS.forEach((channels, i) => {
    h = conv(p, `conv${i}`, h, channels, { stride: STRIDES[i] as 1 | 2 })
    h = silu(groupNorm(p, `norm${i}`, h, CLASSIFIER_GROUPS)) as tf.Tensor4D
  })
  const features = tf.mean(h, [1, 2]) as tf.Tensor2D
  return { features, logits: linear(p, 'head', features, classCount) }
}

/** A classifier's parameters, initialised from `seed` (names and shapes fixed by the architecture). */
export function createClassifier(classCount: number, seed: number): ParamStore {
  const store = new ParamStore()
  store.initialize(new Rng(seed), () => {
    classifierForward(store, tf.zeros([1, CLASSIFIER_IMAGE_SIZE, CLASSIFIER_IMAGE_SIZE, 3]), classCount)
  })
  return store
}

export interface ClassifierOutputs {
  /** count x featureDim, row-major. */
  features: Float32Array
  /** count x classCount softmax probabilities, row-major. */
  probabilities: Float32Array
}

/** Runs the classifier on `count` images already at CLASSIFIER_IMAGE_SIZE, in chunks. */
export function runClassifier(
  store: ParamStore,
  pixels: Float32Array,
  count: number,
  classCount: number,
): ClassifierOutputs {
  const size = CLASSIFIER_IMAGE_SIZE
  const row = size * size * 3
  if (pixels.length !== count * row)
    throw new TrainerError('INVALID_ARGUMENT', `${pixels.length} values are not ${count} images of ${size}px`)
  const featureDim = CLASSIFIER_CHANNELS[CLASSIFIER_CHANNELS.length - 1] as number
  const features = new Float32Array(count * featureDim)
  const probabilities = new Float32Array(count * classCount)
  for (let start = 0; start < count; start += FEATURE_CHUNK) {
    const n = Math.min(FEATURE_CHUNK, count - start)
    const [f, prob] = tf.tidy(() => {
      const x = tf.tensor4d(pixels.subarray(start * row, (start + n) * row), [n, size, size, 3])
      const out = classifierForward(store, x, classCount)
      return [out.features, tf.softmax(out.logits)]
    })
    features.set(f.dataSync() as Float32Array, start * featureDim)
    probabilities.set(prob.dataSync() as Float32Array, start * classCount)
    f.dispose()
    prob.dispose()
  }
  return { features, probabilities }
}
