// The fused optimizer kernels (one call for all parameters) must compute exactly the Adam, EMA and
// gradient-norm formulas (float32 arithmetic on wasm): checked against a float64 evaluation written out here, on wasm and on cpu,
// and against the per-op tfjs path that other backends use.

import * as tf from '@tensorflow/tfjs-core'
import { beforeAll, describe, expect, it } from 'vitest'
import { initBackend } from '../../trainer/backend.ts'
import {
  adamWithOps,
  emaWithOps,
  fusedAdam,
  fusedEma,
  fusedSquaredNorm,
  squaredNormWithOps,
} from '../../trainer/kernels/optimizer.ts'
import type { AdamHyperparameters } from '../../trainer/kernels/optimizer.ts'

function fixedValues(count: number, seed: number): Float32Array {
  const values = new Float32Array(count)
  let state = seed >>> 0
  for (let i = 0; i < count; i++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0
    values[i] = state / 2 ** 31 - 1
  }
  return values
}

const shapes = [[3, 3, 2, 4], [4], [5, 7], []]
const hyper: AdamHyperparameters = {
  learningRate: 2e-3,
  beta1: 0.9,
  beta2: 0.999,
  epsilon: 1e-8,
  step: 3,
  clipNorm: 1,
}

function sizeOf(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1)
}

// The gradients' global norm is 2, so clipping to 1 scales them by 0.5.
const gradientScale = 0.5

const data = shapes.map((shape, i) => ({
  param: fixedValues(sizeOf(shape), 10 + i),
  grad: fixedValues(sizeOf(shape), 20 + i),
  m: fixedValues(sizeOf(shape), 30 + i).map((x) => x * 0.1),
  v: fixedValues(sizeOf(shape), 40 + i).map((x) => x * x * 0.01),
}))

/** Adam written out in float64, independently of the code under test. */
function expectedAdam() {
  return data.map(({ param, grad, m, v }) => {
    const out = { param: [] as number[], m: [] as number[], v: [] as number[] }
    for (let i = 0; i < param.length; i++) {
      const g = grad[i]! * gradientScale
      const mi = hyper.beta1 * m[i]! + (1 - hyper.beta1) * g
      const vi = hyper.beta2 * v[i]! + (1 - hyper.beta2) * g * g
      const mHat = mi / (1 - hyper.beta1 ** hyper.step)
      const vHat = vi / (1 - hyper.beta2 ** hyper.step)
      out.m.push(mi)
      out.v.push(vi)
      out.param.push(param[i]! - (hyper.learningRate * mHat) / (Math.sqrt(vHat) + hyper.epsilon))
    }
    return out
  })
}

function expectClose(actual: tf.Tensor, expected: number[], relative: number): void {
  const values = actual.dataSync()
  expect(values.length).toBe(expected.length)
  for (let i = 0; i < expected.length; i++) {
    expect(Math.abs(values[i]! - expected[i]!)).toBeLessThanOrEqual(
      relative * Math.max(1e-3, Math.abs(expected[i]!)),
    )
  }
}

beforeAll(async () => {
  await initBackend('cpu')
  await initBackend('wasm')
})

