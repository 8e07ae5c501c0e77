import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { expectCode } from './expect-code.ts'
import {
  bytesPerRoundDense,
  compressDelta,
  decompressDelta,
  int8Scale,
  type NamedTensor,
  parseCodec,
  topkCount,
} from '../../protocol/compression.ts'
import { decodeSafetensors, encodeSafetensors, type TensorEntry } from '../../protocol/safetensors.ts'

const finite = fc.float({ min: -1e6, max: 1e6, noNaN: true, noDefaultInfinity: true })

/** A delta of 1-3 tensors with distinct names and small random shapes. */
const deltaArb: fc.Arbitrary<NamedTensor[]> = fc
  .uniqueArray(fc.constantFrom('a.weight', 'b.bias', 'c.norm.scale', 'd'), { minLength: 1, maxLength: 3 })
  .chain((names) =>
    fc.tuple(
      ...names.map((name) =>
        fc
          .tuple(fc.integer({ min: 1, max: 5 }), fc.integer({ min: 1, max: 7 }))
          .chain(([r, c]) =>
            fc
              .array(finite, { minLength: r * c, maxLength: r * c })
              .map((v) => ({ name, shape: [r, c], data: Float32Array.from(v) })),
          ),
      ),
    ),
  )

/** Through real safetensors bytes, as a peer receives it. */
function roundTrip(entries: TensorEntry[]): NamedTensor[] {
  return decompressDelta(decodeSafetensors(encodeSafetensors(entries)).tensors)
}

