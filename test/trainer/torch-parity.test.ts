// The torch backend computes what the tfjs backend computes: the same named weights, the same batch
// and the same noise/timesteps/labels give the same loss and gradients (both models), the same held-out
// loss, and the same first training steps through the session (same seed: same batches on both).
// Needs a python3 with torch (CI installs Debian's python3-torch); without one these tests fail.
import * as tf from '@tensorflow/tfjs-core'
import { beforeAll, describe, expect, it } from 'vitest'
import {
  autoencoderLoss,
  createAutoencoder,
  encodeForDiffusion,
  latentSize,
} from '../../trainer/autoencoder.ts'
import { initBackend } from '../../trainer/backend.ts'
import type { ImageDataset } from '../../trainer/data.ts'
import { loss as diffusionLoss } from '../../trainer/diffusion.ts'
import type { ParamStore } from '../../trainer/nn.ts'
import { Rng } from '../../trainer/rng.ts'
import { makeSchedule } from '../../trainer/schedule.ts'
import { createTrainerSession } from '../../trainer/session.ts'
import type { TrainerSession } from '../../trainer/session.ts'
import { createTorchSession } from '../../trainer/torch/session.ts'
import type { NamedTensor } from '../../trainer/types.ts'
import { createUnet, nullClass } from '../../trainer/unet.ts'
import { smallConfig, twemojiDataset } from './helpers.ts'
import { TORCH_TEST_TIMEOUT_MS, torchRuntime } from './torch-helpers.ts'
import type { TorchRuntime } from '../../trainer/torch/probe.ts'

// Float32 on both sides, different convolution algorithms and summation orders. Measured (tiny, wasm vs
// torch 1.13 CPU): losses 1e-7..2e-6 relative, gradients 4e-7..7e-7 overall (worst tensor 2e-6), weights
// after three Adam steps 3e-7. The bounds leave a 10x margin and still catch any wrong layout, padding or
// formula, which give errors of order 1.
const LOSS_RTOL = 2e-5
const GRADIENT_RTOL = 1e-5
const WEIGHTS_RTOL = 1e-5

const config = smallConfig()
const vConfig = smallConfig({ 'diffusion.prediction': 'v', 'diffusion.schedule': 'scaled_linear' })
let dataset: ImageDataset
let runtime: TorchRuntime
let autoencoder: NamedTensor[]

beforeAll(async () => {
  await initBackend('wasm')
  runtime = await torchRuntime()
  dataset = (await twemojiDataset(2, 16, ['flags', 'food-drink', 'objects', 'symbols'])).dataset
  // A trained-looking autoencoder: random init with a non-trivial latent scale.
  const ae = createAutoencoder(config, 3)
  autoencoder = (await ae.read()).map((t) =>
    t.name === 'stats.latent_rms' ? { ...t, data: Float32Array.of(0.7) } : t,
  )
  ae.dispose()
}, TORCH_TEST_TIMEOUT_MS)

/** ||a - b|| / ||b|| over all tensors, and the worst single tensor's. */
function relativeDifference(
  a: NamedTensor[],
  b: NamedTensor[],
): { total: number; worst: number; name: string } {
  let diff = 0
  let norm = 0
  let worst = 0
  let name = ''
  expect(a.map((t) => t.name)).toEqual(b.map((t) => t.name))
  a.forEach((t, i) => {
    const other = b[i] as NamedTensor
    expect(t.shape).toEqual(other.shape)
    let d = 0
    let n = 0
    for (let j = 0; j < t.data.length; j++) {
      d += ((t.data[j] as number) - (other.data[j] as number)) ** 2
      n += (other.data[j] as number) ** 2
    }
    diff += d
    norm += n
    const relative = n > 0 ? Math.sqrt(d / n) : Math.sqrt(d)
    if (relative > worst) {
      worst = relative
      name = t.name
    }
  })
  return { total: Math.sqrt(diff / norm), worst, name }
}

function tfjsGradients(
  store: ParamStore,
  lossFn: () => tf.Scalar,
): { loss: number; gradients: NamedTensor[] } {
  const names = store.trainableNames()
  const variables = names.map((n) => store.variables.get(n) as tf.Variable)
  const { value, grads } = tf.variableGrads(lossFn, variables)
  const loss = value.dataSync()[0] as number
  const gradients = names.map((name) => {
    const g = grads[(store.variables.get(name) as tf.Variable).name] as tf.Tensor
    return { name, shape: [...g.shape], data: new Float32Array(g.dataSync() as Float32Array) }
  })
  value.dispose()
  for (const g of Object.values(grads)) g.dispose()
  return { loss, gradients }
}

function gather(pixels: Float32Array, rowSize: number, indices: number[]): Float32Array {
  const out = new Float32Array(indices.length * rowSize)
  indices.forEach((index, row) =>
    out.set(pixels.subarray(index * rowSize, (index + 1) * rowSize), row * rowSize),
  )
  return out
}

