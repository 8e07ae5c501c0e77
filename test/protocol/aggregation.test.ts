import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { expectCode } from './expect-code.ts'
import {
  type Aggregator,
  aggregateDeltas,
  type Contribution,
  deltaNorm,
  outerStep,
  parseAggregator,
} from '../../protocol/aggregation.ts'
import type { NamedTensor } from '../../protocol/compression.ts'
import { encodeSafetensors } from '../../protocol/safetensors.ts'

const SHAPES: Record<string, number[]> = { 'b.bias': [3], 'a.weight': [2, 2] }

function digestOf(i: number): string {
  return `sha256:${i.toString(16).padStart(64, '0')}`
}

const value = fc.float({ min: -100, max: 100, noNaN: true, noDefaultInfinity: true })

function tensorArb(name: string): fc.Arbitrary<NamedTensor> {
  const shape = SHAPES[name] as number[]
  const n = shape.reduce((a, b) => a * b, 1)
  return fc
    .array(value, { minLength: n, maxLength: n })
    .map((v) => ({ name, shape, data: Float32Array.from(v) }))
}

const deltaArb = fc.tuple(tensorArb('a.weight'), tensorArb('b.bias'))

const contributionsArb = (min: number, max: number): fc.Arbitrary<Contribution[]> =>
  fc
    .array(fc.tuple(fc.integer({ min: 1, max: 1000 }), deltaArb), { minLength: min, maxLength: max })
    .map((items) => items.map(([samples, delta], i) => ({ digest: digestOf(i * 7919 + 13), samples, delta })))

const aggregatorArb: fc.Arbitrary<Aggregator> = fc.oneof(
  fc.constant<Aggregator>({ kind: 'mean' }),
  fc.constant<Aggregator>({ kind: 'median' }),
  fc.constant<Aggregator>({ kind: 'trimmed', fraction: 0.25 }),
  fc.constant<Aggregator>({ kind: 'clip', norm: 5 }),
)

function bytesOf(tensors: NamedTensor[]): Buffer {
  return Buffer.from(
    encodeSafetensors(tensors.map((t) => ({ name: t.name, dtype: 'F32', shape: t.shape, data: t.data }))),
  )
}

function tensor(result: NamedTensor[], name: string): Float32Array {
  return result.find((t) => t.name === name)!.data
}

/** No weight cap: the tests of the weighting itself. */
const NO_CAP = { maxSamples: Number.MAX_SAFE_INTEGER }

