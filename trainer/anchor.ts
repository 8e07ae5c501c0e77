// Off-class anchoring, for federated rounds on peers that each hold a few categories. Such a peer,
// trained alone, learns to draw its categories whatever the label says: nothing in its data rewards
// telling labels apart, and the averaged model loses its class conditioning (bench/README.md,
// "Off-class anchoring"). The anchor adds a term to the U-Net's loss: for each row, the prediction
// under another class's label, on the same noised input, is held at what the round's base model
// predicts there. A peer's local update then changes what its own classes draw and leaves the
// other classes to their holders. The base is the model the session was last given (setWeights),
// i.e. the checkpoint a round trains from; a session never given one (central `coop train`)
// trains without the term.
import * as tf from '@tensorflow/tfjs-core'
import type { CoopConfig } from '../configs/index.ts'
import { lossWeights, qSample } from './diffusion.ts'
import type { ParamStore } from './nn.ts'
import type { NoiseSchedule } from './schedule.ts'
import type { Phase } from './types.ts'
import { unetForward } from './unet.ts'

/** Whether sessions of this config and phase anchor their rounds: U-Net, a weight above 0, at least two classes. */
export function anchorsRounds(config: CoopConfig, phase: Phase): boolean {
  return phase === 'unet' && config.unet.offClassAnchor > 0 && config.classes.length >= 2
}

/**
 * Each row's anchor label: a class other than the row's own (its dataset label, before class
 * dropout), spread over the other classes by the row's timestep. No random draw, so the training
 * stream is the same with or without anchoring. Rows without a class (flat folders) take one by
 * timestep; with fewer than two classes there is no other class, and the row keeps its own label
 * (such configs never anchor).
 */
export function offClassLabel(ownLabel: number, timestep: number, classes: number): number {
  if (classes < 2) return ownLabel
  if (ownLabel < 0 || ownLabel >= classes) return timestep % classes
  return (ownLabel + 1 + (timestep % (classes - 1))) % classes
}

/** The round's base model, as the anchor's teacher: its own copy of the weights, and those flattened (for worker threads). */
export interface AnchorBase {
  store: ParamStore
  flat: Float32Array
}

/**
 * The base model's predictions for the anchor labels: constants of the step, computed outside the
 * gradient tape. Returns the noised inputs too, which the student's term reuses.
 */
export function anchorTargets(
  base: ParamStore,
  config: CoopConfig,
  schedule: NoiseSchedule,
  x0: tf.Tensor4D,
  timesteps: readonly number[],
  noise: tf.Tensor4D,
  anchorLabels: readonly number[],
): { xt: tf.Tensor4D; target: tf.Tensor4D } {
  const xt = qSample(schedule, x0, timesteps, noise)
  return { xt, target: unetForward(base, config, xt, timesteps, anchorLabels) }
}

/**
 * offClassAnchor x the weighted mean square between the student's predictions for the anchor labels
 * and the base's, with the same per-timestep weights and the same shard convention as the diffusion
 * loss (summed over the shard's rows, divided by the whole batch's size).
 */
export function anchorLoss(
  student: ParamStore,
  config: CoopConfig,
  schedule: NoiseSchedule,
  targets: { xt: tf.Tensor4D; target: tf.Tensor4D },
  timesteps: readonly number[],
  anchorLabels: readonly number[],
  batchTotal: number,
): tf.Scalar {
  const predicted = unetForward(student, config, targets.xt, timesteps, anchorLabels)
  const perSample = tf.mean(tf.squaredDifference(predicted, targets.target), [1, 2, 3])
  const weighted = tf.mul(perSample, tf.tensor1d(lossWeights(config, schedule, timesteps)))
  return tf.mul(tf.div(tf.sum(weighted), batchTotal), config.unet.offClassAnchor) as tf.Scalar
}
