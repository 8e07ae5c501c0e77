// The wasm backend (relaxed-SIMD / XNNPACK kernels, fused conv + bias, GroupNorm, SiLU, on 1 and 2
// threads) computes the same loss and gradients as tfjs's pure cpu backend, for the whole autoencoder and
// U-Net of every cheap preset, with every parameter non-trivial (non-zero biases and zero-init convs).
// A kernel that is wrong only for some shape or option the models use shows up here as a gradient error.
import * as tf from '@tensorflow/tfjs-core'
import { beforeAll, describe, expect, it } from 'vitest'
import { initBackend } from '../../trainer/backend.ts'
import { createGradientEngine } from '../../trainer/parallel/engine.ts'
import { stepModelFor } from '../../trainer/step.ts'
import type { NamedTensor, Phase } from '../../trainer/types.ts'
import {
  cheapConfigs,
  createModel,
  namedGradients,
  nonTrivialWeights,
  PARITY_BATCH,
  parityBatch,
  relativeDifference,
  splitRows,
} from './model-parity.ts'
import type { CoopConfig } from '../../configs/index.ts'

// Float32 on both, different summation orders: measured (tiny and emoji32, load ~25) losses <= 6e-7
// relative, gradients <= 3.5e-6 overall, worst tensor 4.7e-6 (emoji32's autoencoder). The SIMD conv that
// dropped its bias gave 3e-3 on the loss and 5e-2 / 3e-1 on the gradients.
const LOSS_RTOL = 1e-5
const GRADIENT_RTOL = 1e-5
const WORST_TENSOR_RTOL = 5e-5
// The cpu backend's convolution gradients run at ~0.05 GFLOP/s; emoji32's U-Net takes ~20 s at load 20.
const TEST_TIMEOUT_MS = 600_000

interface Result {
  loss: number
  gradients: NamedTensor[]
}

async function lossAndGradients(
  backend: 'wasm' | 'cpu',
  config: CoopConfig,
  phase: Phase,
  threads: number,
): Promise<Result> {
  const previous = tf.getBackend()
  await tf.setBackend(backend)
  const store = createModel(config, phase, 5)
  const engine = createGradientEngine(stepModelFor(config, phase, store), threads)
  try {
    store.write(nonTrivialWeights(await store.read()))
    const model = stepModelFor(config, phase, store)
    const batch = parityBatch(config, phase, model.inputShape, model.latentSize)
    const shards = threads === 1 ? [batch] : splitRows(batch)
    const { result } = await engine.compute(shards, PARITY_BATCH)
    const loss = (await result.loss.data())[0] as number
    const gradients = await namedGradients(store, result.grads)
    tf.dispose([
      result.loss,
      ...result.grads,
      ...(result.meanSquares === undefined ? [] : [result.meanSquares]),
    ])
    return { loss, gradients }
  } finally {
    engine.dispose()
    store.dispose()
    await tf.setBackend(previous)
  }
}

beforeAll(async () => {
  await initBackend('wasm', undefined, { threads: 1 })
})

describe('wasm matches the cpu backend on the real models', { timeout: TEST_TIMEOUT_MS }, () => {
  for (const config of cheapConfigs())
    for (const phase of ['autoencoder', 'unet'] as const)
      it(`${config.name} ${phase}: loss and every gradient on 1 and 2 threads`, async () => {
        const reference = await lossAndGradients('cpu', config, phase, 1)
        for (const threads of [1, 2]) {
          const wasm = await lossAndGradients('wasm', config, phase, threads)
          const loss = Math.abs(wasm.loss / reference.loss - 1)
          const grads = relativeDifference(wasm.gradients, reference.gradients)
          console.log(
            `${config.name} ${phase} wasm x${threads}: loss rel ${loss.toExponential(2)}, gradients rel ${grads.total.toExponential(2)} (worst ${grads.name} ${grads.worst.toExponential(2)})`,
          )
          expect(reference.gradients.every((g) => g.data.some((v) => v !== 0))).toBe(true)
          expect(loss).toBeLessThan(LOSS_RTOL)
          expect(grads.total).toBeLessThan(GRADIENT_RTOL)
          expect(grads.worst, grads.name).toBeLessThan(WORST_TENSOR_RTOL)
        }
      })
})
