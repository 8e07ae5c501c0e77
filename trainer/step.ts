// One shard of a training step: the loss of some rows of a batch and its gradients with respect to every
// trainable parameter. The session runs it on the main thread and trainer/parallel/ runs it on worker
// threads, so both compute exactly the same function of (weights, shard).
import * as tf from '@tensorflow/tfjs-core'
import type { CoopConfig } from '../configs/index.ts'
import { autoencoderLoss, latentSize } from './autoencoder.ts'
import type { BatchShard } from './batches.ts'
import { loss as diffusionLoss } from './diffusion.ts'
import { TrainerError } from './errors.ts'
import type { ParamStore } from './nn.ts'
import { makeSchedule } from './schedule.ts'
import type { NoiseSchedule } from './schedule.ts'
import type { Phase } from './types.ts'

export interface StepModel {
  store: ParamStore
  config: CoopConfig
  phase: Phase
  schedule: NoiseSchedule
  /** Per-row input shape: [S,S,3] pixels or [s,s,z] latents. */
  inputShape: readonly [number, number, number]
  /** Side of the autoencoder's latent grid (its noise shape). */
  latentSize: number
}

export interface ShardGradients {
  /** This shard's share of the batch loss: the shards' values add up to the batch loss. */
  loss: tf.Scalar
  /** d loss / d parameter, in `store.trainableNames()` order; they add up over shards like the loss. */
  grads: tf.Tensor[]
  /** Autoencoder only: this shard's share of the mean square of the posterior mean. */
  meanSquares: tf.Scalar | undefined
}

/** The shapes a phase trains on, for a store of that phase's model. */
export function stepModelFor(config: CoopConfig, phase: Phase, store: ParamStore): StepModel {
  const s = latentSize(config)
  const size = config.image.size
  return {
    store,
    config,
    phase,
    schedule: makeSchedule(config.diffusion),
    inputShape: phase === 'autoencoder' ? [size, size, 3] : [s, s, config.autoencoder.latentChannels],
    latentSize: s,
  }
}

/** Loss and gradients of one shard of a batch of `batchSize` rows. The caller disposes the tensors. */
export function shardGradients(model: StepModel, shard: BatchShard, batchSize: number): ShardGradients {
  const { store, config, phase } = model
  const [h, w, c] = model.inputShape
  const trainable = store.trainableNames().map((name) => store.variables.get(name) as tf.Variable)
  let meanSquares: tf.Scalar | undefined
  const { value, grads } = tf.tidy(() => {
    const x = tf.tensor4d(shard.inputs, [shard.count, h, w, c])
    if (phase === 'autoencoder') {
      const s = model.latentSize
      const noise = tf.tensor4d(shard.noise, [shard.count, s, s, config.autoencoder.latentChannels])
      return tf.variableGrads(() => {
        const result = autoencoderLoss(store, config.autoencoder, x, noise, batchSize)
        meanSquares = tf.keep(result.meanSquares)
        return result.loss
      }, trainable)
    }
    const noise = tf.tensor4d(shard.noise, [shard.count, h, w, c])
    return tf.variableGrads(
      () =>
        diffusionLoss(store, config, model.schedule, x, shard.timesteps, noise, shard.labels, {
          weighted: true,
          batchTotal: batchSize,
        }),
      trainable,
    )
  })
  // variableGrads keys gradients by the tfjs variable name; the optimizer takes parameter order.
  const ordered = trainable.map((v, i) => {
    const g = grads[v.name]
    if (g === undefined) {
      tf.dispose([value, ...Object.values(grads), ...(meanSquares === undefined ? [] : [meanSquares])])
      throw new TrainerError('WEIGHTS_MISMATCH', `no gradient for ${store.trainableNames()[i]}`)
    }
    return g
  })
  return { loss: value, grads: ordered, meanSquares }
}

/**
 * Adds shard results in shard order (a fixed order, so the sum does not depend on which thread computed
 * which shard) and disposes the parts.
 */
export function sumShards(parts: ShardGradients[]): ShardGradients {
  if (parts.length === 1) return parts[0] as ShardGradients
  const first = parts[0] as ShardGradients
  const sum = tf.tidy(() => {
    const add = (pick: (p: ShardGradients) => tf.Tensor) =>
      parts.slice(1).reduce<tf.Tensor>((acc, part) => tf.add(acc, pick(part)), pick(first))
    return {
      loss: add((p) => p.loss) as tf.Scalar,
      grads: first.grads.map((_, i) => add((p) => p.grads[i] as tf.Tensor)),
      meanSquares:
        first.meanSquares === undefined ? undefined : (add((p) => p.meanSquares as tf.Scalar) as tf.Scalar),
    }
  })
  for (const part of parts)
    tf.dispose([part.loss, ...part.grads, ...(part.meanSquares === undefined ? [] : [part.meanSquares])])
  return sum
}
