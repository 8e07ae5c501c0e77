// The fused GroupNorm op must give the same values and the same gradients (w.r.t. input, scale and shift)
// as GroupNorm composed from tfjs ops, on wasm and on cpu, including a training step through it.

import * as tf from '@tensorflow/tfjs-core'
import { beforeAll, describe, expect, it } from 'vitest'
import { initBackend } from '../../trainer/backend.ts'
import { groupNorm, groupNormWithOps } from '../../trainer/kernels/groupnorm.ts'

function fixedValues(count: number, seed: number, scale = 1, offset = 0): Float32Array {
  const values = new Float32Array(count)
  let state = seed >>> 0
  for (let i = 0; i < count; i++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0
    values[i] = (state / 2 ** 31 - 1) * scale + offset
  }
  return values
}

function maxRelativeDifference(a: tf.Tensor, b: tf.Tensor): number {
  const x = a.dataSync()
  const y = b.dataSync()
  expect(a.shape).toEqual(b.shape)
  let scale = 1e-6
  let worst = 0
  for (let i = 0; i < x.length; i++) {
    scale = Math.max(scale, Math.abs(x[i]!))
    worst = Math.max(worst, Math.abs(x[i]! - y[i]!))
  }
  return worst / scale
}

beforeAll(async () => {
  await initBackend('cpu')
  await initBackend('wasm')
})

const cases = [
  {
    label: 'two groups of four channels',
    shape: [2, 3, 3, 8] as [number, number, number, number],
    groups: 2,
  },
  { label: 'one channel per group', shape: [3, 2, 4, 4] as [number, number, number, number], groups: 4 },
  { label: 'a single group', shape: [1, 5, 5, 6] as [number, number, number, number], groups: 1 },
]

describe('fused GroupNorm', () => {
  for (const backend of ['wasm', 'cpu'] as const) {
    for (const c of cases) {
      it(`${c.label} on ${backend}: values and gradients match the composed op`, async () => {
        await tf.setBackend(backend)
        const channels = c.shape[3]
        const size = c.shape.reduce((a, b) => a * b, 1)
        // An offset mean and a non-unit spread, so the statistics matter.
        const x = tf.tensor4d(fixedValues(size, 1, 3, 2), c.shape)
        const gamma = tf.tensor1d(fixedValues(channels, 2, 0.5, 1))
        const beta = tf.tensor1d(fixedValues(channels, 3))
        const weights = tf.tensor(fixedValues(size, 4), c.shape)
        const lossOf = (norm: typeof groupNorm) => (input: tf.Tensor, scale: tf.Tensor, shift: tf.Tensor) =>
          tf.sum(
            tf.mul(
              norm(input as tf.Tensor4D, scale as tf.Tensor1D, shift as tf.Tensor1D, c.groups, 1e-5),
              weights,
            ),
          )
        const fusedValue = groupNorm(x, gamma, beta, c.groups, 1e-5)
        const referenceValue = groupNormWithOps(x, gamma, beta, c.groups, 1e-5)
        expect(maxRelativeDifference(referenceValue, fusedValue)).toBeLessThan(1e-5)
        const fusedGrads = tf.grads(lossOf(groupNorm))([x, gamma, beta])
        const referenceGrads = tf.grads(lossOf(groupNormWithOps))([x, gamma, beta])
        for (let i = 0; i < 3; i++)
          expect(maxRelativeDifference(referenceGrads[i]!, fusedGrads[i]!)).toBeLessThan(1e-4)
        // Normalised output: zero mean, unit variance per (image, group) before the affine part.
        const plain = groupNorm(x, tf.onesLike(gamma), tf.zerosLike(beta), c.groups, 1e-5)
        const grouped = tf.reshape(plain, [c.shape[0], -1, c.groups, channels / c.groups])
        const { mean, variance } = tf.moments(grouped, [1, 3])
        for (const m of mean.dataSync()) expect(Math.abs(m)).toBeLessThan(1e-5)
        for (const v of variance.dataSync()) expect(v).toBeCloseTo(1, 3)
        tf.dispose([x, gamma, beta, weights, fusedValue, referenceValue, plain, grouped, mean, variance])
        tf.dispose([...fusedGrads, ...referenceGrads])
      })
    }
  }

  it('rejects a channel count the groups do not divide', async () => {
    await tf.setBackend('wasm')
    expect(() =>
      groupNorm(tf.zeros([1, 2, 2, 6]) as tf.Tensor4D, tf.ones([6]), tf.zeros([6]), 4, 1e-5),
    ).toThrow(/6 channels cannot be split into 4 groups/)
  })
})
