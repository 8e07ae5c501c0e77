// The diffusion process (DDPM objective, DDIM sampler), separate from the network: `loss()`
// noises latents and scores the denoiser's prediction; `sample()` runs deterministic DDIM
// (eta = 0) with classifier-free guidance. The prediction target is set by the config:
// epsilon (the noise, Ho et al. 2020) or v = sqrt(abar) eps - sqrt(1 - abar) x0 (Salimans & Ho 2022).
import * as tf from '@tensorflow/tfjs-core'
import type { CoopConfig } from '../configs/index.ts'
import type { ParamStore } from './nn.ts'
import type { Rng } from './rng.ts'
import { ddimTimesteps } from './schedule.ts'
import type { NoiseSchedule } from './schedule.ts'
import { nullClass, unetForward } from './unet.ts'

export type Prediction = CoopConfig['diffusion']['prediction']

/** Per-sample coefficient column [n,1,1,1] from float64 values. */
function column(values: readonly number[]): tf.Tensor4D {
  return tf.tensor4d(Float32Array.from(values), [values.length, 1, 1, 1])
}

/** x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps. */
export function qSample(
  schedule: NoiseSchedule,
  x0: tf.Tensor4D,
  timesteps: readonly number[],
  noise: tf.Tensor4D,
): tf.Tensor4D {
  const abar = timesteps.map((t) => schedule.alphasCumprod[t] as number)
  return tf.add(
    tf.mul(x0, column(abar.map(Math.sqrt))),
    tf.mul(noise, column(abar.map((a) => Math.sqrt(1 - a)))),
  ) as tf.Tensor4D
}

/** The regression target for the configured prediction. */
export function predictionTarget(
  prediction: Prediction,
  schedule: NoiseSchedule,
  x0: tf.Tensor4D,
  timesteps: readonly number[],
  noise: tf.Tensor4D,
): tf.Tensor4D {
  if (prediction === 'epsilon') return noise
  const abar = timesteps.map((t) => schedule.alphasCumprod[t] as number)
  return tf.sub(
    tf.mul(noise, column(abar.map(Math.sqrt))),
    tf.mul(x0, column(abar.map((a) => Math.sqrt(1 - a)))),
  ) as tf.Tensor4D
}

/**
 * Per-sample loss weights for the configured weighting. `min_snr` is Min-SNR-gamma (Hang et al. 2023):
 * weight = min(SNR, gamma) / SNR for epsilon, / (SNR + 1) for v, so the many nearly-clean timesteps
 * stop dominating the gradient; it converges several times faster on small budgets.
 */
export function lossWeights(
  config: CoopConfig,
  schedule: NoiseSchedule,
  timesteps: readonly number[],
): number[] {
  const { lossWeighting, minSnrGamma, prediction } = config.diffusion
  if (lossWeighting === 'uniform') return timesteps.map(() => 1)
  return timesteps.map((t) => {
    const abar = schedule.alphasCumprod[t] as number
    const snr = abar / (1 - abar)
    return Math.min(snr, minSnrGamma) / (prediction === 'epsilon' ? snr : snr + 1)
  })
}

/**
 * Mean squared error between the denoiser's prediction and its target; with `weighted`, each sample's
 * error is scaled by the configured loss weighting (training), otherwise plain MSE (evaluation).
 * `batchTotal` is the size of the whole batch when `x0` is one shard of it: the per-sample errors are
 * summed and divided by it, so the shards' losses and gradients add up to the batch's.
 */
export function loss(
  p: ParamStore,
  config: CoopConfig,
  schedule: NoiseSchedule,
  x0: tf.Tensor4D,
  timesteps: readonly number[],
  noise: tf.Tensor4D,
  labels: readonly number[],
  options: { weighted?: boolean; batchTotal?: number } = {},
): tf.Scalar {
  const xt = qSample(schedule, x0, timesteps, noise)
  const predicted = unetForward(p, config, xt, timesteps, labels)
  const target = predictionTarget(config.diffusion.prediction, schedule, x0, timesteps, noise)
  const perSample = tf.mean(tf.squaredDifference(predicted, target), [1, 2, 3])
  const weighted = options.weighted
    ? tf.mul(perSample, tf.tensor1d(lossWeights(config, schedule, timesteps)))
    : perSample
  return tf.div(tf.sum(weighted), options.batchTotal ?? x0.shape[0]) as tf.Scalar
}

