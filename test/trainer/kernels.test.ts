// The wasm training kernels must give the same numbers as tfjs's reference `cpu` backend: the convolution
// gradients (stride 1 and 2, every padding mode, odd sizes, NCHW), transposed and batched matMul,
// UnsortedSegmentSum, and a whole small U-Net-like network's loss and gradients, plus a few Adam steps.
// The cpu backend is itself checked against hand-computed values where it was found wrong upstream.

import * as tf from '@tensorflow/tfjs-core'
import '@tensorflow/tfjs-backend-cpu'
import { beforeAll, describe, expect, it } from 'vitest'
import { initBackend } from '../../trainer/backend.ts'
import { setSimdConvolutions } from '../../trainer/kernels/wasm.ts'

/** Deterministic values in [-1, 1): the same inputs on both backends, and no test-to-test drift. */
function fixedValues(count: number, seed: number): Float32Array {
  const values = new Float32Array(count)
  let state = seed >>> 0
  for (let i = 0; i < count; i++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0
    values[i] = state / 2 ** 31 - 1
  }
  return values
}

function sizeOf(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1)
}

/** Runs `compute` on one backend and returns its outputs as plain arrays. */
async function onBackend(name: 'cpu' | 'wasm', compute: () => tf.Tensor[]): Promise<Float32Array[]> {
  await tf.setBackend(name)
  const outputs = tf.tidy(compute)
  const arrays = outputs.map((t) => t.dataSync() as Float32Array)
  tf.dispose(outputs)
  return arrays
}

/** Largest difference, relative to the largest magnitude of the reference (float32 sums differ in order). */
function relativeError(reference: Float32Array, actual: Float32Array): number {
  expect(actual.length).toBe(reference.length)
  let scale = 1e-6
  let worst = 0
  for (let i = 0; i < reference.length; i++) {
    scale = Math.max(scale, Math.abs(reference[i]!))
    worst = Math.max(worst, Math.abs(reference[i]! - actual[i]!))
  }
  return worst / scale
}

async function expectSameOnBothBackends(compute: () => tf.Tensor[], tolerance = 2e-5): Promise<void> {
  const reference = await onBackend('cpu', compute)
  const actual = await onBackend('wasm', compute)
  expect(actual.length).toBe(reference.length)
  for (let i = 0; i < reference.length; i++) {
    expect(Number.isFinite(relativeError(reference[i]!, actual[i]!))).toBe(true)
    expect(relativeError(reference[i]!, actual[i]!), `output ${i}`).toBeLessThanOrEqual(tolerance)
  }
}

beforeAll(async () => {
  await initBackend('cpu')
  const choice = await initBackend('wasm')
  expect(choice.name).toBe('wasm')
})

type Pad = 'same' | 'valid' | [[number, number], [number, number], [number, number], [number, number]]

const convCases: {
  label: string
  x: number[]
  filter: number[]
  stride: number
  pad: Pad
  nchw?: boolean
}[] = [
  { label: '3x3 stride 1 same', x: [2, 6, 6, 3], filter: [3, 3, 3, 4], stride: 1, pad: 'same' },
  { label: '3x3 stride 2 same, even size', x: [2, 8, 8, 3], filter: [3, 3, 3, 5], stride: 2, pad: 'same' },
  { label: '3x3 stride 2 same, odd size', x: [2, 7, 5, 2], filter: [3, 3, 2, 3], stride: 2, pad: 'same' },
  { label: '3x3 stride 1 valid', x: [1, 7, 6, 2], filter: [3, 3, 2, 3], stride: 1, pad: 'valid' },
  {
    label: '3x3 stride 2 valid, unused last row',
    x: [2, 8, 8, 2],
    filter: [3, 3, 2, 2],
    stride: 2,
    pad: 'valid',
  },
  { label: '1x1 stride 1', x: [3, 5, 5, 4], filter: [1, 1, 4, 6], stride: 1, pad: 'same' },
  { label: '4x4 stride 2 same', x: [1, 8, 8, 2], filter: [4, 4, 2, 3], stride: 2, pad: 'same' },
  {
    label: '3x3 stride 1, 8-wide channel tiles',
    x: [2, 8, 8, 16],
    filter: [3, 3, 16, 32],
    stride: 1,
    pad: 'same',
  },
  {
    label: '3x3 stride 2, 8-wide channel tiles',
    x: [2, 16, 16, 16],
    filter: [3, 3, 16, 32],
    stride: 2,
    pad: 'same',
  },
  {
    label: '3x3 to 3 channels (padded tile)',
    x: [2, 8, 8, 16],
    filter: [3, 3, 16, 3],
    stride: 1,
    pad: 'same',
  },
  { label: '1x1 stride 2', x: [2, 6, 6, 8], filter: [1, 1, 8, 4], stride: 2, pad: 'same' },
  { label: '5x5 stride 2 same', x: [1, 10, 10, 6], filter: [5, 5, 6, 8], stride: 2, pad: 'same' },
  {
    label: 'rows of 13 pixels (partial tile)',
    x: [1, 5, 13, 4],
    filter: [3, 3, 4, 8],
    stride: 1,
    pad: 'same',
  },
  { label: '64 to 64 channels', x: [2, 4, 4, 64], filter: [3, 3, 64, 64], stride: 1, pad: 'same' },
  {
    label: '3x3 stride 2 explicit asymmetric padding',
    x: [2, 6, 6, 2],
    filter: [3, 3, 2, 2],
    stride: 2,
    pad: [
      [0, 0],
      [1, 0],
      [0, 2],
      [0, 0],
    ],
  },
]