describe('compressDelta / decompressDelta', () => {
  it('none is lossless through safetensors bytes', () => {
    fc.assert(
      fc.property(deltaArb, (delta) => {
        const { entries, residual } = compressDelta(delta, { kind: 'none' })
        const back = roundTrip(entries)
        const byName = new Map(delta.map((t) => [t.name, t]))
        for (const t of back) expect(Array.from(t.data)).toEqual(Array.from(byName.get(t.name)!.data))
        for (const r of residual) expect(r.data.every((v) => v === 0)).toBe(true)
      }),
    )
  })

  it('int8 round trip errs by at most scale/2 per value (plus float32 rounding of the product)', () => {
    fc.assert(
      fc.property(deltaArb, (delta) => {
        const { entries } = compressDelta(delta, { kind: 'int8' })
        const scales = new Map(
          entries
            .filter((e) => e.name.endsWith('.scale') && e.dtype === 'F32')
            .map((e) => [e.name.slice(0, -6), e.data[0] as number]),
        )
        const back = roundTrip(entries)
        for (const t of back) {
          const original = delta.find((d) => d.name === t.name)!
          const scale = scales.get(t.name)!
          let maxAbs = 0
          for (const v of original.data) maxAbs = Math.max(maxAbs, Math.abs(v))
          expect(scale).toBe(int8Scale(maxAbs))
          expect(scale * 127).toBeGreaterThanOrEqual(maxAbs)
          for (let i = 0; i < t.data.length; i++) {
            const x = original.data[i]!
            expect(Math.abs(x - t.data[i]!)).toBeLessThanOrEqual(
              scale / 2 + Math.abs(x) * 2 ** -23 + 2 ** -150,
            )
          }
        }
      }),
    )
  })

  it('int8 stores one byte per value plus one F32 scale per tensor', () => {
    const delta = [
      { name: 'w', shape: [1000], data: Float32Array.from({ length: 1000 }, (_, i) => Math.sin(i)) },
    ]
    const bytes = encodeSafetensors(compressDelta(delta, { kind: 'int8' }).entries)
    const dense = encodeSafetensors(compressDelta(delta, { kind: 'none' }).entries)
    expect(bytes.length).toBeLessThan(1000 + 200)
    expect(dense.length).toBeGreaterThan(4000)
  })

  it('int8 encodes x and -x symmetrically and an all-zero tensor as zero', () => {
    const { entries } = compressDelta(
      [
        { name: 'w', shape: [4], data: new Float32Array([1, -1, 0.5, -0.5]) },
        { name: 'z', shape: [2], data: new Float32Array([0, 0]) },
      ],
      { kind: 'int8' },
    )
    const q = Array.from(entries.find((e) => e.name === 'w')!.data)
    expect(q.slice(0, 2)).toEqual([127, -127])
    expect(q[2]).toBe(-q[3]!)
    expect(Math.abs(q[2]! - 63.5)).toBe(0.5)
    expect(Array.from(roundTrip(entries).find((t) => t.name === 'z')!.data)).toEqual([0, 0])
    // A subnormal tensor still survives: its scale is rounded up, never to zero.
    const tiny = compressDelta([{ name: 't', shape: [1], data: new Float32Array([2 ** -149]) }], {
      kind: 'int8',
    }).entries
    expect(roundTrip(tiny)[0]!.data[0]).toBe(2 ** -149)
  })

  it('top-k with error feedback conserves mass: sent + new residual = input + old residual', () => {
    fc.assert(
      fc.property(
        deltaArb,
        fc.double({ min: 0.01, max: 1, noNaN: true }),
        fc.integer({ min: 0, max: 1000 }),
        (delta, fraction, seed) => {
          const oldResidual = delta.map((t) => ({
            name: t.name,
            shape: t.shape,
            data: t.data.map((_, i) => Math.fround(Math.sin(seed + i) * 10)),
          }))
          const { entries, residual } = compressDelta(delta, { kind: 'topk', fraction }, oldResidual)
          const sent = roundTrip(entries)
          for (const t of sent) {
            const input = delta.find((d) => d.name === t.name)!
            const old = oldResidual.find((d) => d.name === t.name)!
            const left = residual.find((d) => d.name === t.name)!
            expect(entries.find((e) => e.name === `${t.name}.idx`)!.data.length).toBe(
              topkCount(t.data.length, fraction),
            )
            for (let i = 0; i < t.data.length; i++)
              expect(t.data[i]! + left.data[i]!).toBe(Math.fround(input.data[i]! + old.data[i]!))
          }
        },
      ),
    )
  })

  it('top-k keeps the largest magnitudes, the first index on ties', () => {
    const { entries, residual } = compressDelta(
      [{ name: 'w', shape: [2, 3], data: new Float32Array([0.1, -5, 2, 2, 0, -3]) }],
      {
        kind: 'topk',
        fraction: 0.5,
      },
    )
    expect(Array.from(entries.find((e) => e.name === 'w.idx')!.data)).toEqual([1, 2, 5])
    expect(Array.from(entries.find((e) => e.name === 'w.val')!.data)).toEqual([-5, 2, -3])
    expect(Array.from(entries.find((e) => e.name === 'w.shape')!.data)).toEqual([2, 3])
    expect(Array.from(residual[0]!.data)).toEqual([Math.fround(0.1), 0, 0, 2, 0, 0])
    // The residual is sent next round: the value left behind is now the largest.
    const next = compressDelta(
      [{ name: 'w', shape: [2, 3], data: new Float32Array(6) }],
      { kind: 'topk', fraction: 0.1 },
      residual,
    )
    expect(Array.from(roundTrip(next.entries)[0]!.data)).toEqual([0, 0, 0, 2, 0, 0])
  })

  it('is deterministic: the same delta gives the same bytes', () => {
    fc.assert(
      fc.property(
        deltaArb,
        fc.constantFrom<'none' | 'int8' | 'topk'>('none', 'int8', 'topk'),
        (delta, kind) => {
          const codec = kind === 'topk' ? { kind, fraction: 0.3 } : { kind }
          const a = encodeSafetensors(compressDelta(delta, codec).entries)
          const b = encodeSafetensors(compressDelta([...delta].reverse(), codec).entries)
          expect(Buffer.from(a).equals(Buffer.from(b))).toBe(true)
        },
      ),
    )
  })

  it('rejects non-finite deltas and mismatched residuals', () => {
    expectCode(
      () =>
        compressDelta([{ name: 'w', shape: [2], data: new Float32Array([1, Number.NaN]) }], { kind: 'int8' }),
      'SCHEMA',
    )
    expectCode(
      () =>
        compressDelta([{ name: 'w', shape: [2], data: new Float32Array(2) }], { kind: 'int8' }, [
          { name: 'w', shape: [3], data: new Float32Array(3) },
        ]),
      'SCHEMA',
    )
    expectCode(
      () =>
        compressDelta([{ name: 'w', shape: [2], data: new Float32Array(2) }], { kind: 'int8' }, [
          { name: 'v', shape: [2], data: new Float32Array(2) },
        ]),
      'SCHEMA',
    )
  })

  const entry = (
    name: string,
    dtype: TensorEntry['dtype'],
    shape: number[],
    values: number[],
  ): TensorEntry => {
    const data =
      dtype === 'F32'
        ? Float32Array.from(values)
        : dtype === 'I8'
          ? Int8Array.from(values)
          : dtype === 'I32'
            ? Int32Array.from(values)
            : Uint16Array.from(values)
    return { name, dtype, shape, data }
  }
  const malformed: [string, TensorEntry[], string][] = [
    ['int8 without its scale', [entry('w', 'I8', [2], [1, 2])], 'SCHEMA'],
    [
      'int8 scale with two values',
      [entry('w', 'I8', [2], [1, 2]), entry('w.scale', 'F32', [2], [1, 1])],
      'SCHEMA',
    ],
    ['int8 negative scale', [entry('w', 'I8', [2], [1, 2]), entry('w.scale', 'F32', [1], [-1])], 'SCHEMA'],
    [
      'int8 infinite scale',
      [entry('w', 'I8', [2], [1, 2]), entry('w.scale', 'F32', [1], [Infinity])],
      'SCHEMA',
    ],
    [
      'int8 -128 outside the symmetric range',
      [entry('w', 'I8', [2], [-128, 2]), entry('w.scale', 'F32', [1], [1])],
      'SCHEMA',
    ],
    [
      'int8 with a stray F32 entry',
      [entry('w', 'I8', [1], [1]), entry('w.scale', 'F32', [1], [1]), entry('x', 'F32', [1], [1])],
      'SCHEMA',
    ],
    ['dense with a non-finite value', [entry('w', 'F32', [2], [1, NaN])], 'SCHEMA'],
    ['dense with an F16 entry', [entry('w', 'F16', [1], [0])], 'SCHEMA'],
    ['top-k without values', [entry('w.idx', 'I32', [1], [0]), entry('w.shape', 'I32', [1], [3])], 'SCHEMA'],
    ['top-k without shape', [entry('w.idx', 'I32', [1], [0]), entry('w.val', 'F32', [1], [1])], 'SCHEMA'],
    [
      'top-k index out of range',
      [entry('w.idx', 'I32', [1], [3]), entry('w.val', 'F32', [1], [1]), entry('w.shape', 'I32', [1], [3])],
      'SCHEMA',
    ],
    [
      'top-k negative index',
      [entry('w.idx', 'I32', [1], [-1]), entry('w.val', 'F32', [1], [1]), entry('w.shape', 'I32', [1], [3])],
      'SCHEMA',
    ],
    [
      'top-k repeated index',
      [
        entry('w.idx', 'I32', [2], [1, 1]),
        entry('w.val', 'F32', [2], [1, 1]),
        entry('w.shape', 'I32', [1], [3]),
      ],
      'SCHEMA',
    ],
    [
      'top-k descending indices',
      [
        entry('w.idx', 'I32', [2], [2, 1]),
        entry('w.val', 'F32', [2], [1, 1]),
        entry('w.shape', 'I32', [1], [3]),
      ],
      'SCHEMA',
    ],
    [
      'top-k idx/val length mismatch',
      [
        entry('w.idx', 'I32', [2], [0, 1]),
        entry('w.val', 'F32', [1], [1]),
        entry('w.shape', 'I32', [1], [3]),
      ],
      'SCHEMA',
    ],
    [
      'top-k negative dimension',
      [entry('w.idx', 'I32', [1], [0]), entry('w.val', 'F32', [1], [1]), entry('w.shape', 'I32', [1], [-3])],
      'SCHEMA',
    ],
    [
      'top-k forged huge shape',
      [
        entry('w.idx', 'I32', [1], [0]),
        entry('w.val', 'F32', [1], [1]),
        entry('w.shape', 'I32', [2], [1 << 20, 1 << 20]),
      ],
      'TOO_LARGE',
    ],
    [
      'top-k non-finite value',
      [entry('w.idx', 'I32', [1], [0]), entry('w.val', 'F32', [1], [NaN]), entry('w.shape', 'I32', [1], [3])],
      'SCHEMA',
    ],
  ]
  for (const [what, entries, code] of malformed) {
    it(`rejects ${what}`, () => {
      expectCode(() => decompressDelta(new Map(entries.map((e) => [e.name, e]))), code)
    })
  }
})

describe('parseCodec and bytesPerRoundDense', () => {
  it('parses the charter spellings and rejects others', () => {
    expect(parseCodec('none')).toEqual({ kind: 'none' })
    expect(parseCodec('int8')).toEqual({ kind: 'int8' })
    expect(parseCodec('topk:0.01')).toEqual({ kind: 'topk', fraction: 0.01 })
    expectCode(() => parseCodec('topk:0'), 'SCHEMA')
    expectCode(() => parseCodec('topk:1.5'), 'SCHEMA')
    expectCode(() => parseCodec('fp16'), 'UNKNOWN_TYPE')
  })

  it('counts H steps of dense fp32 gradients', () => {
    expect(bytesPerRoundDense(1_000_000, 50)).toBe(200_000_000)
  })
})
