import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { expectCode } from './expect-code.ts'
import {
  bytesPerRoundDense,
  carriedRms,
  type Codec,
  compressDelta,
  decompressDelta,
  int8Scale,
  layoutOf,
  type NamedTensor,
  parseCodec,
  payloadMaxBytes,
  type TensorLayout,
  TOPK_CHUNK,
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

/** Through real safetensors bytes, as a peer receives it (with the model layout, as a peer holds it). */
function roundTrip(entries: TensorEntry[], layout: readonly TensorLayout[]): NamedTensor[] {
  return decompressDelta(decodeSafetensors(encodeSafetensors(entries)).tensors, layout)
}

describe('compressDelta / decompressDelta', () => {
  it('none is lossless through safetensors bytes', () => {
    fc.assert(
      fc.property(deltaArb, (delta) => {
        const { entries, residual } = compressDelta(delta, { kind: 'none' })
        const back = roundTrip(entries, layoutOf(delta))
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
        const back = roundTrip(entries, layoutOf(delta))
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
      { name: 'w', shape: [1000], data: Float32Array.from({ length: 1000 }, (_, i) => Math.sin(i + 0.5)) },
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
    expect(
      Array.from(
        roundTrip(entries, [
          { name: 'w', shape: [4] },
          { name: 'z', shape: [2] },
        ]).find((t) => t.name === 'z')!.data,
      ),
    ).toEqual([0, 0])
    // A subnormal tensor still survives: its scale is rounded up, never to zero.
    const tiny = compressDelta([{ name: 't', shape: [1], data: new Float32Array([2 ** -149]) }], {
      kind: 'int8',
    }).entries
    expect(roundTrip(tiny, [{ name: 't', shape: [1] }])[0]!.data[0]).toBe(2 ** -149)
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
          const sent = roundTrip(entries, layoutOf(delta))
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
    expect(Array.from(roundTrip(next.entries, [{ name: 'w', shape: [2, 3] }])[0]!.data)).toEqual([
      0, 0, 0, 2, 0, 0,
    ])
  })

  it('top-k 2-bit conserves mass with error feedback and keeps k per chunk of 256', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 1, max: 700 }), { minLength: 1, maxLength: 4 }),
        fc.double({ min: 0.001, max: 1, noNaN: true }),
        fc.integer({ min: 0, max: 1000 }),
        (sizes, fraction, seed) => {
          const delta = sizes.map((size, t) => ({
            name: `t${t}`,
            shape: [size],
            data: Float32Array.from({ length: size }, (_, i) =>
              Math.fround(Math.sin(seed * 7 + i * 1.3 + t) * (1 + (i % 5)) * 10 ** t),
            ),
          }))
          const oldResidual = delta.map((d) => ({
            ...d,
            data: Float32Array.from(d.data, (_, i) => Math.fround(Math.cos(seed + i) / 4)),
          }))
          const { entries, residual } = compressDelta(
            delta,
            { kind: 'topk', fraction, values: '2bit' },
            oldResidual,
          )
          expect(entries).toHaveLength(5)
          const sent = roundTrip(entries, delta)
          const k = topkCount(TOPK_CHUNK, fraction)
          let kept = 0
          for (const size of sizes) {
            const chunks = Math.ceil(size / TOPK_CHUNK)
            kept += (chunks - 1) * k + Math.min(k, size - (chunks - 1) * TOPK_CHUNK)
          }
          expect(entries.find((e) => e.name === '@topk.idx')!.data.length).toBe(k === TOPK_CHUNK ? 0 : kept)
          sent.forEach((tensor, t) => {
            // What was sent plus what is left is what there was to send, to float32 rounding of the residual.
            for (let i = 0; i < tensor.data.length; i++) {
              const input = Math.fround(delta[t]!.data[i]! + oldResidual[t]!.data[i]!)
              const scale = Math.max(Math.abs(input), Math.abs(tensor.data[i]!))
              expect(Math.abs(tensor.data[i]! + residual[t]!.data[i]! - input)).toBeLessThanOrEqual(
                scale * 2 ** -23,
              )
            }
            // Only two magnitudes per tensor travel.
            expect(
              new Set(
                Array.from(tensor.data)
                  .filter((v) => v !== 0)
                  .map(Math.abs),
              ).size,
            ).toBeLessThanOrEqual(2)
          })
        },
      ),
      { numRuns: 60 },
    )
  })

  it('top-k 2-bit: layout, levels and codes of a small example', () => {
    const data = new Float32Array(300)
    data[3] = -4
    data[10] = 1
    data[260] = 3
    data[299] = -1.2
    const bias = new Float32Array([0.5, -0.25])
    const delta = [
      { name: 'w', shape: [300], data },
      { name: 'b', shape: [2], data: bias },
    ]
    const { entries } = compressDelta(delta, { kind: 'topk', fraction: 2 / 256, values: '2bit' })
    const get = (name: string) => Array.from(entries.find((e) => e.name === name)!.data)
    expect(entries.map((e) => `${e.name}:${e.dtype}`)).toEqual([
      '@topk.chunk:I32',
      '@topk.count:I32',
      '@topk.idx:U8',
      '@topk.levels:F32',
      '@topk.val:U8',
    ])
    expect(get('@topk.chunk')).toEqual([256, 2])
    expect(get('@topk.count')).toEqual([2, 300]) // tensors in name order: b, w
    // b keeps both values; w's first chunk keeps offsets 3 and 10, its second 4 (260) and 43 (299).
    expect(get('@topk.idx')).toEqual([0, 1, 3, 10, 4, 43])
    // b: one value per level. w: magnitudes 1, 1.2, 3, 4 -> two-means {1, 1.2} -> 1.1 and {3, 4} -> 3.5.
    expect(get('@topk.levels')).toEqual([0.25, 0.5, Math.fround(1.1), 3.5])
    // Codes (sign<<1 | level), low bits first: b: 0.5 -> 1, -0.25 -> 2; w: -4 -> 3, 1 -> 0, 3 -> 1, -1.2 -> 2.
    expect(get('@topk.val')).toEqual([1 | (2 << 2) | (3 << 4) | (0 << 6), 1 | (2 << 2)])
    const [b, w] = roundTrip(entries, delta)
    expect(Array.from(b!.data)).toEqual([0.5, -0.25])
    expect([w!.data[3], w!.data[10], w!.data[260], w!.data[299]]).toEqual([
      -3.5,
      Math.fround(1.1),
      3.5,
      -Math.fround(1.1),
    ])
    expectCode(() => roundTrip(entries, [delta[0]!]), 'LAYOUT_MISMATCH')
    expectCode(
      () => roundTrip(entries, [delta[0]!, { name: 'b', shape: [3], data: new Float32Array(3) }]),
      'LAYOUT_MISMATCH',
    )
  })

  it('top-k 2-bit with fraction 1 is dense 2-bit: no offsets, a quarter byte per value', () => {
    const delta = [
      { name: 'w', shape: [1000], data: Float32Array.from({ length: 1000 }, (_, i) => Math.sin(i + 0.5)) },
    ]
    const { entries } = compressDelta(delta, { kind: 'topk', fraction: 1, values: '2bit' })
    expect(entries.find((e) => e.name === '@topk.idx')!.data.length).toBe(0)
    expect(entries.find((e) => e.name === '@topk.val')!.data.length).toBe(250)
    const [w] = roundTrip(entries, delta)
    expect(w!.data.every((v) => v !== 0)).toBe(true)
    expect(w!.data.every((v, i) => Math.sign(v) === Math.sign(delta[0]!.data[i]!))).toBe(true)
  })

  it('top-k 2-bit sends about 1.25 bytes per kept value plus a fixed header', () => {
    const delta = Array.from({ length: 20 }, (_, t) => ({
      name: `layer${t}.weight`,
      shape: [256, 16],
      data: Float32Array.from({ length: 4096 }, (_, i) => Math.sin(i + t)),
    }))
    const bytes = encodeSafetensors(
      compressDelta(delta, { kind: 'topk', fraction: 1 / 64, values: '2bit' }).entries,
    ).length
    const kept = 20 * 16 * 4
    expect(bytes).toBeGreaterThan(kept * 1.25)
    expect(bytes).toBeLessThan(kept * 1.25 + 20 * 12 + 400)
  })

  it('is deterministic: the same delta gives the same bytes', () => {
    fc.assert(
      fc.property(
        deltaArb,
        fc.constantFrom<'none' | 'int8' | 'topk' | 'topk2'>('none', 'int8', 'topk', 'topk2'),
        (delta, kind) => {
          const codec =
            kind === 'topk2'
              ? { kind: 'topk' as const, fraction: 0.3, values: '2bit' as const }
              : kind === 'topk'
                ? { kind, fraction: 0.3 }
                : { kind }
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
            : dtype === 'U8'
              ? Uint8Array.from(values)
              : Uint16Array.from(values)
    return { name, dtype, shape, data }
  }
  // [what, entries, the model's shape of tensor 'w', the charter's codec (optional), code]
  const malformed: [string, TensorEntry[], number[], Codec | undefined, string][] = [
    ['int8 without its scale', [entry('w', 'I8', [2], [1, 2])], [2], undefined, 'LAYOUT_MISMATCH'],
    [
      'int8 scale with two values',
      [entry('w', 'I8', [2], [1, 2]), entry('w.scale', 'F32', [2], [1, 1])],
      [2],
      undefined,
      'LAYOUT_MISMATCH',
    ],
    [
      'int8 negative scale',
      [entry('w', 'I8', [2], [1, 2]), entry('w.scale', 'F32', [1], [-1])],
      [2],
      undefined,
      'SCHEMA',
    ],
    [
      'int8 infinite scale',
      [entry('w', 'I8', [2], [1, 2]), entry('w.scale', 'F32', [1], [Infinity])],
      [2],
      undefined,
      'SCHEMA',
    ],
    [
      'int8 -128 outside the symmetric range',
      [entry('w', 'I8', [2], [-128, 2]), entry('w.scale', 'F32', [1], [1])],
      [2],
      undefined,
      'SCHEMA',
    ],
    [
      'int8 with a stray F32 entry',
      [entry('w', 'I8', [1], [1]), entry('w.scale', 'F32', [1], [1]), entry('x', 'F32', [1], [1])],
      [1],
      undefined,
      'LAYOUT_MISMATCH',
    ],
    [
      'int8 of another shape than the model’s',
      [entry('w', 'I8', [3], [1, 2, 3]), entry('w.scale', 'F32', [1], [1])],
      [2],
      undefined,
      'LAYOUT_MISMATCH',
    ],
    ['dense with a non-finite value', [entry('w', 'F32', [2], [1, NaN])], [2], undefined, 'SCHEMA'],
    ['dense with an F16 entry', [entry('w', 'F16', [1], [0])], [1], undefined, 'LAYOUT_MISMATCH'],
    [
      'dense tensor the model does not have',
      [entry('v', 'F32', [2], [1, 2])],
      [2],
      undefined,
      'LAYOUT_MISMATCH',
    ],
    ['dense of another shape', [entry('w', 'F32', [2, 1], [1, 2])], [2], undefined, 'LAYOUT_MISMATCH'],
    [
      'dense when the charter says int8',
      [entry('w', 'F32', [2], [1, 2])],
      [2],
      { kind: 'int8' },
      'LAYOUT_MISMATCH',
    ],
    [
      'top-k without values',
      [entry('w.idx', 'I32', [1], [0]), entry('w.shape', 'I32', [1], [3])],
      [3],
      undefined,
      'LAYOUT_MISMATCH',
    ],
    [
      'top-k without shape',
      [entry('w.idx', 'I32', [1], [0]), entry('w.val', 'F32', [1], [1])],
      [3],
      undefined,
      'LAYOUT_MISMATCH',
    ],
    [
      'top-k index out of range',
      [entry('w.idx', 'I32', [1], [3]), entry('w.val', 'F32', [1], [1]), entry('w.shape', 'I32', [1], [3])],
      [3],
      undefined,
      'SCHEMA',
    ],
    [
      'top-k negative index',
      [entry('w.idx', 'I32', [1], [-1]), entry('w.val', 'F32', [1], [1]), entry('w.shape', 'I32', [1], [3])],
      [3],
      undefined,
      'SCHEMA',
    ],
    [
      'top-k repeated index',
      [
        entry('w.idx', 'I32', [2], [1, 1]),
        entry('w.val', 'F32', [2], [1, 1]),
        entry('w.shape', 'I32', [1], [3]),
      ],
      [3],
      undefined,
      'SCHEMA',
    ],
    [
      'top-k descending indices',
      [
        entry('w.idx', 'I32', [2], [2, 1]),
        entry('w.val', 'F32', [2], [1, 1]),
        entry('w.shape', 'I32', [1], [3]),
      ],
      [3],
      undefined,
      'SCHEMA',
    ],
    [
      'top-k idx/val length mismatch',
      [
        entry('w.idx', 'I32', [2], [0, 1]),
        entry('w.val', 'F32', [1], [1]),
        entry('w.shape', 'I32', [1], [3]),
      ],
      [3],
      undefined,
      'LAYOUT_MISMATCH',
    ],
    [
      'top-k negative dimension',
      [entry('w.idx', 'I32', [1], [0]), entry('w.val', 'F32', [1], [1]), entry('w.shape', 'I32', [1], [-3])],
      [3],
      undefined,
      'LAYOUT_MISMATCH',
    ],
    [
      'top-k forged huge shape (2^40 elements; nothing dense is allocated)',
      [
        entry('w.idx', 'I32', [1], [0]),
        entry('w.val', 'F32', [1], [1]),
        entry('w.shape', 'I32', [2], [1 << 20, 1 << 20]),
      ],
      [3],
      undefined,
      'LAYOUT_MISMATCH',
    ],
    [
      'top-k forged shape of the right rank',
      [
        entry('w.idx', 'I32', [1], [0]),
        entry('w.val', 'F32', [1], [1]),
        entry('w.shape', 'I32', [1], [1 << 30]),
      ],
      [3],
      undefined,
      'LAYOUT_MISMATCH',
    ],
    [
      'top-k keeping more values than the charter’s fraction',
      [
        entry('w.idx', 'I32', [2], [0, 1]),
        entry('w.val', 'F32', [2], [1, 1]),
        entry('w.shape', 'I32', [1], [4]),
      ],
      [4],
      { kind: 'topk', fraction: 0.25 },
      'LAYOUT_MISMATCH',
    ],
    [
      'top-k non-finite value',
      [entry('w.idx', 'I32', [1], [0]), entry('w.val', 'F32', [1], [NaN]), entry('w.shape', 'I32', [1], [3])],
      [3],
      undefined,
      'SCHEMA',
    ],
  ]
  for (const [what, entries, shape, codec, code] of malformed) {
    it(`rejects ${what}`, () => {
      expectCode(
        () => decompressDelta(new Map(entries.map((e) => [e.name, e])), [{ name: 'w', shape }], codec),
        code,
      )
    })
  }
  for (const [what, entries, code] of twoBitMalformed()) {
    it(`rejects ${what}`, () => {
      expectCode(() => decompressDelta(new Map(entries.map((e) => [e.name, e])), TWO_BIT_LAYOUT), code)
    })
  }
  it('accepts the valid 2-bit payload the malformed cases start from', () => {
    const entries = twoBitMalformed()[0]![1]
    const valid = [
      ...entries,
      { name: '@topk.chunk', dtype: 'I32' as const, shape: [2], data: Int32Array.from([256, 2]) },
    ]
    const [b, w] = decompressDelta(new Map(valid.map((e) => [e.name, e])), TWO_BIT_LAYOUT)
    expect(Array.from(b!.data)).toEqual([-0.5, -0.5])
    expect([w!.data[3], w!.data[10], w!.data[260], w!.data[299]]).toEqual([-2, -2, -2, -2])
  })

  it('decodes against the layout: a correct payload of every codec fits, another model’s does not', () => {
    fc.assert(
      fc.property(
        deltaArb,
        fc.constantFrom<Codec>(
          { kind: 'none' },
          { kind: 'int8' },
          { kind: 'topk', fraction: 0.3 },
          { kind: 'topk', fraction: 0.3, values: '2bit' },
        ),
        (delta, codec) => {
          const entries = decodeSafetensors(encodeSafetensors(compressDelta(delta, codec).entries)).tensors
          expect(decompressDelta(entries, layoutOf(delta), codec).map((t) => t.name)).toEqual(
            layoutOf(delta).map((t) => t.name),
          )
          const other = layoutOf(delta).map((t) => ({ name: t.name, shape: [...t.shape, 2] }))
          expectCode(() => decompressDelta(entries, other, codec), 'LAYOUT_MISMATCH')
          expectCode(() => decompressDelta(entries, layoutOf(delta).slice(1), codec), 'LAYOUT_MISMATCH')
        },
      ),
    )
  })

  it('bounds a payload by the layout: every correct encoding fits payloadMaxBytes', () => {
    fc.assert(
      fc.property(
        deltaArb,
        fc.constantFrom<Codec>(
          { kind: 'none' },
          { kind: 'int8' },
          { kind: 'topk', fraction: 0.3 },
          { kind: 'topk', fraction: 0.3, values: '2bit' },
          { kind: 'topk', fraction: 1, values: '2bit' },
        ),
        (delta, codec) => {
          const bytes = encodeSafetensors(compressDelta(delta, codec).entries)
          expect(bytes.length).toBeLessThanOrEqual(payloadMaxBytes(layoutOf(delta), codec))
        },
      ),
    )
    // A dense model of 1M values: the bound stays within a few KB of the data it carries.
    const layout = [{ name: 'w', shape: [1000, 1000] }]
    expect(payloadMaxBytes(layout, { kind: 'none' })).toBeLessThan(4_000_000 + 1024)
    expect(payloadMaxBytes(layout, { kind: 'topk', fraction: 0.01 })).toBeLessThan(80_000 + 1024)
  })

  it("a 2-bit payload fits only the charter's 2-bit codec with its k per chunk", () => {
    const delta = [{ name: 'w', shape: [300], data: Float32Array.from({ length: 300 }, (_, i) => i - 150) }]
    const entries = decodeSafetensors(
      encodeSafetensors(compressDelta(delta, { kind: 'topk', fraction: 0.1, values: '2bit' }).entries),
    ).tensors
    expect(decompressDelta(entries, delta, { kind: 'topk', fraction: 0.1, values: '2bit' })).toHaveLength(1)
    expectCode(() => decompressDelta(entries, delta, { kind: 'topk', fraction: 0.1 }), 'LAYOUT_MISMATCH')
    expectCode(() => decompressDelta(entries, delta, { kind: 'int8' }), 'LAYOUT_MISMATCH')
    expectCode(
      () => decompressDelta(entries, delta, { kind: 'topk', fraction: 0.2, values: '2bit' }),
      'LAYOUT_MISMATCH',
    )
    // And an F32 top-k payload does not pass for the 2-bit codec.
    const f32 = decodeSafetensors(
      encodeSafetensors(compressDelta(delta, { kind: 'topk', fraction: 0.1 }).entries),
    ).tensors
    expectCode(
      () => decompressDelta(f32, delta, { kind: 'topk', fraction: 0.1, values: '2bit' }),
      'LAYOUT_MISMATCH',
    )
  })

  it('measures what a delta moves over the values its codec carries', () => {
    const delta = [
      { name: 'w', shape: [100], data: Float32Array.from({ length: 100 }, (_, i) => (i < 10 ? 3 : 0)) },
    ]
    expect(carriedRms(delta, { kind: 'none' })).toBeCloseTo(Math.sqrt(0.9), 12)
    // top-k 10%: ten carried values of 3.
    expect(carriedRms(delta, { kind: 'topk', fraction: 0.1 })).toBeCloseTo(3, 12)
    expect(carriedRms([{ name: 'w', shape: [4], data: new Float32Array(4) }], { kind: 'int8' })).toBe(0)
  })
})

/** The layout of the 2-bit malformed cases: tensors b [2] and w [300], k = 2 per chunk. */
const TWO_BIT_LAYOUT = [
  { name: 'w', shape: [300], data: new Float32Array(300) },
  { name: 'b', shape: [2], data: new Float32Array(2) },
]

/** A valid 2-bit payload for TWO_BIT_LAYOUT, with one entry replaced or removed. */
function twoBitMalformed(): [string, TensorEntry[], string][] {
  const u8 = (name: string, values: number[]): TensorEntry => ({
    name,
    dtype: 'U8',
    shape: [values.length],
    data: Uint8Array.from(values),
  })
  const i32 = (name: string, values: number[]): TensorEntry => ({
    name,
    dtype: 'I32',
    shape: [values.length],
    data: Int32Array.from(values),
  })
  const f32 = (name: string, values: number[]): TensorEntry => ({
    name,
    dtype: 'F32',
    shape: [values.length],
    data: Float32Array.from(values),
  })
  const valid: Record<string, TensorEntry> = {
    chunk: i32('@topk.chunk', [256, 2]),
    count: i32('@topk.count', [2, 300]),
    idx: u8('@topk.idx', [0, 1, 3, 10, 4, 43]),
    levels: f32('@topk.levels', [0.25, 0.5, 1, 2]),
    val: u8('@topk.val', [0xff, 0x0f]),
  }
  const variant = (what: string, part: string, replacement: TensorEntry | undefined, code = 'SCHEMA') =>
    [
      `top-k 2-bit ${what}`,
      Object.entries(valid)
        .filter(([key]) => key !== part || replacement !== undefined)
        .map(([key, e]) => (key === part ? (replacement as TensorEntry) : e)),
      code,
    ] as [string, TensorEntry[], string]
  return [
    variant('without chunk', 'chunk', undefined),
    variant('without counts', 'count', undefined),
    variant('without offsets', 'idx', undefined),
    variant('with another chunk size', 'chunk', i32('@topk.chunk', [128, 2])),
    variant('with k = 0', 'chunk', i32('@topk.chunk', [256, 0])),
    variant('with k above the chunk', 'chunk', i32('@topk.chunk', [256, 257])),
    variant(
      'with counts that differ from the model',
      'count',
      i32('@topk.count', [2, 301]),
      'LAYOUT_MISMATCH',
    ),
    variant('with a tensor missing from the counts', 'count', i32('@topk.count', [300]), 'LAYOUT_MISMATCH'),
    variant('with too few offsets', 'idx', u8('@topk.idx', [0, 1, 3, 10, 4])),
    variant('with descending offsets in a chunk', 'idx', u8('@topk.idx', [0, 1, 10, 3, 4, 43])),
    variant('with a repeated offset', 'idx', u8('@topk.idx', [0, 0, 3, 10, 4, 43])),
    variant('with an offset past the last chunk', 'idx', u8('@topk.idx', [0, 1, 3, 10, 4, 44])),
    variant('with I32 offsets', 'idx', i32('@topk.idx', [0, 1, 3, 10, 4, 43])),
    variant('with levels out of order', 'levels', f32('@topk.levels', [0.5, 0.25, 1, 2])),
    variant('with a negative level', 'levels', f32('@topk.levels', [-1, 0.5, 1, 2])),
    variant('with a non-finite level', 'levels', f32('@topk.levels', [0.25, 0.5, 1, Infinity])),
    variant('with levels for one tensor', 'levels', f32('@topk.levels', [0.25, 0.5])),
    variant('with missing value bytes', 'val', u8('@topk.val', [0xff])),
    variant('with an extra value byte', 'val', u8('@topk.val', [0xff, 0x0f, 0])),
    variant('with non-zero unused value bits', 'val', u8('@topk.val', [0xff, 0x1f])),
    ['top-k 2-bit with a stray entry', [...Object.values(valid), f32('w', [1])], 'SCHEMA'],
  ]
}

describe('parseCodec and bytesPerRoundDense', () => {
  it('parses the charter spellings and rejects others', () => {
    expect(parseCodec('none')).toEqual({ kind: 'none' })
    expect(parseCodec('int8')).toEqual({ kind: 'int8' })
    expect(parseCodec('topk:0.01')).toEqual({ kind: 'topk', fraction: 0.01 })
    expect(parseCodec('topk:0.0156:2bit')).toEqual({ kind: 'topk', fraction: 0.0156, values: '2bit' })
    expectCode(() => parseCodec('topk:0.01:4bit'), 'UNKNOWN_TYPE')
    expectCode(() => parseCodec('topk:0'), 'SCHEMA')
    expectCode(() => parseCodec('topk:1.5'), 'SCHEMA')
    expectCode(() => parseCodec('fp16'), 'UNKNOWN_TYPE')
  })

  it('counts H steps of dense fp32 gradients', () => {
    expect(bytesPerRoundDense(1_000_000, 50)).toBe(200_000_000)
  })
})