describe(
  'torch backend parity with tfjs (same weights, same inputs)',
  { timeout: TORCH_TEST_TIMEOUT_MS },
  () => {
    it('autoencoder: loss and every gradient match', async () => {
      const seed = 21
      const session = await createTorchSession({ config, phase: 'autoencoder', dataset, seed }, runtime)
      try {
        const rng = new Rng(5)
        const indices = [0, 3, 5, 6]
        const s = latentSize(config)
        const noise = rng.normals(indices.length * s * s * config.autoencoder.latentChannels)
        const torch = await session.lossAndGradients({ indices, noise })
        const store = createAutoencoder(config, seed)
        const size = config.image.size
        const reference = tfjsGradients(store, () => {
          const x = tf.tensor4d(gather(dataset.pixels, size * size * 3, indices), [
            indices.length,
            size,
            size,
            3,
          ])
          const n = tf.tensor4d(noise, [indices.length, s, s, config.autoencoder.latentChannels])
          return autoencoderLoss(store, config.autoencoder, x, n).loss
        })
        store.dispose()
        const grads = relativeDifference(torch.gradients, reference.gradients)
        console.log(
          `autoencoder: loss ${reference.loss} vs ${torch.loss} (rel ${Math.abs(torch.loss / reference.loss - 1).toExponential(2)}), gradients rel ${grads.total.toExponential(2)} (worst ${grads.name} ${grads.worst.toExponential(2)})`,
        )
        expect(Math.abs(torch.loss / reference.loss - 1)).toBeLessThan(LOSS_RTOL)
        expect(grads.total).toBeLessThan(GRADIENT_RTOL)
        expect(grads.worst).toBeLessThan(5 * GRADIENT_RTOL)
      } finally {
        session.dispose()
      }
    })

    for (const [label, cfg] of [
      ['epsilon, linear', config],
      ['v, scaled_linear', vConfig],
    ] as const) {
      it(`U-Net (${label}, Min-SNR, classes and the null class): loss and every gradient match`, async () => {
        const seed = 22
        const session = await createTorchSession(
          { config: cfg, phase: 'unet', dataset, seed, autoencoder },
          runtime,
        )
        try {
          const rng = new Rng(6)
          const indices = [1, 2, 4, 7]
          const s = latentSize(cfg)
          const z = cfg.autoencoder.latentChannels
          const noise = rng.normals(indices.length * s * s * z)
          const timesteps = [0, 17, 500, 999]
          const labels = [0, 2, nullClass(cfg), 3]
          const torch = await session.lossAndGradients({ indices, noise, timesteps, labels })
          const ae = createAutoencoder(cfg, 0)
          ae.write(autoencoder)
          const store = createUnet(cfg, seed)
          // conv_out is zero-initialised (so is every residual branch's last conv): give the network a
          // non-trivial function, or most gradients would be exactly zero on both sides.
          const nonZero = (await store.read()).map((t) => ({
            ...t,
            data: t.data.map((v, i) => (v === 0 ? Math.sin(i) * 0.05 : v)),
          }))
          store.write(nonZero)
          await session.setWeights(nonZero)
          const again = await session.lossAndGradients({ indices, noise, timesteps, labels })
          expect(again.loss).not.toBe(torch.loss)
          const size = cfg.image.size
          const reference = tfjsGradients(store, () => {
            const x = tf.tensor4d(gather(dataset.pixels, size * size * 3, indices), [
              indices.length,
              size,
              size,
              3,
            ])
            const x0 = encodeForDiffusion(ae, cfg.autoencoder, x)
            const n = tf.tensor4d(noise, [indices.length, s, s, z])
            return diffusionLoss(store, cfg, makeSchedule(cfg.diffusion), x0, timesteps, n, labels, {
              weighted: true,
            })
          })
          store.dispose()
          ae.dispose()
          const grads = relativeDifference(again.gradients, reference.gradients)
          console.log(
            `U-Net ${label}: loss ${reference.loss} vs ${again.loss} (rel ${Math.abs(again.loss / reference.loss - 1).toExponential(2)}), gradients rel ${grads.total.toExponential(2)} (worst ${grads.name} ${grads.worst.toExponential(2)})`,
          )
          expect(Math.abs(again.loss / reference.loss - 1)).toBeLessThan(LOSS_RTOL)
          expect(grads.total).toBeLessThan(GRADIENT_RTOL)
          expect(grads.worst).toBeLessThan(5 * GRADIENT_RTOL)
        } finally {
          session.dispose()
        }
      })
    }

    it('sessions of the same seed: same initial weights, same held-out loss, same first steps', async () => {
      for (const phase of ['autoencoder', 'unet'] as const) {
        const options = { config, phase, dataset, seed: 31, autoencoder }
        const tfjs: TrainerSession = await createTrainerSession(options)
        const torch = await createTorchSession(options, runtime)
        try {
          expect(relativeDifference(await torch.getWeights(), await tfjs.getWeights()).total).toBe(0)
          const evalTfjs = await tfjs.evalLoss()
          const evalTorch = await torch.evalLoss()
          const lossesTfjs: number[] = []
          const lossesTorch: number[] = []
          await tfjs.trainSteps(3, (s) => lossesTfjs.push(s.loss))
          await torch.trainSteps(3, (s) => lossesTorch.push(s.loss))
          const weights = relativeDifference(await torch.getWeights(), await tfjs.getWeights())
          const ema = relativeDifference(await torch.getEmaWeights(), await tfjs.getEmaWeights())
          console.log(
            `${phase}: eval ${evalTfjs} vs ${evalTorch}; losses ${lossesTfjs.map((l) => l.toFixed(6))} vs ${lossesTorch.map((l) => l.toFixed(6))}; weights after 3 Adam steps rel ${weights.total.toExponential(2)}, EMA rel ${ema.total.toExponential(2)}`,
          )
          expect(Math.abs(evalTorch / evalTfjs - 1)).toBeLessThan(LOSS_RTOL)
          lossesTorch.forEach((l, i) =>
            expect(Math.abs(l / (lossesTfjs[i] as number) - 1)).toBeLessThan(LOSS_RTOL),
          )
          expect(torch.step()).toBe(tfjs.step())
          expect(torch.samplesSeen()).toBe(tfjs.samplesSeen())
          expect(weights.total).toBeLessThan(WEIGHTS_RTOL)
          expect(ema.total).toBeLessThan(WEIGHTS_RTOL)
        } finally {
          tfjs.dispose()
          torch.dispose()
        }
      }
    })
  },
)