describe('wasm convolution gradients agree with the cpu backend', () => {
  // Both wasm paths: the relaxed-SIMD kernels (kernels/wasm-conv.ts) and the XNNPACK formulations
  // (kernels/wasm.ts) that serve engines without relaxed SIMD.
  for (const [path, simd] of [
    ['relaxed SIMD', true],
    ['XNNPACK', false],
  ] as const)
    for (const c of convCases) {
      it(`${c.label} (${path})`, async () => {
        setSimdConvolutions(simd)
        const xValues = fixedValues(sizeOf(c.x), 1)
        const filterValues = fixedValues(sizeOf(c.filter), 2)
        await expectSameOnBothBackends(() => {
          const x = tf.tensor4d(xValues, c.x as [number, number, number, number])
          const filter = tf.tensor4d(filterValues, c.filter as [number, number, number, number])
          const y = tf.conv2d(x, filter, c.stride, c.pad)
          // A non-uniform upstream gradient, so every position of dy matters.
          const weights = tf.tensor(fixedValues(y.size, 3), y.shape)
          const loss = (xIn: tf.Tensor, fIn: tf.Tensor) =>
            tf.sum(tf.mul(tf.conv2d(xIn as tf.Tensor4D, fIn as tf.Tensor4D, c.stride, c.pad), weights))
          const [dx, dFilter] = tf.grads(loss)([x, filter])
          return [y, dx!, dFilter!]
        })
        setSimdConvolutions(true)
      })
    }

  // FusedConv2D (tf.fused.conv2d, trainer/kernels/conv-bias.ts): the per-channel bias must reach the
  // output on both wasm paths for every shape above (the SIMD path once dropped it). tfjs's own wasm
  // FusedConv2D takes no other bias shape, so neither does the SIMD path.
  for (const [path, simd] of [
    ['relaxed SIMD', true],
    ['XNNPACK', false],
  ] as const)
    for (const c of convCases.filter((c) => c.nchw !== true)) {
      const biasShape = [c.filter[3] as number]
      it(`${c.label}, with bias (${path})`, async () => {
        setSimdConvolutions(simd)
        const xValues = fixedValues(sizeOf(c.x), 7)
        const filterValues = fixedValues(sizeOf(c.filter), 8)
        const biasValues = fixedValues(sizeOf(biasShape), 9)
        try {
          await expectSameOnBothBackends(() => {
            const x = tf.tensor4d(xValues, c.x as [number, number, number, number])
            const filter = tf.tensor4d(filterValues, c.filter as [number, number, number, number])
            const bias = tf.tensor(biasValues, biasShape)
            const conv = (xIn: tf.Tensor, fIn: tf.Tensor, bIn: tf.Tensor) =>
              tf.fused.conv2d({
                x: xIn as tf.Tensor4D,
                filter: fIn as tf.Tensor4D,
                strides: c.stride,
                pad: c.pad,
                bias: bIn,
              })
            const y = conv(x, filter, bias)
            const weights = tf.tensor(fixedValues(y.size, 10), y.shape)
            const loss = (xIn: tf.Tensor, fIn: tf.Tensor, bIn: tf.Tensor) =>
              tf.sum(tf.mul(conv(xIn, fIn, bIn), weights))
            const [dx, dFilter, dBias] = tf.grads(loss)([x, filter, bias])
            return [y, dx!, dFilter!, dBias!]
          })
        } finally {
          setSimdConvolutions(true)
        }
      })
    }

  it('NCHW input gradient and filter gradient', async () => {
    const xShape: [number, number, number, number] = [2, 3, 6, 6]
    const filterShape: [number, number, number, number] = [3, 3, 3, 4]
    const xValues = fixedValues(sizeOf(xShape), 4)
    const filterValues = fixedValues(sizeOf(filterShape), 5)
    const dyValues = fixedValues(2 * 4 * 3 * 3, 6)
    // The cpu backend's Conv2D forward has no NCHW path, so the gradient kernels are compared directly.
    await expectSameOnBothBackends(() => {
      const x = tf.tensor4d(xValues, xShape)
      const filter = tf.tensor4d(filterValues, filterShape)
      const dy = tf.tensor4d(dyValues, [2, 4, 3, 3])
      const attrs = { strides: [2, 2], pad: 'same', dataFormat: 'NCHW', dimRoundingMode: undefined }
      const dFilter = tf
        .engine()
        .runKernel('Conv2DBackpropFilter', { x, dy }, { ...attrs, filterShape } as never)
      const dx = tf
        .engine()
        .runKernel('Conv2DBackpropInput', { dy, filter }, { ...attrs, inputShape: xShape } as never)
      return [dFilter as tf.Tensor, dx as tf.Tensor]
    })
  })
})