describe('aggregateDeltas', () => {
  it('caps each weight at maxSamples: an inflated sample count weighs as an honest full round', () => {
    fc.assert(
      fc.property(contributionsArb(2, 5), fc.integer({ min: 1, max: 64 }), (contributions, cap) => {
        const inflated = contributions.map((c, i) =>
          i === 0 ? { ...c, samples: c.samples * 1000 + cap } : c,
        )
        const capped = contributions.map((c, i) => (i === 0 ? { ...c, samples: cap } : c))
        const clampedRest = (list: typeof contributions) =>
          list.map((c) => ({ ...c, samples: Math.min(c.samples, cap) }))
        for (const aggregator of [{ kind: 'mean' as const }, { kind: 'clip' as const, norm: 1 }]) {
          const a = aggregateDeltas(inflated, aggregator, { maxSamples: cap })
          const b = aggregateDeltas(clampedRest(capped), aggregator, NO_CAP)
          expect(bytesOf(a).equals(bytesOf(b))).toBe(true)
        }
      }),
    )
  })

  it('mean equals the sample-weighted average', () => {
    fc.assert(
      fc.property(contributionsArb(1, 6), (contributions) => {
        const result = aggregateDeltas(contributions, { kind: 'mean' }, NO_CAP)
        const total = contributions.reduce((s, c) => s + c.samples, 0)
        for (const name of Object.keys(SHAPES)) {
          const got = tensor(result, name)
          for (let i = 0; i < got.length; i++) {
            const expected =
              contributions.reduce((s, c) => s + c.samples * tensor(c.delta, name)[i]!, 0) / total
            expect(got[i]).toBeCloseTo(expected, 4)
          }
        }
      }),
    )
  })

  it('order of the contributions (and of their tensors) does not change the bytes of the result', () => {
    fc.assert(
      fc.property(contributionsArb(1, 7), aggregatorArb, fc.integer(), (contributions, aggregator, seed) => {
        const shuffled = [...contributions]
          .map((c, i) => ({ c: { ...c, delta: [...c.delta].reverse() }, key: Math.sin(seed + i) }))
          .sort((a, b) => a.key - b.key)
          .map((x) => x.c)
        expect(
          bytesOf(aggregateDeltas(shuffled, aggregator, NO_CAP)).equals(
            bytesOf(aggregateDeltas(contributions, aggregator, NO_CAP)),
          ),
        ).toBe(true)
      }),
    )
  })

  it('median and trimmed mean resist one outlier scaled x50; the mean does not', () => {
    fc.assert(
      fc.property(
        fc.array(deltaArb, { minLength: 4, maxLength: 7 }),
        fc.integer({ min: 0, max: 6 }),
        (deltas, attacker) => {
          const honest = deltas.map((delta, i) => ({ digest: digestOf(i + 1), samples: 100, delta }))
          const a = attacker % honest.length
          const attacked = honest.map((c, i) =>
            i === a ? { ...c, delta: c.delta.map((t) => ({ ...t, data: t.data.map((v) => v * 50) })) } : c,
          )
          // Robust aggregates stay inside the range of the honest values, coordinate by coordinate.
          for (const aggregator of [
            { kind: 'median' },
            { kind: 'trimmed', fraction: 0.25 },
          ] as Aggregator[]) {
            const result = aggregateDeltas(attacked, aggregator, NO_CAP)
            for (const name of Object.keys(SHAPES)) {
              const got = tensor(result, name)
              for (let i = 0; i < got.length; i++) {
                const honestValues = honest.filter((_, c) => c !== a).map((c) => tensor(c.delta, name)[i]!)
                expect(got[i]).toBeGreaterThanOrEqual(Math.min(...honestValues))
                expect(got[i]).toBeLessThanOrEqual(Math.max(...honestValues))
              }
            }
          }
        },
      ),
    )
    // And a concrete case where the mean is dragged far away while median/trimmed are not.
    const honest = [1, 2, 3, 4].map((v, i) => ({
      digest: digestOf(i + 1),
      samples: 10,
      delta: [{ name: 'w', shape: [1], data: new Float32Array([v]) }],
    }))
    const attacked = honest.map((c, i) =>
      i === 3 ? { ...c, delta: [{ name: 'w', shape: [1], data: new Float32Array([4 * 50]) }] } : c,
    )
    expect(aggregateDeltas(attacked, { kind: 'mean' }, NO_CAP)[0]!.data[0]).toBe(51.5)
    expect(aggregateDeltas(attacked, { kind: 'median' }, NO_CAP)[0]!.data[0]).toBe(2.5)
    expect(aggregateDeltas(attacked, { kind: 'trimmed', fraction: 0.25 }, NO_CAP)[0]!.data[0]).toBe(2.5)
  })

  it('norm clipping bounds every contribution to the clip norm before the weighted mean', () => {
    fc.assert(
      fc.property(
        contributionsArb(1, 6),
        fc.double({ min: 0.1, max: 50, noNaN: true }),
        (contributions, norm) => {
          const result = aggregateDeltas(contributions, { kind: 'clip', norm }, NO_CAP)
          // The weighted mean of vectors of norm <= clip has norm <= clip.
          expect(deltaNorm(result)).toBeLessThanOrEqual(norm * (1 + 1e-6))
          if (contributions.every((c) => deltaNorm(c.delta) <= norm))
            expect(
              bytesOf(result).equals(bytesOf(aggregateDeltas(contributions, { kind: 'mean' }, NO_CAP))),
            ).toBe(true)
        },
      ),
    )
    const one = [
      {
        digest: digestOf(1),
        samples: 1,
        delta: [{ name: 'w', shape: [2], data: new Float32Array([30, 40]) }],
      },
    ]
    expect(Array.from(aggregateDeltas(one, { kind: 'clip', norm: 5 }, NO_CAP)[0]!.data)).toEqual([3, 4])
  })

  it('median takes the middle of an odd count and the mean of the two middles of an even count', () => {
    const make = (values: number[]) =>
      values.map((v, i) => ({
        digest: digestOf(i + 1),
        samples: i + 1,
        delta: [{ name: 'w', shape: [1], data: new Float32Array([v]) }],
      }))
    expect(aggregateDeltas(make([5, -1, 3]), { kind: 'median' }, NO_CAP)[0]!.data[0]).toBe(3)
    expect(aggregateDeltas(make([5, -1, 3, 10]), { kind: 'median' }, NO_CAP)[0]!.data[0]).toBe(4)
    // trimmed 0.2 of 5 values drops one each side.
    expect(
      aggregateDeltas(make([100, 1, 2, 3, -100]), { kind: 'trimmed', fraction: 0.2 }, NO_CAP)[0]!.data[0],
    ).toBe(2)
  })

  it('rejects empty, duplicate, inconsistent and non-finite contributions', () => {
    const w = (data: number[], name = 'w') => [{ name, shape: [data.length], data: Float32Array.from(data) }]
    expectCode(() => aggregateDeltas([], { kind: 'mean' }, NO_CAP), 'SCHEMA')
    expectCode(
      () =>
        aggregateDeltas(
          [
            { digest: digestOf(1), samples: 1, delta: w([1]) },
            { digest: digestOf(1), samples: 1, delta: w([1]) },
          ],
          { kind: 'mean' },
          NO_CAP,
        ),
      'SCHEMA',
    )
    expectCode(
      () => aggregateDeltas([{ digest: digestOf(1), samples: 0, delta: w([1]) }], { kind: 'mean' }, NO_CAP),
      'SCHEMA',
    )
    expectCode(
      () =>
        aggregateDeltas(
          [
            { digest: digestOf(1), samples: 1, delta: w([1]) },
            { digest: digestOf(2), samples: 1, delta: w([1, 2]) },
          ],
          { kind: 'mean' },
          NO_CAP,
        ),
      'SCHEMA',
    )
    expectCode(
      () =>
        aggregateDeltas(
          [
            { digest: digestOf(1), samples: 1, delta: w([1]) },
            { digest: digestOf(2), samples: 1, delta: w([1], 'v') },
          ],
          { kind: 'mean' },
          NO_CAP,
        ),
      'SCHEMA',
    )
    expectCode(
      () =>
        aggregateDeltas(
          [{ digest: digestOf(1), samples: 1, delta: w([Number.NaN]) }],
          { kind: 'median' },
          NO_CAP,
        ),
      'SCHEMA',
    )
    expectCode(
      () =>
        aggregateDeltas(
          [{ digest: digestOf(1), samples: 1, delta: w([1]) }],
          {
            kind: 'trimmed',
            fraction: 0.5,
          },
          NO_CAP,
        ),
      'SCHEMA',
    )
    expectCode(
      () =>
        aggregateDeltas(
          [{ digest: digestOf(1), samples: 1, delta: w([1]) }],
          { kind: 'clip', norm: 0 },
          NO_CAP,
        ),
      'SCHEMA',
    )
  })
})