describe('fused optimizer kernels', () => {
  for (const backend of ['wasm', 'cpu'] as const) {
    it(`Adam on ${backend} matches the formula and the per-op path, without touching its inputs`, async () => {
      await tf.setBackend(backend)
      const slots = data.map(({ param, grad, m, v }, i) => ({
        param: tf.tensor(param, shapes[i]),
        grad: tf.tensor(grad, shapes[i]),
        m: tf.tensor(m, shapes[i]),
        v: tf.tensor(v, shapes[i]),
      }))
      const guard = { squaredNorm: tf.scalar(4), loss: tf.scalar(1.5) }
      const fused = fusedAdam(slots, hyper, guard)
      const perOp = adamWithOps(slots, hyper, guard)
      const expected = expectedAdam()
      expected.forEach((e, i) => {
        for (const key of ['param', 'm', 'v'] as const) {
          expect(fused[i]![key].shape).toEqual(shapes[i])
          expectClose(fused[i]![key], e[key], 1e-5)
          expectClose(perOp[i]![key], e[key], 1e-5)
        }
      })
      // Inputs are left as they were: the caller decides when to assign.
      expect(Array.from(slots[0]!.param.dataSync())).toEqual(Array.from(data[0]!.param))
      tf.dispose([
        ...slots.flatMap((s) => [s.param, s.grad, s.m, s.v]),
        ...fused.flatMap((f) => [f.param, f.m, f.v]),
      ])
      tf.dispose(perOp.flatMap((f) => [f.param, f.m, f.v]))
    })

    it(`EMA and the squared gradient norm on ${backend} match the formulas`, async () => {
      await tf.setBackend(backend)
      const shadows = data.map(({ m }, i) => tf.tensor(m, shapes[i]))
      const params = data.map(({ param }, i) => tf.tensor(param, shapes[i]))
      const decay = 0.95
      const fused = fusedEma(shadows, params, decay)
      const perOp = emaWithOps(shadows, params, decay)
      data.forEach(({ m, param }, i) => {
        const expected = Array.from(m, (s, j) => decay * s + (1 - decay) * param[j]!)
        expectClose(fused[i]!, expected, 1e-5)
        expectClose(perOp[i]!, expected, 1e-5)
      })
      const expectedNorm = data.reduce((sum, { param }) => sum + param.reduce((a, x) => a + x * x, 0), 0)
      expect(fusedSquaredNorm(params).dataSync()[0]).toBeCloseTo(expectedNorm, 4)
      expect(squaredNormWithOps(params).dataSync()[0]).toBeCloseTo(expectedNorm, 3)
      tf.dispose([...shadows, ...params, ...fused, ...perOp])
    })
  }

  for (const backend of ['wasm', 'cpu'] as const) {
    it(`Adam on ${backend}: a small norm is not scaled up, and a non-finite norm or loss leaves every tensor unchanged`, async () => {
      await tf.setBackend(backend)
      const slot = () => ({
        param: tf.tensor(data[0]!.param, shapes[0]),
        grad: tf.tensor(data[0]!.grad, shapes[0]),
        m: tf.tensor(data[0]!.m, shapes[0]),
        v: tf.tensor(data[0]!.v, shapes[0]),
      })
      const unclipped = [slot()]
      const small = { squaredNorm: tf.scalar(0.25), loss: tf.scalar(1) }
      const noClip = { ...hyper, clipNorm: Number.POSITIVE_INFINITY }
      const a = fusedAdam(unclipped, hyper, small)
      const b = adamWithOps(unclipped, noClip, { squaredNorm: tf.scalar(1e30), loss: tf.scalar(1) })
      expect(Array.from(a[0]!.param.dataSync())).toEqual(
        Array.from(fusedAdam(unclipped, noClip, small)[0]!.param.dataSync()),
      )
      expectClose(b[0]!.param, Array.from(a[0]!.param.dataSync()), 1e-5)
      for (const bad of [
        { squaredNorm: tf.scalar(Number.NaN), loss: tf.scalar(1) },
        { squaredNorm: tf.scalar(Number.POSITIVE_INFINITY), loss: tf.scalar(1) },
        { squaredNorm: tf.scalar(1), loss: tf.scalar(Number.NaN) },
        { squaredNorm: tf.scalar(1), loss: tf.scalar(Number.NEGATIVE_INFINITY) },
      ]) {
        for (const update of [fusedAdam, adamWithOps]) {
          const [out] = update(unclipped, hyper, bad)
          expect(Array.from(out!.param.dataSync())).toEqual(Array.from(data[0]!.param))
          expect(Array.from(out!.m.dataSync())).toEqual(Array.from(data[0]!.m))
          expect(Array.from(out!.v.dataSync())).toEqual(Array.from(data[0]!.v))
        }
      }
    })
  }

  it('rejects slots whose shapes differ', () => {
    const param = tf.zeros([2, 2])
    const guard = { squaredNorm: tf.scalar(1), loss: tf.scalar(1) }
    expect(() => fusedAdam([{ param, grad: tf.zeros([4]), m: param, v: param }], hyper, guard)).toThrow(
      /shapes differ/,
    )
  })
})
