import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { expectCode } from './expect-code.ts'
import { ProtocolError } from '../../protocol/errors.ts'
import {
  decodeSafetensors,
  encodeSafetensors,
  float16BitsToFloat32,
  float32ToFloat16Bits,
  type TensorEntry,
} from '../../protocol/safetensors.ts'

/** A reader written from the format description alone, sharing no code with the codec under test. */
function minimalRead(bytes: Uint8Array): { header: Record<string, any>; data: Uint8Array } {
  const n = Number(Buffer.from(bytes).readBigUInt64LE(0))
  const header = JSON.parse(Buffer.from(bytes.subarray(8, 8 + n)).toString('utf8'))
  return { header, data: bytes.subarray(8 + n) }
}

const sample: TensorEntry[] = [
  { name: 'unet.out.weight', dtype: 'F32', shape: [2, 3], data: new Float32Array([1, -2, 3.5, 0, 1e-8, -0]) },
  { name: 'delta.q', dtype: 'I8', shape: [4], data: new Int8Array([-128, -1, 0, 127]) },
  { name: 'delta.q.scale', dtype: 'F32', shape: [1], data: new Float32Array([0.125]) },
  { name: 'ae.half', dtype: 'F16', shape: [3], data: new Uint16Array([0x3c00, 0xc000, 0x7bff]) },
  { name: 'topk.idx', dtype: 'I32', shape: [2], data: new Int32Array([7, 2147483647]) },
  { name: 'scalar', dtype: 'F32', shape: [], data: new Float32Array([42]) },
  { name: 'empty', dtype: 'F32', shape: [0, 5], data: new Float32Array(0) },
]