describe('outerStep', () => {
  it('is SGD with Nesterov momentum: v = mu*v + g, w = w - lr*(g + mu*v)', () => {
    const weights = [{ name: 'w', shape: [2], data: new Float32Array([1, -2]) }]
    const g = [{ name: 'w', shape: [2], data: new Float32Array([0.5, 0.25]) }]
    const first = outerStep(weights, undefined, g, { lr: 0.7, momentum: 0.9 })
    expect(Array.from(first.momentum[0]!.data)).toEqual([0.5, 0.25])
    expect(Array.from(first.weights[0]!.data)).toEqual([
      Math.fround(1 - 0.7 * (0.5 + 0.9 * 0.5)),
      Math.fround(-2 - 0.7 * (0.25 + 0.9 * 0.25)),
    ])
    const second = outerStep(first.weights, first.momentum, g, { lr: 0.7, momentum: 0.9 })
    const v = 0.9 * 0.5 + 0.5
    expect(second.momentum[0]!.data[0]).toBe(Math.fround(v))
    expect(second.weights[0]!.data[0]).toBe(Math.fround(first.weights[0]!.data[0]! - 0.7 * (0.5 + 0.9 * v)))
  })

  it('with lr 1 and no momentum it applies the averaged delta (FedAvg)', () => {
    fc.assert(
      fc.property(deltaArb, deltaArb, (weights, delta) => {
        const { weights: next } = outerStep(weights, undefined, delta, { lr: 1, momentum: 0 })
        for (const t of next) {
          const w = tensor(weights, t.name)
          const d = tensor(delta, t.name)
          // Equal as numbers: 0 - (-0) may come out as -0 or +0 depending on the order of the
          // operations, which is the same on every node, so it does not affect bit-exact recomputation.
          for (let i = 0; i < w.length; i++) expect(t.data[i]! + 0).toBe(Math.fround(w[i]! - d[i]!) + 0)
        }
      }),
    )
  })

  it('does not modify its inputs and rejects mismatched layouts and bad hyperparameters', () => {
    const weights = [{ name: 'w', shape: [1], data: new Float32Array([1]) }]
    const g = [{ name: 'w', shape: [1], data: new Float32Array([1]) }]
    outerStep(weights, undefined, g, { lr: 0.7, momentum: 0.9 })
    expect(weights[0]!.data[0]).toBe(1)
    expectCode(
      () =>
        outerStep(weights, undefined, [{ name: 'v', shape: [1], data: new Float32Array([1]) }], {
          lr: 0.7,
          momentum: 0.9,
        }),
      'SCHEMA',
    )
    expectCode(() => outerStep(weights, undefined, g, { lr: 0, momentum: 0.9 }), 'SCHEMA')
    expectCode(() => outerStep(weights, undefined, g, { lr: 0.7, momentum: 1 }), 'SCHEMA')
  })
})

describe('parseAggregator', () => {
  it('parses the charter spellings and rejects others', () => {
    expect(parseAggregator('mean')).toEqual({ kind: 'mean' })
    expect(parseAggregator('median')).toEqual({ kind: 'median' })
    expect(parseAggregator('trimmed:0.2')).toEqual({ kind: 'trimmed', fraction: 0.2 })
    expect(parseAggregator('clip:2.5')).toEqual({ kind: 'clip', norm: 2.5 })
    expectCode(() => parseAggregator('trimmed:0.6'), 'SCHEMA')
    expectCode(() => parseAggregator('krum'), 'UNKNOWN_TYPE')
  })
})
