// The quality metric itself: class accuracy and Fréchet distance of a set of class-conditional
// images against the held-out real Twemoji, through the committed classifier.
//
// Reading it (see trainer/quality/README.md): class accuracy is the share of images the
// classifier assigns to the class they were generated for (chance 1/9; the classifier's own
// held-out accuracy is the ceiling real images reach). The Fréchet distance compares the
// Gaussian moments of the classifier's 96 penultimate features of the images with those of the
// held-out real images, every class weighted equally; 0 is identical moments. It depends on the
// number of images scored (fewer images give a larger value), so compare only figures with the
// same `samples`.
import type { ParamStore } from '../nn.ts'
import { TrainerError } from '../errors.ts'
import { createClassifier, runClassifier } from './classifier.ts'
import type { ClassifierOutputs } from './classifier.ts'
import { CLASSIFIER_CHANNELS, CLASSIFIER_IMAGE_SIZE, PRECISION_RECALL_K } from './constants.ts'
import { frechetDistance, gaussianOf, precisionRecall } from './frechet.ts'
import type { Gaussian } from './frechet.ts'
import { resizeImages } from './resize.ts'
import { accuracyOf } from './train.ts'
import { loadTwemojiSplit } from './twemoji.ts'
import type { LabelledImages } from './twemoji.ts'
import { loadCommittedClassifier } from './weights.ts'
import type { ClassifierCard } from './weights.ts'

/** The classifier as a feature extractor and a probability model: the API other modules use. */
export interface QualityModel {
  /** Categories in probability order. */
  readonly classes: readonly string[]
  readonly featureDim: number
  readonly card: ClassifierCard
  readonly digest: string
  /**
   * Penultimate features and class probabilities of `count` HWC RGB images of side `size`, floats
   * in [-1, 1] (any side: resized to the classifier's 32 px by the same function for everyone).
   */
  classify(pixels: Float32Array, count: number, size: number): ClassifierOutputs
  /** count x featureDim penultimate features (the Fréchet distance's space). */
  features(pixels: Float32Array, count: number, size: number): Float32Array
  /** count x classes softmax probabilities. */
  probabilities(pixels: Float32Array, count: number, size: number): Float32Array
  dispose(): void
}

class Classifier implements QualityModel {
  readonly classes: readonly string[]
  readonly featureDim = CLASSIFIER_CHANNELS[CLASSIFIER_CHANNELS.length - 1] as number
  readonly card: ClassifierCard
  readonly digest: string
  private readonly store: ParamStore
  private disposed = false

  constructor(store: ParamStore, card: ClassifierCard, digest: string) {
    this.store = store
    this.card = card
    this.digest = digest
    this.classes = card.classes
  }

  classify(pixels: Float32Array, count: number, size: number): ClassifierOutputs {
    if (this.disposed) throw new TrainerError('INVALID_ARGUMENT', 'quality model used after dispose()')
    const resized = resizeImages(pixels, count, size, CLASSIFIER_IMAGE_SIZE)
    return runClassifier(this.store, resized, count, this.classes.length)
  }

  features(pixels: Float32Array, count: number, size: number): Float32Array {
    return this.classify(pixels, count, size).features
  }

  probabilities(pixels: Float32Array, count: number, size: number): Float32Array {
    return this.classify(pixels, count, size).probabilities
  }

  dispose(): void {
    if (this.disposed) return
    this.disposed = true
    this.store.dispose()
  }
}

/** Loads the committed classifier (digest-checked) on the current tfjs backend. */
export async function loadQualityModel(): Promise<QualityModel> {
  const { weights, card, digest } = await loadCommittedClassifier()
  const store = createClassifier(card.classes.length, 0)
  try {
    store.write(weights)
  } catch (error) {
    store.dispose()
    throw error
  }
  return new Classifier(store, card, digest)
}

/** Features of real images: the reference side of the Fréchet distance. */
export interface QualityReference {
  /** Side the real images were decoded at (the side of the images they are compared with). */
  size: number
  classes: string[]
  count: number
  features: Float32Array
  /** Moments with every class weighted equally. */
  gaussian: Gaussian
}

/** Every class contributes the same total weight, whatever its number of images. */
function classBalancedWeights(labels: readonly number[]): number[] {
  const counts = new Map<number, number>()
  for (const label of labels) counts.set(label, (counts.get(label) ?? 0) + 1)
  return labels.map((label) => 1 / (counts.get(label) as number))
}

/** Reference statistics of labelled real images (already decoded at `images.size`). */
export function referenceOf(model: QualityModel, images: LabelledImages): QualityReference {
  const features = model.features(images.pixels, images.count, images.size)
  return {
    size: images.size,
    classes: [...images.classes],
    count: images.count,
    features,
    gaussian: gaussianOf(features, model.featureDim, classBalancedWeights(images.labels)),
  }
}

const referenceCache = new Map<string, Promise<QualityReference>>()

/**
 * The held-out real Twemoji of `classes`, decoded at `size` as the trainer's loader decodes
 * training images (so a 16 px model is compared with 16 px real images). Cached per process.
 */
export function heldOutReference(
  model: QualityModel,
  size: number,
  classes: readonly string[],
): Promise<QualityReference> {
  const key = `${model.digest}/${size}/${classes.join(',')}`
  let cached = referenceCache.get(key)
  if (cached === undefined) {
    cached = loadTwemojiSplit('heldout', size, classes).then((images) => referenceOf(model, images))
    referenceCache.set(key, cached)
    cached.catch(() => referenceCache.delete(key))
  }
  return cached
}

export interface QualityScore {
  /** Share of images classified as the class they were generated for (chance: 1 / classes). */
  classAccuracy: number
  /** Fréchet distance of the images' features to the reference's (class-balanced both). */
  frechetDistance: number
  /** Kynkäänniemi et al.: share of images on the real manifold, and of real images on the images'. */
  precision: number
  recall: number
  /** Images scored. */
  samples: number
  perClassAccuracy: Record<string, number>
}

/**
 * Scores `count` images of side `size` generated for `labels` (class names of the model's
 * classes) against `reference`.
 */
export function scoreImages(
  model: QualityModel,
  reference: QualityReference,
  pixels: Float32Array,
  labels: readonly string[],
  size: number,
): QualityScore {
  const count = labels.length
  if (count < 2) throw new TrainerError('INVALID_ARGUMENT', 'scoring needs at least 2 images')
  if (size !== reference.size)
    throw new TrainerError(
      'INVALID_ARGUMENT',
      `images are ${size}px but the reference was decoded at ${reference.size}px`,
    )
  const indices = labels.map((name) => {
    const index = model.classes.indexOf(name)
    if (index < 0)
      throw new TrainerError(
        'UNKNOWN_CLASS',
        `class '${name}' is not one the quality classifier knows (${model.classes.join(', ')}): the metric is in-domain only`,
      )
    return index
  })
  const { features, probabilities } = model.classify(pixels, count, size)
  const accuracy = accuracyOf(probabilities, indices, model.classes)
  const generated = gaussianOf(features, model.featureDim, classBalancedWeights(indices))
  const pr =
    count > PRECISION_RECALL_K && reference.count > PRECISION_RECALL_K
      ? precisionRecall(reference.features, features, model.featureDim, PRECISION_RECALL_K)
      : { precision: Number.NaN, recall: Number.NaN }
  return {
    classAccuracy: accuracy.accuracy,
    frechetDistance: frechetDistance(reference.gaussian, generated),
    precision: pr.precision,
    recall: pr.recall,
    samples: count,
    perClassAccuracy: accuracy.perClass,
  }
}
