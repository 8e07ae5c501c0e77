// SiLU's one-pass gradient (trainer/kernels/silu.ts) equals what tfjs derives for x * sigmoid(x), on
// wasm (SIMD kernel) and cpu (tfjs ops), including sizes that are not a multiple of 4.
import * as tf from '@tensorflow/tfjs-core'
import { beforeAll, describe, expect, it } from 'vitest'
import { initBackend } from '../../trainer/backend.ts'
import { silu } from '../../trainer/kernels/silu.ts'

beforeAll(async () => {
  await initBackend('cpu')
  await initBackend('wasm')
})

describe('silu', () => {
  for (const backend of ['wasm', 'cpu'] as const)
    for (const shape of [
      [2, 4, 4, 8],
      [3, 5],
    ])
      it(`${backend}, shape [${shape}]: value and gradient match x * sigmoid(x)`, async () => {
        await tf.setBackend(backend)
        const size = shape.reduce((a, b) => a * b, 1)
        const x = tf.tensor(
          Float32Array.from({ length: size }, (_, i) => Math.sin(i * 1.7) * 6),
          shape,
        )
        const weights = tf.tensor(
          Float32Array.from({ length: size }, (_, i) => Math.cos(i * 0.3)),
          shape,
        )
        const ours = tf.grad((v: tf.Tensor) => tf.sum(tf.mul(silu(v), weights)))(x)
        const reference = tf.grad((v: tf.Tensor) => tf.sum(tf.mul(tf.mul(v, tf.sigmoid(v)), weights)))(x)
        const value = silu(x).dataSync()
        const expected = tf.mul(x, tf.sigmoid(x)).dataSync()
        ours.dataSync().forEach((g, i) => expect(Math.abs(g - reference.dataSync()[i]!)).toBeLessThan(1e-5))
        value.forEach((v, i) => expect(v).toBe(expected[i]))
      })
})
