// Trains the quality classifier with CLASSIFIER_RECIPE on the training side of the Twemoji split
// and measures it on the held-out side. Deterministic: the seed fixes the initial weights, and
// one Rng stream (seed + 1) draws every batch and augmentation, so a rerun on the same backend
// gives the same weights (`coop quality train`; test/trainer/quality.test.ts replays the start).
//
// Batches are class-balanced (a class uniformly, then an image of it): the categories hold 64 to
// 290 training images, and the metric scores class-balanced sample sets.
import * as tf from '@tensorflow/tfjs-core'
import { Adam } from '../optim.ts'
import { Rng } from '../rng.ts'
import type { Logger } from '../types.ts'
import { CLASSIFIER_IMAGE_SIZE, CLASSIFIER_RECIPE } from './constants.ts'
import { classifierForward, createClassifier, runClassifier } from './classifier.ts'
import type { ParamStore } from '../nn.ts'
import { resizeImages } from './resize.ts'
import type { LabelledImages } from './twemoji.ts'

export type ClassifierRecipe = { [K in keyof typeof CLASSIFIER_RECIPE]: number }

/** Linear warm-up, then cosine decay to zero at the last step. */
export function learningRateAt(step: number, recipe: ClassifierRecipe): number {
  if (step <= recipe.warmupSteps) return (recipe.learningRate * step) / recipe.warmupSteps
  const progress = (step - recipe.warmupSteps) / Math.max(1, recipe.steps - recipe.warmupSteps)
  return recipe.learningRate * 0.5 * (1 + Math.cos(Math.PI * Math.min(1, progress)))
}

/** White (the background every image is composited on) in [-1, 1] pixels. */
const BACKGROUND = 1

/** One augmented copy of image `index`: optional half-resolution round trip, shift, horizontal flip. */
function augment(
  data: LabelledImages,
  lowRes: Float32Array,
  index: number,
  rng: Rng,
  recipe: ClassifierRecipe,
): Float32Array {
  const size = CLASSIFIER_IMAGE_SIZE
  const row = size * size * 3
  const useLowRes = rng.uniform() < recipe.lowResolutionProbability
  const source = useLowRes ? lowRes : data.pixels
  const dx = rng.int(2 * recipe.maxShift + 1) - recipe.maxShift
  const dy = rng.int(2 * recipe.maxShift + 1) - recipe.maxShift
  const flip = rng.uniform() < 0.5
  const out = new Float32Array(row).fill(BACKGROUND)
  for (let y = 0; y < size; y++) {
    const sy = y - dy
    if (sy < 0 || sy >= size) continue
    for (let x = 0; x < size; x++) {
      const sx0 = x - dx
      if (sx0 < 0 || sx0 >= size) continue
      const sx = flip ? size - 1 - sx0 : sx0
      for (let c = 0; c < 3; c++)
        out[(y * size + x) * 3 + c] = source[index * row + (sy * size + sx) * 3 + c] as number
    }
  }
  return out
}

/** Images at half resolution and back (what a 16 px sample looks like to the classifier). */
export function lowResolutionCopy(pixels: Float32Array, count: number): Float32Array {
  const size = CLASSIFIER_IMAGE_SIZE
  return resizeImages(resizeImages(pixels, count, size, size / 2), count, size / 2, size)
}

export interface TrainClassifierResult {
  store: ParamStore
  /** Training loss of every step, in order. */
  losses: number[]
}