describe('wasm matMul and segment sums agree with the cpu backend', () => {
  it('matMul with every transpose combination, 2-D and batched, and its gradients', async () => {
    const aValues = fixedValues(3 * 5 * 4, 7)
    const bValues = fixedValues(3 * 4 * 6, 8)
    await expectSameOnBothBackends(() => {
      const outputs: tf.Tensor[] = []
      for (const [transposeA, transposeB] of [
        [false, false],
        [true, false],
        [false, true],
        [true, true],
      ] as const) {
        const a2 = tf.tensor2d(aValues.subarray(0, 20), transposeA ? [4, 5] : [5, 4])
        const b2 = tf.tensor2d(bValues.subarray(0, 24), transposeB ? [6, 4] : [4, 6])
        outputs.push(tf.matMul(a2, b2, transposeA, transposeB))
        const a3 = tf.tensor3d(aValues, transposeA ? [3, 4, 5] : [3, 5, 4])
        const b3 = tf.tensor3d(bValues, transposeB ? [3, 6, 4] : [3, 4, 6])
        const loss = (a: tf.Tensor, b: tf.Tensor) =>
          tf.sum(tf.square(tf.matMul(a as tf.Tensor3D, b as tf.Tensor3D, transposeA, transposeB)))
        outputs.push(tf.matMul(a3, b3, transposeA, transposeB), ...tf.grads(loss)([a3, b3]))
      }
      return outputs
    })
  })

  it('UnsortedSegmentSum, directly and as the gradient of an embedding lookup', async () => {
    const tableValues = fixedValues(5 * 3, 9)
    await expectSameOnBothBackends(() => {
      const ids = tf.tensor1d([4, 0, 4, 2, 7, -1, 2], 'int32')
      const rows = tf.tensor2d(fixedValues(7 * 3, 10), [7, 3])
      // Ids 7 and -1 are outside [0, 5): TensorFlow drops them.
      const direct = tf.unsortedSegmentSum(rows, ids, 5)
      const table = tf.tensor2d(tableValues, [5, 3])
      const lookup = tf.tensor1d([1, 3, 1, 0], 'int32')
      const dTable = tf.grad((t: tf.Tensor) => tf.sum(tf.square(tf.gather(t, lookup))))(table)
      return [direct, dTable]
    })
  })
})

describe('nearest-neighbour upsampling gradient', () => {
  it('sums each 2x2 block of dy into its source pixel, for every image of a batch, on both backends', async () => {
    // dy = 0..31 over [2, 4, 4, 1]: image 0's pixel (0,0) gets 0+1+4+5, image 1's gets 16+17+20+21.
    const expected = [10, 18, 42, 50, 74, 82, 106, 114]
    for (const name of ['cpu', 'wasm'] as const) {
      const [gradient] = await onBackend(name, () => {
        const dy = tf.tensor4d(
          Array.from({ length: 32 }, (_, i) => i),
          [2, 4, 4, 1],
        )
        const upsample = (t: tf.Tensor) =>
          tf.sum(tf.mul(tf.image.resizeNearestNeighbor(t as tf.Tensor4D, [4, 4]), dy))
        return [tf.grad(upsample)(tf.zeros([2, 2, 2, 1]))]
      })
      expect(Array.from(gradient!), name).toEqual(expected)
    }
  })
})