/** From a network output at noise level abar: the implied noise and clean sample. */
export function epsilonAndX0(
  prediction: Prediction,
  output: tf.Tensor4D,
  xt: tf.Tensor4D,
  abar: number,
): { eps: tf.Tensor4D; x0: tf.Tensor4D } {
  const a = Math.sqrt(abar)
  const b = Math.sqrt(1 - abar)
  if (prediction === 'epsilon')
    return { eps: output, x0: tf.div(tf.sub(xt, tf.mul(output, b)), a) as tf.Tensor4D }
  return {
    eps: tf.add(tf.mul(xt, b), tf.mul(output, a)) as tf.Tensor4D,
    x0: tf.sub(tf.mul(xt, a), tf.mul(output, b)) as tf.Tensor4D,
  }
}

/** One deterministic DDIM update (eta = 0): x_prev = sqrt(abar_prev) x0 + sqrt(1 - abar_prev) eps. */
export function ddimStep(x0: tf.Tensor4D, eps: tf.Tensor4D, abarPrev: number): tf.Tensor4D {
  return tf.add(tf.mul(x0, Math.sqrt(abarPrev)), tf.mul(eps, Math.sqrt(1 - abarPrev))) as tf.Tensor4D
}

export interface SampleOptions {
  /** Class index per sample; `nullClass(config)` (or an unconditional config) samples without a class. */
  labels: readonly number[]
  /** Classifier-free guidance weight w: output = uncond + w (cond - uncond); 1 = no guidance. */
  guidance: number
  samplingSteps: number
  rng: Rng
  /** Latent side and channels. */
  size: number
  channels: number
}

/** DDIM sampling in latent space; returns latents [n,size,size,channels] (caller disposes). */
export function sample(
  p: ParamStore,
  config: CoopConfig,
  schedule: NoiseSchedule,
  options: SampleOptions,
): tf.Tensor4D {
  const n = options.labels.length
  const { size, channels } = options
  const nullLabel = nullClass(config)
  const guided = options.guidance !== 1 && options.labels.some((l) => l !== nullLabel)
  let x = tf.tensor4d(options.rng.normals(n * size * size * channels), [n, size, size, channels])
  const steps = ddimTimesteps(schedule.timesteps, options.samplingSteps)
  for (let i = 0; i < steps.length; i++) {
    const t = steps[i] as number
    const abar = schedule.alphasCumprod[t] as number
    const abarPrev = i + 1 < steps.length ? (schedule.alphasCumprod[steps[i + 1] as number] as number) : 1
    const next = tf.tidy(() => {
      let output: tf.Tensor4D
      if (guided) {
        const doubled = tf.concat([x, x], 0) as tf.Tensor4D
        const both = unetForward(p, config, doubled, new Array(2 * n).fill(t), [
          ...options.labels,
          ...new Array(n).fill(nullLabel),
        ])
        const cond = tf.slice(both, [0, 0, 0, 0], [n, size, size, channels])
        const uncond = tf.slice(both, [n, 0, 0, 0], [n, size, size, channels])
        output = tf.add(uncond, tf.mul(tf.sub(cond, uncond), options.guidance)) as tf.Tensor4D
      } else {
        output = unetForward(p, config, x, new Array(n).fill(t), options.labels)
      }
      const { eps, x0 } = epsilonAndX0(config.diffusion.prediction, output, x, abar)
      return ddimStep(x0, eps, abarPrev)
    })
    x.dispose()
    x = next
  }
  return x
}
