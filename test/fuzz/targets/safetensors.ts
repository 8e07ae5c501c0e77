// decodeSafetensors (protocol/safetensors.ts), the container of every payload and checkpoint file:
// arbitrary bytes, mutations of valid files, and forged headers (any dtype, shape, offsets and
// metadata over a short data section). Typed errors: ProtocolError. Bound: the decoded tensors are
// copies of the input's data section, so nothing beyond the input's size.
import fc from 'fast-check'
import { ProtocolError } from '../../../protocol/errors.ts'
import {
  type DType,
  DTYPES,
  decodeSafetensors,
  encodeSafetensors,
  type TensorEntry,
} from '../../../protocol/safetensors.ts'
import { concat, type FuzzTarget, mutations, typedOutcome } from '../harness.ts'

/** The limits a contribution payload is decoded under, scaled to fuzzing. */
const LIMITS = { maxBytes: 1024 * 1024, maxTensors: 64 }

const WIDTH: Record<DType, number> = { F32: 4, F16: 2, I8: 1, I32: 4, U8: 1 }
const ARRAY: Record<DType, new (buffer: ArrayBuffer) => TensorEntry['data']> = {
  F32: Float32Array,
  F16: Uint16Array,
  I8: Int8Array,
  I32: Int32Array,
  U8: Uint8Array,
}

const entry: fc.Arbitrary<TensorEntry> = fc
  .record({
    name: fc.string({ minLength: 1, maxLength: 12 }).filter((s) => s !== '__metadata__'),
    dtype: fc.constantFrom(...DTYPES),
    shape: fc.array(fc.integer({ min: 0, max: 5 }), { maxLength: 3 }),
    seed: fc.integer(),
  })
  .map(({ name, dtype, shape, seed }) => {
    const count = shape.reduce((a, b) => a * b, 1)
    const raw = Uint8Array.from({ length: count * WIDTH[dtype] }, (_, i) => (seed + i * 31) & 255)
    const data = new ARRAY[dtype](raw.buffer)
    return { name, dtype, shape, data }
  })

/** Valid files: a few tensors and some metadata. */
export const validSafetensors: fc.Arbitrary<Uint8Array> = fc
  .tuple(
    fc.uniqueArray(entry, { selector: (e) => e.name, maxLength: 5 }),
    fc.dictionary(fc.string({ maxLength: 6 }), fc.string({ maxLength: 6 }), { maxKeys: 2 }),
  )
  .map(([tensors, metadata]) => encodeSafetensors(tensors, metadata))

const hostileNumber = fc.oneof(
  fc.integer({ min: -2, max: 64 }),
  fc.constantFrom(2 ** 31, 2 ** 32 + 1, 2 ** 53 - 1, 2 ** 53 + 2, 1e308, -0, 0.5, Number.MAX_SAFE_INTEGER),
)

/** A header written by hand: any dtype string, shapes with huge dimensions, offsets anywhere. */
const forgedHeader: fc.Arbitrary<Uint8Array> = fc
  .tuple(
    fc.dictionary(
      fc.oneof(fc.string({ maxLength: 8 }), fc.constantFrom('__metadata__', '__proto__', 'constructor')),
      fc.oneof(
        fc.record(
          {
            dtype: fc.oneof(fc.constantFrom(...DTYPES, 'F64', 'BF16', 'U8', ''), fc.string({ maxLength: 4 })),
            shape: fc.oneof(fc.array(hostileNumber, { maxLength: 9 }), fc.jsonValue({ maxDepth: 1 })),
            data_offsets: fc.oneof(
              fc.tuple(hostileNumber, hostileNumber),
              fc.array(hostileNumber, { maxLength: 3 }),
            ),
          },
          { requiredKeys: [] },
        ),
        fc.jsonValue({ maxDepth: 2 }),
      ),
      { maxKeys: 6 },
    ),
    fc.uint8Array({ maxLength: 96 }),
    fc.oneof(fc.constant(undefined), fc.bigInt({ min: 0n, max: 2n ** 64n - 1n })),
  )
  .map(([header, data, declared]) => {
    const json = new TextEncoder().encode(JSON.stringify(header))
    const length = new Uint8Array(8)
    new DataView(length.buffer).setBigUint64(0, declared ?? BigInt(json.byteLength), true)
    return concat(length, json, data)
  })

export const safetensorsTarget: FuzzTarget<Uint8Array> = {
  name: 'safetensors',
  decoder: 'decodeSafetensors (protocol/safetensors.ts)',
  inputs: fc.oneof(
    { arbitrary: fc.uint8Array({ maxLength: 512 }), weight: 1 },
    { arbitrary: mutations(validSafetensors), weight: 3 },
    { arbitrary: forgedHeader, weight: 3 },
  ),
  valid: validSafetensors,
  run(bytes) {
    try {
      decodeSafetensors(bytes, LIMITS)
      return { accepted: true }
    } catch (err) {
      return typedOutcome(err, [ProtocolError])
    }
  },
  allocationBound: (bytes) => bytes.byteLength,
  size: (bytes) => bytes.byteLength,
}