describe('safetensors codec', () => {
  it('writes the documented layout that an independent reader parses', () => {
    const bytes = encodeSafetensors(sample, { format: 'pt', round: '3' })
    const { header, data } = minimalRead(bytes)
    const n = Number(Buffer.from(bytes).readBigUInt64LE(0))
    expect(n % 8).toBe(0)
    expect(header.__metadata__).toEqual({ format: 'pt', round: '3' })
    const names = Object.keys(header).filter((k) => k !== '__metadata__')
    expect(names).toEqual([...names].sort())
    let cursor = 0
    for (const name of names) {
      const info = header[name]
      expect(info.data_offsets[0]).toBe(cursor)
      cursor = info.data_offsets[1]
    }
    expect(cursor).toBe(data.length)
    const w = header['unet.out.weight']
    const floats = new Float32Array(data.slice(w.data_offsets[0], w.data_offsets[1]).buffer)
    expect(Array.from(floats)).toEqual(Array.from(sample[0]!.data))
    expect(w.shape).toEqual([2, 3])
    const q = header['delta.q']
    expect(q.dtype).toBe('I8')
    expect(Array.from(new Int8Array(data.slice(q.data_offsets[0], q.data_offsets[1]).buffer))).toEqual([
      -128, -1, 0, 127,
    ])
  })

  it('round-trips every dtype and is deterministic regardless of input order', () => {
    const a = encodeSafetensors(sample)
    const b = encodeSafetensors([...sample].reverse())
    expect(Buffer.from(a).equals(Buffer.from(b))).toBe(true)
    const decoded = decodeSafetensors(a)
    expect(decoded.metadata).toEqual({})
    expect([...decoded.tensors.keys()].sort()).toEqual(sample.map((t) => t.name).sort())
    for (const t of sample) {
      const got = decoded.tensors.get(t.name)!
      expect(got.dtype).toBe(t.dtype)
      expect(got.shape).toEqual(t.shape)
      expect(got.data.constructor).toBe(t.data.constructor)
      expect(Array.from(got.data as ArrayLike<number>)).toEqual(Array.from(t.data as ArrayLike<number>))
    }
  })

  it('is readable by numpy from the format description (when python3 + numpy are present)', () => {
    let hasNumpy = true
    try {
      execFileSync('python3', ['-c', 'import numpy'], { stdio: 'ignore' })
    } catch {
      hasNumpy = false
    }
    if (!hasNumpy) return
    const dir = mkdtempSync(join(tmpdir(), 'st-'))
    try {
      const file = join(dir, 'x.safetensors')
      writeFileSync(file, encodeSafetensors(sample))
      const script = `
import json, struct, sys, numpy as np
b = open(sys.argv[1], 'rb').read()
n = struct.unpack('<Q', b[:8])[0]
h = json.loads(b[8:8+n])
d = b[8+n:]
dt = {'F32': '<f4', 'F16': '<f2', 'I8': 'i1', 'I32': '<i4'}
out = {}
for k, v in h.items():
    if k == '__metadata__': continue
    s, e = v['data_offsets']
    out[k] = np.frombuffer(d[s:e], dtype=dt[v['dtype']]).reshape(v['shape']).astype(float).tolist()
print(json.dumps(out))
`
      const out = JSON.parse(execFileSync('python3', ['-c', script, file], { encoding: 'utf8' }))
      expect(out['unet.out.weight'][0]).toEqual([1, -2, 3.5])
      expect(out['ae.half']).toEqual([1, -2, 65504])
      expect(out['topk.idx']).toEqual([7, 2147483647])
      expect(out.scalar).toBe(42)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('rejects malformed files with typed codes', () => {
    const good = encodeSafetensors(sample)
    const n = Number(Buffer.from(good).readBigUInt64LE(0))
    const withHeader = (json: string, data = new Uint8Array(0)): Uint8Array => {
      const h = Buffer.from(json)
      const out = new Uint8Array(8 + h.length + data.length)
      new DataView(out.buffer).setBigUint64(0, BigInt(h.length), true)
      out.set(h, 8)
      out.set(data, 8 + h.length)
      return out
    }
    const table: [string, Uint8Array, string][] = [
      ['empty file', new Uint8Array(0), 'TRUNCATED'],
      ['7 bytes', new Uint8Array(7), 'TRUNCATED'],
      ['header length past end', good.subarray(0, 8 + n - 1), 'TRUNCATED'],
      [
        'huge declared header',
        (() => {
          const b = new Uint8Array(16)
          new DataView(b.buffer).setBigUint64(0, 2n ** 60n, true)
          return b
        })(),
        'TOO_LARGE',
      ],
      ['data cut short', good.subarray(0, good.length - 1), 'TRUNCATED'],
      ['trailing byte', Uint8Array.from([...good, 0]), 'SCHEMA'],
      ['not json', withHeader('{nope'), 'INVALID_JSON'],
      ['array header', withHeader('[1]'), 'INVALID_JSON'],
      [
        'invalid utf-8',
        withHeader('{"\xff":1}'.replace('\xff', '\uFFFF')).map((b, i) => (i === 10 ? 0xff : b)),
        'INVALID_JSON',
      ],
      [
        'unknown dtype',
        withHeader('{"a":{"dtype":"BF16","shape":[1],"data_offsets":[0,2]}}', new Uint8Array(2)),
        'UNKNOWN_TYPE',
      ],
      [
        'shape/bytes mismatch',
        withHeader('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}', new Uint8Array(4)),
        'SCHEMA',
      ],
      ['negative dim', withHeader('{"a":{"dtype":"I8","shape":[-1],"data_offsets":[0,0]}}'), 'SCHEMA'],
      [
        'overlap',
        withHeader(
          '{"a":{"dtype":"I8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"I8","shape":[2],"data_offsets":[1,3]}}',
          new Uint8Array(3),
        ),
        'SCHEMA',
      ],
      [
        'gap',
        withHeader('{"a":{"dtype":"I8","shape":[1],"data_offsets":[1,2]}}', new Uint8Array(2)),
        'SCHEMA',
      ],
      [
        'offsets past end',
        withHeader('{"a":{"dtype":"I8","shape":[4],"data_offsets":[0,4]}}', new Uint8Array(2)),
        'TRUNCATED',
      ],
      [
        'extra field',
        withHeader('{"a":{"dtype":"I8","shape":[1],"data_offsets":[0,1],"x":1}}', new Uint8Array(1)),
        'SCHEMA',
      ],
      ['non-string metadata', withHeader('{"__metadata__":{"a":1}}'), 'SCHEMA'],
      [
        'fractional offset',
        withHeader('{"a":{"dtype":"I8","shape":[1],"data_offsets":[0,1.5]}}', new Uint8Array(1)),
        'SCHEMA',
      ],
    ]
    for (const [label, bytes, code] of table) {
      try {
        decodeSafetensors(bytes)
        throw new Error(`${label}: accepted`)
      } catch (error) {
        expect(error, label).toBeInstanceOf(ProtocolError)
        expect((error as ProtocolError).code, label).toBe(code)
      }
    }
    expectCode(() => decodeSafetensors(good, { maxBytes: good.length - 1 }), 'TOO_LARGE')
    expectCode(() => decodeSafetensors(good, { maxTensors: sample.length - 1 }), 'TOO_LARGE')
  })

  it('refuses to encode inconsistent tensors', () => {
    expectCode(
      () => encodeSafetensors([{ name: 'a', dtype: 'F32', shape: [3], data: new Float32Array(2) }]),
      'SCHEMA',
    )
    expectCode(
      () => encodeSafetensors([{ name: 'a', dtype: 'F16', shape: [2], data: new Float32Array(2) }]),
      'SCHEMA',
    )
    expectCode(
      () =>
        encodeSafetensors([
          { name: 'a', dtype: 'I8', shape: [1], data: new Int8Array(1) },
          { name: 'a', dtype: 'I8', shape: [1], data: new Int8Array(1) },
        ]),
      'SCHEMA',
    )
    expectCode(
      () => encodeSafetensors([{ name: '__metadata__', dtype: 'I8', shape: [1], data: new Int8Array(1) }]),
      'SCHEMA',
    )
  })

  it('property: decode(encode(x)) == x for arbitrary tensors', () => {
    const tensor = fc.record({
      name: fc.string({ minLength: 1, maxLength: 20 }).filter((s) => s !== '__metadata__'),
      shape: fc.array(fc.integer({ min: 0, max: 4 }), { maxLength: 3 }),
      dtype: fc.constantFrom('F32' as const, 'I8' as const, 'I32' as const, 'F16' as const),
      seed: fc.integer(),
    })
    fc.assert(
      fc.property(
        fc.uniqueArray(tensor, { selector: (t) => t.name, maxLength: 6 }),
        fc.dictionary(fc.string(), fc.string(), { maxKeys: 3 }),
        (specs, metadata) => {
          const tensors: TensorEntry[] = specs.map(({ name, shape, dtype, seed }) => {
            const count = shape.reduce((a, b) => a * b, 1)
            const values = Array.from({ length: count }, (_, i) => ((seed + i * 7919) % 256) - 128)
            const data =
              dtype === 'F32'
                ? Float32Array.from(values, (v) => v / 3)
                : dtype === 'I8'
                  ? Int8Array.from(values)
                  : dtype === 'I32'
                    ? Int32Array.from(values, (v) => v * 65537)
                    : Uint16Array.from(values, (v) => v & 0x7bff)
            return { name, dtype, shape, data }
          })
          const bytes = encodeSafetensors(tensors, metadata)
          const decoded = decodeSafetensors(bytes)
          expect(decoded.metadata).toEqual(metadata)
          expect(decoded.tensors.size).toBe(tensors.length)
          for (const t of tensors) {
            const got = decoded.tensors.get(t.name)!
            expect(got.shape).toEqual(t.shape)
            expect(
              Buffer.from(got.data.buffer, got.data.byteOffset, got.data.byteLength).equals(
                Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength),
              ),
            ).toBe(true)
          }
        },
      ),
      { numRuns: 200 },
    )
  })

  it('property: arbitrary bytes and mutations give either data or a ProtocolError, never another throw', () => {
    const good = encodeSafetensors(sample, { k: 'v' })
    const check = (bytes: Uint8Array) => {
      try {
        decodeSafetensors(bytes)
      } catch (error) {
        expect(error).toBeInstanceOf(ProtocolError)
      }
    }
    fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), check), { numRuns: 500 })
    fc.assert(
      fc.property(fc.nat(good.length - 1), fc.integer({ min: 1, max: 255 }), (index, xor) => {
        const mutated = Uint8Array.from(good)
        mutated[index] = (mutated[index] as number) ^ xor
        check(mutated)
      }),
      { numRuns: 1000 },
    )
  })
})

