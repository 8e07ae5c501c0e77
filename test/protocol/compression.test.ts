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

  it('top-k 2-bit conserves mass with error feedback and keeps k per chunk of 256', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 700 }),
        fc.double({ min: 0.001, max: 1, noNaN: true }),
        fc.integer({ min: 0, max: 1000 }),
        (size, fraction, seed) => {
          const delta = [
            {
              name: 'w',
              shape: [size],
              data: Float32Array.from({ length: size }, (_, i) =>
                Math.fround(Math.sin(seed * 7 + i * 1.3) * (1 + (i % 5))),
              ),
            },
          ]
          const oldResidual = [
            {
              name: 'w',
              shape: [size],
              data: Float32Array.from({ length: size }, (_, i) => Math.fround(Math.cos(seed + i) / 4)),
            },
          ]
          const { entries, residual } = compressDelta(
            delta,
            { kind: 'topk', fraction, values: '2bit' },
            oldResidual,
          )
          const sent = roundTrip(entries)[0]!
          const k = topkCount(TOPK_CHUNK, fraction)
          const lastLength = size - (Math.ceil(size / TOPK_CHUNK) - 1) * TOPK_CHUNK
          const kept = (Math.ceil(size / TOPK_CHUNK) - 1) * k + Math.min(k, lastLength)
          expect(entries.find((e) => e.name === 'w.idx')!.data.length).toBe(kept)
          expect(sent.data.filter((v) => v !== 0).length).toBeLessThanOrEqual(kept)
          // What was sent plus what is left is what there was to send, to float32 rounding of the residual.
          for (let i = 0; i < size; i++) {
            const input = Math.fround(delta[0]!.data[i]! + oldResidual[0]!.data[i]!)
            const scale = Math.max(Math.abs(input), Math.abs(sent.data[i]!))
            expect(Math.abs(sent.data[i]! + residual[0]!.data[i]! - input)).toBeLessThanOrEqual(
              scale * 2 ** -23,
            )
          }
          // Only two magnitudes travel, and the signs are kept.
          const magnitudes = new Set(
            Array.from(sent.data)
              .filter((v) => v !== 0)
              .map(Math.abs),
          )
          expect(magnitudes.size).toBeLessThanOrEqual(2)
        },
      ),
      { numRuns: 60 },
    )
  })

  it('top-k 2-bit: layout, levels and codes of a small example', () => {
    // One chunk, k = ceil(0.5 * 256) would keep everything: use a 2-element tensor per chunk logic.
    const data = new Float32Array(300)
    data[3] = -4
    data[10] = 1
    data[260] = 3
    data[299] = -1.2
    const { entries } = compressDelta([{ name: 'w', shape: [300], data }], {
      kind: 'topk',
      fraction: 2 / 256,
      values: '2bit',
    })
    const get = (name: string) => Array.from(entries.find((e) => e.name === name)!.data)
    expect(entries.map((e) => `${e.name}:${e.dtype}`)).toEqual([
      'w.chunk:I32',
      'w.idx:U8',
      'w.levels:F32',
      'w.shape:I32',
      'w.val:U8',
    ])
    expect(get('w.chunk')).toEqual([256, 2])
    expect(get('w.idx')).toEqual([3, 10, 4, 43]) // chunk 1 holds 260 and 299 at offsets 4 and 43
    // Magnitudes 1, 1.2, 3, 4: two-means gives {1, 1.2} -> 1.1 and {3, 4} -> 3.5.
    expect(get('w.levels')).toEqual([Math.fround(1.1), 3.5])
    // Codes (sign<<1 | level): -4 -> 3, 1 -> 0, 3 -> 1, -1.2 -> 2; packed low bits first.
    expect(get('w.val')).toEqual([3 | (0 << 2) | (1 << 4) | (2 << 6)])
    const back = roundTrip(entries)[0]!
    expect([back.data[3], back.data[10], back.data[260], back.data[299]]).toEqual([
      -3.5,
      Math.fround(1.1),
      3.5,
      -Math.fround(1.1),
    ])
  })

  it('top-k 2-bit sends about 2.25 bytes per kept value', () => {
    const data = Float32Array.from({ length: 256 * 64 }, (_, i) => Math.sin(i))
    const bytes = encodeSafetensors(
      compressDelta([{ name: 'w', shape: [256, 64], data }], {
        kind: 'topk',
        fraction: 1 / 64,
        values: '2bit',
      }).entries,
    ).length
    const kept = 64 * 4
    expect(bytes).toBeLessThan(kept * 2.25 + 400)
    expect(bytes).toBeGreaterThan(kept * 2.25)
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
    ...twoBitMalformed(),
  ]
  for (const [what, entries, code] of malformed) {
    it(`rejects ${what}`, () => {
      expectCode(() => decompressDelta(new Map(entries.map((e) => [e.name, e]))), code)
    })
  }
})

