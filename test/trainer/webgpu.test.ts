// WebGPU (Dawn in Node) on SwiftShader, a CPU Vulkan driver, so it runs in CI without a GPU: a few
// training steps of a tiny autoencoder and U-Net match the cpu backend, evaluation and sampling work,
// and none of it reads a tensor back synchronously (which on WebGPU in Node fails outright). SwiftShader
// takes seconds per step, so the model, the batch and the step counts are as small as they can be.
import * as tf from '@tensorflow/tfjs-core'
import { beforeAll, describe, expect, it } from 'vitest'
import { initBackend } from '../../trainer/backend.ts'
import type { ImageDataset } from '../../trainer/data.ts'
import { sampleImages } from '../../trainer/sample.ts'
import { createTrainerSession } from '../../trainer/session.ts'
import type { NamedTensor } from '../../trainer/types.ts'
import { webGpuAdapterDescription } from '../../trainer/webgpu/device.ts'
import { groupNorm } from '../../trainer/kernels/groupnorm.ts'
import { fusedSquaredNorm } from '../../trainer/kernels/optimizer.ts'
import { smallConfig, twemojiDataset } from './helpers.ts'
import { withoutSyncReadback } from './helpers-sync.ts'
import { useSwiftShader } from './swiftshader.ts'

const config = smallConfig()
const STEPS = 2
let dataset: ImageDataset

interface Run {
  aeLosses: number[]
  aeEval: number
  aeWeights: NamedTensor[]
  unetLosses: number[]
  unetEval: number
  unetWeights: NamedTensor[]
  pixels: Uint8Array
}

/** The same work on whichever backend is active: both phases, evaluation, weights, sampling. */
async function run(autoencoderFrom?: NamedTensor[]): Promise<Run> {
  const ae = await createTrainerSession({ config, phase: 'autoencoder', dataset, seed: 5 })
  const aeLosses: number[] = []
  await ae.trainSteps(STEPS, (s) => aeLosses.push(s.loss))
  const aeEval = await ae.evalLoss({ ema: true })
  const aeWeights = await ae.getWeights()
  ae.dispose()
  // Both backends train the U-Net on the same autoencoder, so the comparison isolates the U-Net.
  const autoencoder = autoencoderFrom ?? aeWeights
  const unet = await createTrainerSession({ config, phase: 'unet', dataset, seed: 5, autoencoder })
  const unetLosses: number[] = []
  await unet.trainSteps(STEPS, (s) => unetLosses.push(s.loss))
  const unetEval = await unet.evalLoss()
  const unetWeights = await unet.getWeights()
  unet.dispose()
  const pixels = await sampleImages({
    config,
    autoencoder,
    unet: unetWeights,
    labels: [0, config.classes.length],
    guidance: 2,
    steps: 2,
    seed: 9,
  })
  return { aeLosses, aeEval, aeWeights, unetLosses, unetEval, unetWeights, pixels }
}

function maxDifference(a: NamedTensor[], b: NamedTensor[]): number {
  let max = 0
  a.forEach((t, i) => {
    const other = (b[i] as NamedTensor).data
    expect(b[i]?.name).toBe(t.name)
    t.data.forEach((v, j) => {
      max = Math.max(max, Math.abs(v - (other[j] as number)))
    })
  })
  return max
}

let cpu: Run
let webgpu: Run

beforeAll(async () => {
  useSwiftShader()
  dataset = (await twemojiDataset(1, 16, ['flags', 'food-drink', 'objects', 'symbols'])).dataset
  await initBackend('cpu')
  cpu = await run()
  await initBackend('webgpu')
  webgpu = await withoutSyncReadback(() => run(cpu.aeWeights))
}, 600_000)