/** A U-Net-shaped network using every op the trainer's models use, with a scalar loss. */
function tinyUnetLoss(params: Record<string, tf.Tensor>, x: tf.Tensor4D, classes: tf.Tensor1D): tf.Scalar {
  const silu = (t: tf.Tensor) => tf.mul(t, tf.sigmoid(t))
  const groupNorm = (t: tf.Tensor4D, groups: number, gamma: tf.Tensor, beta: tf.Tensor) => {
    const [n, h, w, c] = t.shape
    const grouped = tf.reshape(t, [n, h, w, groups, c / groups])
    const { mean, variance } = tf.moments(grouped, [1, 2, 4], true)
    const normed = tf.mul(tf.sub(grouped, mean), tf.rsqrt(tf.add(variance, 1e-5)))
    return tf.add(tf.mul(tf.reshape(normed, [n, h, w, c]), gamma), beta)
  }
  const conv = (t: tf.Tensor4D, name: string, stride = 1) =>
    tf.add(tf.conv2d(t, params[`${name}.w`] as tf.Tensor4D, stride, 'same'), params[`${name}.b`]!)
  const [n] = x.shape
  const embedding = tf.gather(params['class.embed']!, classes) // [n, 8]
  const h0 = conv(x, 'in') // [n, 8, 8, 8]
  const h1 = silu(groupNorm(h0 as tf.Tensor4D, 2, params['gn.gamma']!, params['gn.beta']!))
  const cond = tf.reshape(tf.matMul(embedding, params['cond.w'] as tf.Tensor2D), [n, 1, 1, 8])
  const h2 = tf.add(conv(h1 as tf.Tensor4D, 'res'), cond) // broadcasting add
  const down = conv(h2 as tf.Tensor4D, 'down', 2) // [n, 4, 4, 8]
  // Self-attention over the 16 positions of the lowest resolution.
  const tokens = tf.reshape(down, [n, 16, 8])
  const q = tf.matMul(tokens, tf.broadcastTo(params['attn.q']!, [n, 8, 8]) as tf.Tensor3D)
  const k = tf.matMul(tokens, tf.broadcastTo(params['attn.k']!, [n, 8, 8]) as tf.Tensor3D)
  const scores = tf.softmax(tf.div(tf.matMul(q, k, false, true), Math.sqrt(8)))
  const attended = tf.reshape(tf.add(tokens, tf.matMul(scores, tokens)), [n, 4, 4, 8])
  const pooled = tf.avgPool(attended as tf.Tensor4D, 2, 2, 'valid') // [n, 2, 2, 8]
  const up = tf.image.resizeNearestNeighbor(tf.image.resizeNearestNeighbor(pooled, [4, 4]), [8, 8])
  const skip = tf.concat([up, h2], 3) // [n, 8, 8, 16]
  const merged = tf.conv2d(skip as tf.Tensor4D, params['out.w'] as tf.Tensor4D, 1, 'same') // 1x1
  const cropped = tf.pad(tf.slice(merged, [0, 1, 1, 0], [n, 6, 6, 3]), [
    [0, 0],
    [1, 1],
    [1, 1],
    [0, 0],
  ])
  return tf.mean(tf.square(tf.sub(cropped, x)))
}

const unetShapes: Record<string, number[]> = {
  'class.embed': [4, 8],
  'in.w': [3, 3, 3, 8],
  'in.b': [8],
  'gn.gamma': [8],
  'gn.beta': [8],
  'cond.w': [8, 8],
  'res.w': [3, 3, 8, 8],
  'res.b': [8],
  'down.w': [3, 3, 8, 8],
  'down.b': [8],
  'attn.q': [8, 8],
  'attn.k': [8, 8],
  'out.w': [1, 1, 16, 3],
}

// Whole-network tolerance: wasm accumulates strided reductions in float64 and GEMMs in a different order
// than cpu's float32 loops, and GroupNorm's rsqrt(variance) amplifies those last-bit differences. Kernel
// bugs show up orders of magnitude above this (the cpu resize-gradient bug gave 0.77).
const NETWORK_TOLERANCE = 5e-4