/** A valid 2-bit top-k tensor of 300 elements (k = 2 per chunk), with one part replaced. */
function twoBitMalformed(): [string, TensorEntry[], string][] {
  const valid: Record<string, TensorEntry> = {
    chunk: { name: 'w.chunk', dtype: 'I32', shape: [2], data: Int32Array.from([256, 2]) },
    idx: { name: 'w.idx', dtype: 'U8', shape: [4], data: Uint8Array.from([3, 10, 4, 43]) },
    levels: { name: 'w.levels', dtype: 'F32', shape: [2], data: Float32Array.from([1, 2]) },
    shape: { name: 'w.shape', dtype: 'I32', shape: [1], data: Int32Array.from([300]) },
    val: { name: 'w.val', dtype: 'U8', shape: [1], data: Uint8Array.from([0xff]) },
  }
  const variant = (
    what: string,
    part: string,
    replacement: TensorEntry | undefined,
    code = 'SCHEMA',
  ): [string, TensorEntry[], string] => [
    `top-k 2-bit ${what}`,
    Object.entries(valid)
      .filter(([key]) => key !== part || replacement !== undefined)
      .map(([key, e]) => (key === part ? (replacement as TensorEntry) : e)),
    code,
  ]
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
  return [
    variant('without chunk', 'chunk', undefined),
    variant('with another chunk size', 'chunk', i32('w.chunk', [128, 2])),
    variant('with k = 0', 'chunk', i32('w.chunk', [256, 0])),
    variant('with k above the chunk', 'chunk', i32('w.chunk', [256, 257])),
    variant('with too few offsets', 'idx', u8('w.idx', [3, 10, 4])),
    variant('with descending offsets in a chunk', 'idx', u8('w.idx', [10, 3, 4, 43])),
    variant('with an offset past the last chunk', 'idx', u8('w.idx', [3, 10, 4, 44])),
    variant('with levels out of order', 'levels', f32('w.levels', [2, 1])),
    variant('with a negative level', 'levels', f32('w.levels', [-1, 2])),
    variant('with a non-finite level', 'levels', f32('w.levels', [1, Number.POSITIVE_INFINITY])),
    variant('with three levels', 'levels', f32('w.levels', [1, 2, 3])),
    variant('with missing value bytes', 'val', u8('w.val', [])),
    variant('with an extra value byte', 'val', u8('w.val', [0xff, 0])),
    variant('with F32 values', 'val', f32('w.val', [1])),
    variant('with a forged huge shape', 'shape', i32('w.shape', [1 << 20, 1 << 20]), 'TOO_LARGE'),
    [
      'top-k layouts mixed in one payload',
      [...Object.values(valid), i32('x.idx', [0]), f32('x.val', [1]), i32('x.shape', [3])],
      'SCHEMA',
    ],
    [
      'top-k 2-bit with non-zero unused value bits',
      [
        { ...valid.chunk!, data: Int32Array.from([256, 3]) },
        u8('w.idx', [0, 1, 2]),
        valid.levels!,
        i32('w.shape', [3]),
        u8('w.val', [0xff]),
      ],
      'SCHEMA',
    ],
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