/** The project's WGSL kernels against the cpu backend, on shapes the small model does not reach. */
async function kernelOutputs(backend: 'cpu' | 'webgpu'): Promise<Float32Array[]> {
  await tf.setBackend(backend)
  const values = (shape: number[], k: number) =>
    tf.tensor(
      Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, (_, i) => Math.sin(i * k) * 2 + 0.3),
      shape,
    )
  const outputs = tf.tidy(() => {
    const results: tf.Tensor[] = []
    // Convolution gradients: 3-channel input, odd channel counts, stride 2 (the filter gradient is ours).
    for (const [xShape, filterShape, stride] of [
      [[2, 9, 7, 3], [3, 3, 3, 12], 2],
      [[2, 6, 6, 5], [3, 3, 5, 6], 1],
    ] as [number[], number[], 1 | 2][]) {
      const x = values(xShape, 0.37) as tf.Tensor4D
      const filter = values(filterShape, 0.11) as tf.Tensor4D
      const weights = values(tf.conv2d(x, filter, stride, 'same').shape, 0.23)
      const [dx, dw] = tf.grads((a: tf.Tensor, b: tf.Tensor) =>
        tf.sum(tf.mul(tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, stride, 'same'), weights)),
      )([x, filter])
      results.push(dx!, dw!)
    }
    // GroupNorm with 12 channels per group and a large mean, and its gradients.
    const x = tf.add(values([2, 4, 4, 24], 0.7), 50) as tf.Tensor4D
    const gamma = values([24], 0.3) as tf.Tensor1D
    const beta = values([24], 0.5) as tf.Tensor1D
    const weights = values([2, 4, 4, 24], 0.19)
    const [dx, dGamma, dBeta] = tf.grads((a: tf.Tensor, g: tf.Tensor, b: tf.Tensor) =>
      tf.sum(tf.mul(groupNorm(a as tf.Tensor4D, g as tf.Tensor1D, b as tf.Tensor1D, 2, 1e-5), weights)),
    )([x, gamma, beta])
    results.push(groupNorm(x, gamma, beta, 2, 1e-5), dx!, dGamma!, dBeta!)
    results.push(fusedSquaredNorm([values([3, 5], 0.9), values([70], 0.4)]))
    return results
  })
  const arrays = await Promise.all(outputs.map(async (t) => (await t.data()) as Float32Array))
  tf.dispose(outputs)
  return arrays
}

describe('webgpu kernels on SwiftShader', () => {
  it('convolution gradients, GroupNorm and the gradient norm match the cpu backend', async () => {
    const reference = await kernelOutputs('cpu')
    const ours = await withoutSyncReadback(() => kernelOutputs('webgpu'))
    reference.forEach((expected, i) => {
      const actual = ours[i] as Float32Array
      expect(actual.length).toBe(expected.length)
      const scale = Math.max(1e-3, ...Array.from(expected, Math.abs))
      expected.forEach((v, j) =>
        expect(Math.abs(v - (actual[j] as number)) / scale, `output ${i}`).toBeLessThan(5e-5),
      )
    })
  })
})

describe('webgpu on SwiftShader', () => {
  it('runs on the SwiftShader adapter, asked for explicitly', () => {
    expect(tf.getBackend()).toBe('webgpu')
    expect(webGpuAdapterDescription()).toMatch(/swiftshader/i)
  })

  it(`${STEPS} autoencoder and ${STEPS} U-Net steps match the cpu backend`, () => {
    for (const [ours, reference] of [
      [webgpu.aeLosses, cpu.aeLosses],
      [webgpu.unetLosses, cpu.unetLosses],
    ] as const) {
      expect(ours).toHaveLength(STEPS)
      ours.forEach((loss, i) =>
        expect(Math.abs(loss - (reference[i] as number))).toBeLessThan(
          1e-4 * Math.max(1, reference[i] as number),
        ),
      )
    }
    // Adam moves each weight by about lr per step whatever the gradient's size, so float32 differences
    // between the backends show up at most as a fraction of lr.
    expect(maxDifference(webgpu.aeWeights, cpu.aeWeights)).toBeLessThan(config.autoencoder.lr * 0.05)
    expect(maxDifference(webgpu.unetWeights, cpu.unetWeights)).toBeLessThan(config.unet.lr * 0.05)
    expect(Math.abs(webgpu.aeEval - cpu.aeEval)).toBeLessThan(1e-4)
    expect(Math.abs(webgpu.unetEval - cpu.unetEval)).toBeLessThan(1e-4)
  })

  it('samples the same images as the cpu backend (to a rounding step per pixel)', () => {
    expect(webgpu.pixels.length).toBe(cpu.pixels.length)
    let differing = 0
    webgpu.pixels.forEach((v, i) => {
      const difference = Math.abs(v - (cpu.pixels[i] as number))
      expect(difference).toBeLessThanOrEqual(1)
      if (difference > 0) differing++
    })
    expect(differing).toBeLessThan(webgpu.pixels.length / 100)
    // Not a blank image: the decoder produced varied pixels.
    expect(new Set(webgpu.pixels).size).toBeGreaterThan(16)
  })
})
