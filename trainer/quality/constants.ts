// The quality metric's fixed choices, each with the reason for its value. Changing any value
// that shapes the classifier (architecture, recipe, split) requires retraining it with
// `coop quality train` and committing the new weights and digest.

/** The package's 64px images: twice the classifier's input, so decoding only shrinks. */
export const TWEMOJI_IMAGE_DIR = 'img/twitter/64'
/** One image in four (per category, in sort order) is held out: ~475 test images, ~21 for the smallest category (activities). */
export const QUALITY_HOLDOUT_EVERY = 4
/** Position within each group of QUALITY_HOLDOUT_EVERY that is held out (not the first, which is each subcategory's most typical face/flag). */
export const QUALITY_HOLDOUT_OFFSET = 1

/** Classifier input side: the demo's image size; other sizes are resized to it (see resize.ts). */
export const CLASSIFIER_IMAGE_SIZE = 32
/**
 * Channels of the five 3x3 convolutions (the 2nd and 4th stride 2: 32 -> 16 -> 8 px). The last
 * one is the feature dimension of the Fréchet distance: 96 keeps covariances estimable from the
 * ~150 samples a demo scores while separating the nine categories.
 */
export const CLASSIFIER_CHANNELS = [32, 48, 48, 96, 96] as const
/** GroupNorm groups in the classifier (divides every channel count above). */
export const CLASSIFIER_GROUPS = 8

/** The recipe `coop quality train` runs; the committed weights were made by exactly this. */
export const CLASSIFIER_RECIPE = {
  /** Seeds the initial weights and the data order/augmentation stream. */
  seed: 20260,
  steps: 1500,
  batchSize: 32,
  /** Peak Adam learning rate; cosine decay to zero after a linear warm-up (standard for small CNNs). */
  learningRate: 3e-3,
  warmupSteps: 100,
  /** Random translation of up to this many pixels (padding with the white background): icons are not always centred. */
  maxShift: 3,
  /** Share of batch images shown at half resolution and scaled back up, so 16 px samples (the tiny config) are classified too. */
  lowResolutionProbability: 0.25,
  /** Label smoothing: keeps the features of a 1,400-image training set from collapsing onto the labels. */
  labelSmoothing: 0.1,
} as const

/** Where the committed classifier weights live (relative to this folder). */
export const CLASSIFIER_WEIGHTS_FILE = 'classifier.safetensors'

/** Images per forward pass when computing features: bounds memory on large batches. */
export const FEATURE_CHUNK = 128
/** k of the k-NN balls of precision/recall (Kynkäänniemi et al. 2019 use 3). */
export const PRECISION_RECALL_K = 3
