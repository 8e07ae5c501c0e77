// `coop quality train`: the one command that makes the committed classifier weights. Loads the
// Twemoji split, trains with CLASSIFIER_RECIPE (fixed seed), rounds the weights to F16 as stored
// and measures the stored weights on the held-out images.
import { sha256Digest } from '../../protocol/digest.ts'
import type { Logger } from '../types.ts'
import { createClassifier } from './classifier.ts'
import { CLASSIFIER_IMAGE_SIZE, CLASSIFIER_RECIPE } from './constants.ts'
import { evaluateClassifier, trainClassifier } from './train.ts'
import type { ClassifierAccuracy } from './train.ts'
import { loadTwemojiSplit } from './twemoji.ts'
import { decodeClassifier, encodeClassifier } from './weights.ts'
import type { ClassifierCard } from './weights.ts'

/** Losses of this many first steps go into the card (a cheap reproducibility check). */
export const CARD_FIRST_LOSSES = 30

export interface RetrainResult {
  bytes: Uint8Array
  digest: string
  card: ClassifierCard
  test: ClassifierAccuracy
}

export async function retrainClassifier(options: {
  classes: readonly string[]
  backend: string
  /** Fewer steps than the recipe (a quick check; the result is not the committed classifier). */
  steps?: number
  log?: Logger
  onStep?: (step: number, loss: number) => void
}): Promise<RetrainResult> {
  const train = await loadTwemojiSplit('train', CLASSIFIER_IMAGE_SIZE, options.classes)
  const test = await loadTwemojiSplit('heldout', CLASSIFIER_IMAGE_SIZE, options.classes)
  options.log?.info({ train: train.count, test: test.count }, 'classifier data loaded')
  const recipe = { ...CLASSIFIER_RECIPE, ...(options.steps === undefined ? {} : { steps: options.steps }) }
  const { store, losses } = await trainClassifier(train, recipe, {
    ...(options.log ? { log: options.log } : {}),
    ...(options.onStep ? { onStep: options.onStep } : {}),
  })
  try {
    const provisional: ClassifierCard = {
      classes: [...options.classes],
      recipe: { ...recipe },
      trainingData: sha256Digest(new TextEncoder().encode(train.digests.join('\n'))),
      trainImages: train.count,
      testImages: test.count,
      testAccuracy: 0,
      testBalancedAccuracy: 0,
      perClassTestAccuracy: {},
      firstLosses: losses.slice(0, CARD_FIRST_LOSSES),
      backend: options.backend,
      command: `coop quality train${options.steps === undefined ? '' : ` --steps ${options.steps}`}`,
    }
    // Measure the weights as stored (F16), not the float32 ones training ended with.
    const stored = decodeClassifier(await encodeClassifier(store, provisional), null)
    const rounded = createClassifier(options.classes.length, 0)
    let accuracy: ClassifierAccuracy
    try {
      rounded.write(stored.weights)
      accuracy = evaluateClassifier(rounded, test)
    } finally {
      rounded.dispose()
    }
    const card: ClassifierCard = {
      ...provisional,
      testAccuracy: accuracy.accuracy,
      testBalancedAccuracy: accuracy.balancedAccuracy,
      perClassTestAccuracy: accuracy.perClass,
    }
    const bytes = await encodeClassifier(store, card)
    return { bytes, digest: sha256Digest(bytes), card, test: accuracy }
  } finally {
    store.dispose()
  }
}