/** Trains a classifier on `train` (images at CLASSIFIER_IMAGE_SIZE); `steps` overrides the recipe's (tests replay the start). */
export async function trainClassifier(
  train: LabelledImages,
  recipe: ClassifierRecipe,
  options: { steps?: number; log?: Logger; onStep?: (step: number, loss: number) => void } = {},
): Promise<TrainClassifierResult> {
  const classCount = train.classes.length
  const byClass: number[][] = train.classes.map(() => [])
  train.labels.forEach((label, index) => (byClass[label] as number[]).push(index))
  byClass.forEach((list, label) => {
    if (list.length === 0) throw new RangeError(`class ${train.classes[label]} has no training images`)
  })
  const lowRes = lowResolutionCopy(train.pixels, train.count)
  const store = createClassifier(classCount, recipe.seed)
  const adam = new Adam(store, recipe.learningRate)
  const rng = new Rng(recipe.seed + 1)
  const size = CLASSIFIER_IMAGE_SIZE
  const row = size * size * 3
  const steps = options.steps ?? recipe.steps
  const losses: number[] = []
  const trainable = store.trainableNames().map((name) => store.variables.get(name) as tf.Variable)
  for (let step = 1; step <= steps; step++) {
    const batch = new Float32Array(recipe.batchSize * row)
    const targets = new Float32Array(recipe.batchSize * classCount)
    for (let b = 0; b < recipe.batchSize; b++) {
      const label = rng.int(classCount)
      const list = byClass[label] as number[]
      const index = list[rng.int(list.length)] as number
      batch.set(augment(train, lowRes, index, rng, recipe), b * row)
      for (let c = 0; c < classCount; c++)
        targets[b * classCount + c] =
          recipe.labelSmoothing / classCount + (c === label ? 1 - recipe.labelSmoothing : 0)
    }
    const { value, grads } = tf.tidy(() => {
      const x = tf.tensor4d(batch, [recipe.batchSize, size, size, 3])
      const y = tf.tensor2d(targets, [recipe.batchSize, classCount])
      return tf.variableGrads(() => {
        const { logits } = classifierForward(store, x, classCount)
        return tf.neg(tf.mean(tf.sum(tf.mul(y, tf.logSoftmax(logits)), 1))) as tf.Scalar
      }, trainable)
    })
    const loss = value.dataSync()[0] as number
    const ordered = store
      .trainableNames()
      .map((name) => grads[(store.variables.get(name) as tf.Variable).name] as tf.Tensor)
    adam.apply(ordered, value, learningRateAt(step, recipe))
    value.dispose()
    for (const g of Object.values(grads)) g.dispose()
    losses.push(loss)
    options.onStep?.(step, loss)
    if (step % 100 === 0) options.log?.info({ step, steps, loss }, 'classifier training step')
    await new Promise<void>((resolve) => setImmediate(resolve))
  }
  adam.dispose()
  return { store, losses }
}

export interface ClassifierAccuracy {
  /** Share of images whose most probable class is their label. */
  accuracy: number
  /** Mean over classes of each class's accuracy (every category counting equally). */
  balancedAccuracy: number
  perClass: Record<string, number>
  count: number
}

/** Top-1 accuracy of the most probable class against `labels`. */
export function accuracyOf(
  probabilities: Float32Array,
  labels: readonly number[],
  classes: readonly string[],
): ClassifierAccuracy {
  const classCount = classes.length
  const correct = new Array<number>(classCount).fill(0)
  const total = new Array<number>(classCount).fill(0)
  let hits = 0
  labels.forEach((label, i) => {
    let best = 0
    for (let c = 1; c < classCount; c++)
      if ((probabilities[i * classCount + c] as number) > (probabilities[i * classCount + best] as number))
        best = c
    total[label] = (total[label] as number) + 1
    if (best === label) {
      hits++
      correct[label] = (correct[label] as number) + 1
    }
  })
  const perClass: Record<string, number> = {}
  let balanced = 0
  let present = 0
  classes.forEach((name, c) => {
    if ((total[c] as number) === 0) return
    perClass[name] = (correct[c] as number) / (total[c] as number)
    balanced += perClass[name]
    present++
  })
  return {
    accuracy: labels.length === 0 ? 0 : hits / labels.length,
    balancedAccuracy: present === 0 ? 0 : balanced / present,
    perClass,
    count: labels.length,
  }
}

/** Accuracy of a trained classifier on labelled images at CLASSIFIER_IMAGE_SIZE. */
export function evaluateClassifier(store: ParamStore, data: LabelledImages): ClassifierAccuracy {
  const { probabilities } = runClassifier(store, data.pixels, data.count, data.classes.length)
  return accuracyOf(probabilities, data.labels, data.classes)
}
