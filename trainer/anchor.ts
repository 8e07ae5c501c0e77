// Null-label anchoring, for federated rounds on peers that each hold a few categories. Trained
// alone, such a peer's own labels and the null label (classifier-free guidance's unconditional
// prediction, trained on the rows class dropout strips) learn to draw the same images: nothing in
// its data tells them apart, so guidance has nothing to amplify and the averaged model draws every
// category for every label (bench/README.md, "Off-class anchoring, and FedAvg"). While a session
// trains from a round's base, the anchor turns class dropout off and adds a term that holds the
// null label's prediction, on each row's noised input, at the base's: the cooperative's
// unconditional model. A peer's own labels then learn what sets its categories apart from it.
// The base is the model the session was last given (setWeights), i.e. the checkpoint a round
// trains from; a session never given one (central `coop train`) trains as without the anchor.
import * as tf from '@tensorflow/tfjs-core'
import type { CoopConfig } from '../configs/index.ts'
import { lossWeights, qSample } from './diffusion.ts'
import type { ParamStore } from './nn.ts'
import type { NoiseSchedule } from './schedule.ts'
import type { Phase } from './types.ts'
import { nullClass, unetForward } from './unet.ts'

/** Whether sessions of this config and phase anchor their rounds: U-Net, a weight above 0, a conditional model. */
export function anchorsRounds(config: CoopConfig, phase: Phase): boolean {
  return phase === 'unet' && config.unet.nullAnchor > 0 && config.classes.length > 0
}

/** The round's base model, as the anchor's teacher: its own copy of the weights, and those flattened (for worker threads). */
export interface AnchorBase {
  store: ParamStore
  flat: Float32Array
}

/**
 * The base model's null-label predictions: constants of the step, computed outside the gradient
 * tape. Returns the noised inputs too, which the student's term reuses.
 */
export function anchorTargets(
  base: ParamStore,
  config: CoopConfig,
  schedule: NoiseSchedule,
  x0: tf.Tensor4D,
  timesteps: readonly number[],
  noise: tf.Tensor4D,
): { xt: tf.Tensor4D; target: tf.Tensor4D } {
  const xt = qSample(schedule, x0, timesteps, noise)
  const nulls = timesteps.map(() => nullClass(config))
  return { xt, target: unetForward(base, config, xt, timesteps, nulls) }
}

/**
 * nullAnchor x the weighted mean square between the student's null-label predictions and the
 * base's, with the same per-timestep weights and the same shard convention as the diffusion loss
 * (summed over the shard's rows, divided by the whole batch's size).
 */
export function anchorLoss(
  student: ParamStore,
  config: CoopConfig,
  schedule: NoiseSchedule,
  targets: { xt: tf.Tensor4D; target: tf.Tensor4D },
  timesteps: readonly number[],
  batchTotal: number,
): tf.Scalar {
  const nulls = timesteps.map(() => nullClass(config))
  const predicted = unetForward(student, config, targets.xt, timesteps, nulls)
  const perSample = tf.mean(tf.squaredDifference(predicted, targets.target), [1, 2, 3])
  const weighted = tf.mul(perSample, tf.tensor1d(lossWeights(config, schedule, timesteps)))
  return tf.mul(tf.div(tf.sum(weighted), batchTotal), config.unet.nullAnchor) as tf.Scalar
}
