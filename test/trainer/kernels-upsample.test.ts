// upsampleNearest2x equals tfjs's own nearest-neighbour resize, and so does its gradient, on wasm and cpu.

import * as tf from '@tensorflow/tfjs-core'
import { beforeAll, describe, expect, it } from 'vitest'
import { initBackend } from '../../trainer/backend.ts'
import { upsampleNearest2x } from '../../trainer/kernels/upsample.ts'

beforeAll(async () => {
  await initBackend('cpu')
  await initBackend('wasm')
})

describe('upsampleNearest2x', () => {
  for (const backend of ['wasm', 'cpu'] as const) {
    it(`matches resizeNearestNeighbor in value and gradient on ${backend}`, async () => {
      await tf.setBackend(backend)
      const shape: [number, number, number, number] = [2, 3, 4, 5]
      const size = shape.reduce((a, b) => a * b, 1)
      const x = tf.tensor4d(
        Array.from({ length: size }, (_, i) => Math.sin(i)),
        shape,
      )
      const weights = tf.tensor4d(
        Array.from({ length: 4 * size }, (_, i) => Math.cos(i * 0.7)),
        [2, 6, 8, 5],
      )
      const ours = upsampleNearest2x(x)
      const reference = tf.image.resizeNearestNeighbor(x, [6, 8])
      expect(ours.shape).toEqual([2, 6, 8, 5])
      expect(Array.from(ours.dataSync())).toEqual(Array.from(reference.dataSync()))
      const gradient = tf.grad((t: tf.Tensor) =>
        tf.sum(tf.mul(upsampleNearest2x(t as tf.Tensor4D), weights)),
      )(x)
      const referenceGradient = tf.grad((t: tf.Tensor) =>
        tf.sum(tf.mul(tf.image.resizeNearestNeighbor(t as tf.Tensor4D, [6, 8]), weights)),
      )(x)
      const a = gradient.dataSync()
      const b = referenceGradient.dataSync()
      for (let i = 0; i < a.length; i++) expect(a[i]!).toBeCloseTo(b[i]!, 5)
      tf.dispose([x, weights, ours, reference, gradient, referenceGradient])
    })
  }
})