describe('a small U-Net-like training computation agrees between wasm and cpu', () => {
  const names = Object.keys(unetShapes).sort()
  const initial = new Map(names.map((name, i) => [name, fixedValues(sizeOf(unetShapes[name]!), 100 + i)]))
  const xValues = fixedValues(2 * 8 * 8 * 3, 11)
  const makeInputs = () => ({
    x: tf.tensor4d(xValues, [2, 8, 8, 3]),
    classes: tf.tensor1d([3, 1], 'int32'),
  })

  it('loss and the gradients with respect to the input and every weight', async () => {
    await expectSameOnBothBackends(() => {
      const { x, classes } = makeInputs()
      const params = names.map((name) => tf.tensor(initial.get(name)!, unetShapes[name]))
      const lossOf = (...args: tf.Tensor[]) => {
        const [input, ...weights] = args
        return tinyUnetLoss(
          Object.fromEntries(names.map((n, i) => [n, weights[i]!])),
          input as tf.Tensor4D,
          classes,
        )
      }
      const { value, grads } = tf.valueAndGrads(lossOf)([x, ...params])
      return [value, ...grads]
    }, NETWORK_TOLERANCE)
  })

  it('three Adam steps reach the same weights', async () => {
    await expectSameOnBothBackends(() => {
      const { x, classes } = makeInputs()
      const variables = names.map((name) =>
        tf.variable(tf.tensor(initial.get(name)!, unetShapes[name]), true, undefined),
      )
      const optimizer = tf.train.adam(1e-2)
      const losses: tf.Tensor[] = []
      for (let step = 0; step < 3; step++) {
        const params = Object.fromEntries(names.map((n, i) => [n, variables[i]!]))
        losses.push(optimizer.minimize(() => tinyUnetLoss(params, x, classes), true)!)
      }
      const weights = variables.map((v) => tf.clone(v))
      optimizer.dispose()
      tf.dispose(variables)
      return [...losses, ...weights]
    }, NETWORK_TOLERANCE)
  })
})

describe('wasm reductions, slices and buffer sharing agree with the cpu backend', () => {
  const shape = [3, 4, 5, 2, 6]
  const values = fixedValues(sizeOf(shape), 21)
  const axisCases: (number | number[])[] = [
    [1, 2, 4],
    [0, 1, 2],
    [0],
    [4],
    [3, 4],
    [0, 2],
    [1, 3],
    [0, 1, 2, 3, 4],
    2,
  ]

  for (const axis of axisCases) {
    it(`sum and mean over axes ${JSON.stringify(axis)}, with and without keepDims`, async () => {
      await expectSameOnBothBackends(() => {
        const x = tf.tensor(values, shape)
        return [tf.sum(x, axis), tf.mean(x, axis, true), tf.sum(x, axis, true), tf.mean(x, axis)]
      }, 1e-5)
    })
  }

  it('integer sums keep their dtype', async () => {
    await expectSameOnBothBackends(() => {
      const x = tf.tensor([1, 2, 3, 4, 5, 6], [3, 2], 'int32')
      const sum = tf.sum(x, 0)
      expect(sum.dtype).toBe('int32')
      return [tf.cast(sum, 'float32')]
    }, 0)
  })

  it('slices of every rank, offset and extent', async () => {
    await expectSameOnBothBackends(() => {
      const x5 = tf.tensor(values, shape)
      const x2 = tf.tensor2d(values.subarray(0, 60), [6, 10])
      return [
        tf.slice(x5, [1, 0, 2, 1, 3], [2, 4, 3, 1, 2]),
        tf.slice(x5, [0, 1, 0, 0, 0], [-1, 2, -1, -1, -1]),
        tf.slice(x2, [2, 3], [3, 5]),
        tf.slice(tf.tensor1d(values.subarray(0, 9)), 4, 3),
      ]
    }, 0)
  })

  it('an identity or same-dtype cast keeps its values after the source is disposed', async () => {
    for (const name of ['cpu', 'wasm'] as const) {
      await tf.setBackend(name)
      const source = tf.tensor1d([1, 2, 3])
      const copies = [tf.clone(source), tf.cast(source, 'float32'), tf.variable(source)]
      source.dispose()
      for (const copy of copies) expect(Array.from(copy.dataSync())).toEqual([1, 2, 3])
      tf.dispose(copies)
    }
  })
})