describe('float16 conversion', () => {
  it('matches IEEE round-to-nearest-even for representative values', () => {
    const cases: [number, number][] = [
      [0, 0x0000],
      [-0, 0x8000],
      [1, 0x3c00],
      [-2, 0xc000],
      [65504, 0x7bff],
      [65520, 0x7c00],
      [1e9, 0x7c00],
      [2 ** -24, 0x0001],
      [2 ** -25, 0x0000],
      [3 * 2 ** -26, 0x0001],
      [2 ** -14, 0x0400],
      [Infinity, 0x7c00],
      [-Infinity, 0xfc00],
      [1 + 2 ** -11, 0x3c00],
      [1 + 3 * 2 ** -11, 0x3c02],
      [0.1, 0x2e66],
    ]
    for (const [value, bits] of cases) expect(float32ToFloat16Bits(value), String(value)).toBe(bits)
    expect(Number.isNaN(float16BitsToFloat32(float32ToFloat16Bits(Number.NaN)))).toBe(true)
  })

  it('property: agrees with the platform Math.f16round on every float32', () => {
    const f16round = (Math as unknown as { f16round?: (x: number) => number }).f16round
    fc.assert(
      fc.property(fc.float({ noNaN: true }), (x) => {
        const back = float16BitsToFloat32(float32ToFloat16Bits(x))
        if (f16round) expect(Object.is(back, f16round(x)) || back === f16round(x)).toBe(true)
        else expect(Math.abs(back - x) <= Math.abs(x) * 2 ** -11 || !Number.isFinite(back)).toBe(true)
      }),
      { numRuns: 5000 },
    )
    for (let bits = 0; bits < 0x10000; bits++) {
      const value = float16BitsToFloat32(bits)
      if (!Number.isNaN(value)) expect(float32ToFloat16Bits(value)).toBe(bits)
    }
  })
})
