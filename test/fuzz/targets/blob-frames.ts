// The blob protocol's framing (node/p2p/blob-frames.ts): the length-prefixed frames both sides
// read, split into arbitrary chunks as a socket delivers them, and the request (holder side) or
// header (requester side) parsed from the first frame. Inputs: arbitrary bytes, valid exchanges
// with byte mutations, and hand-made length prefixes (huge, overlong varints, cut short).
// Typed errors: BlobTransferError. Bound: the bytes delivered (a declared length allocates nothing).
import * as lp from 'it-length-prefixed'
import fc from 'fast-check'
import { BLOB_CHUNK_BYTES, BLOB_HEADER_MAX_BYTES, BLOB_REQUEST_MAX_BYTES } from '../../../node/constants.ts'
import {
  BlobTransferError,
  decodeFrames,
  encodeJson,
  parseBlobHeader,
  parseBlobRequest,
} from '../../../node/p2p/blob-frames.ts'
import { concat, type FuzzTarget, mutations, typedOutcome } from '../harness.ts'

export interface FramingInput {
  side: 'holder' | 'requester'
  bytes: Uint8Array
  /** Where the socket split the bytes into chunks. */
  cuts: number[]
  /** The requester's size cap. */
  maxBytes: number
}

const frame = (payload: Uint8Array) => concat(...lp.encode([payload]))
const digest = fc.oneof(
  fc.constant(`sha256:${'ab'.repeat(32)}`),
  fc.string({ maxLength: 80 }),
  fc.stringMatching(/^sha256:[0-9a-f]{0,66}$/),
)
const size = fc.oneof(fc.integer({ min: -2, max: 4096 }), fc.constantFrom(2 ** 31, 2 ** 53, 1.5, -0))

const validExchange = fc.oneof(
  fc.tuple(digest, size).map(([d, maxBytes]) => frame(encodeJson({ digest: d, maxBytes }))),
  fc
    .tuple(
      fc.constantFrom('ok', 'busy', 'not_found', 'too_large', 'other'),
      size,
      fc.uint8Array({ maxLength: 64 }),
    )
    .map(([status, n, data]) => concat(frame(encodeJson({ status, size: n })), frame(data))),
)

/** A varint length prefix of any value (also overlong: continuation bits beyond 64 bits). */
const rawPrefix = fc.oneof(
  fc.bigInt({ min: 0n, max: 2n ** 64n }).map((n) => {
    const out: number[] = []
    do {
      out.push(Number(n & 0x7fn) | (n > 0x7fn ? 0x80 : 0))
      n >>= 7n
    } while (n > 0n)
    return Uint8Array.from(out)
  }),
  fc.integer({ min: 1, max: 12 }).map((n) => new Uint8Array(n).fill(0xff)),
)

export const blobFramesTarget: FuzzTarget<FramingInput> = {
  name: 'blob-frames',
  decoder: 'blob protocol framing (node/p2p/blob-frames.ts: decodeFrames, parseBlobRequest, parseBlobHeader)',
  inputs: fc.record({
    side: fc.constantFrom('holder' as const, 'requester' as const),
    bytes: fc.oneof(
      fc.uint8Array({ maxLength: 300 }),
      mutations(validExchange),
      fc.tuple(rawPrefix, fc.uint8Array({ maxLength: 64 })).map(([p, rest]) => concat(p, rest)),
    ),
    cuts: fc.array(fc.nat(400), { maxLength: 6 }),
    maxBytes: fc.integer({ min: 0, max: 1 << 20 }),
  }),
  valid: fc.oneof(
    fc.record({
      side: fc.constant('holder' as const),
      bytes: fc.nat().map((maxBytes) => frame(encodeJson({ digest: `sha256:${'ab'.repeat(32)}`, maxBytes }))),
      cuts: fc.array(fc.nat(100), { maxLength: 4 }),
      maxBytes: fc.constant(0),
    }),
    fc.record({
      side: fc.constant('requester' as const),
      bytes: fc
        .uint8Array({ maxLength: 64 })
        .map((data) => concat(frame(encodeJson({ status: 'ok', size: data.byteLength })), frame(data))),
      cuts: fc.array(fc.nat(100), { maxLength: 4 }),
      maxBytes: fc.constant(64),
    }),
  ),
  run({ side, bytes, cuts, maxBytes }) {
    const points = [...new Set(cuts.filter((c) => c < bytes.byteLength))].sort((a, b) => a - b)
    const chunks = [0, ...points].map((start, i) => bytes.subarray(start, points[i] ?? bytes.byteLength))
    try {
      let first = true
      const limit =
        side === 'holder' ? BLOB_REQUEST_MAX_BYTES : Math.max(BLOB_CHUNK_BYTES, BLOB_HEADER_MAX_BYTES)
      for (const f of decodeFrames(chunks, limit)) {
        if (first && side === 'holder') parseBlobRequest(f)
        if (first && side === 'requester') parseBlobHeader(f, maxBytes)
        first = false
      }
      return { accepted: true }
    } catch (err) {
      return typedOutcome(err, [BlobTransferError])
    }
  },
  allocationBound: (input) => 2 * input.bytes.byteLength,
  size: (input) => input.bytes.byteLength,
}
