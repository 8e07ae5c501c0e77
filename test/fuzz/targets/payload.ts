// The contribution payload decoder a verifier runs on every payload it fetches
// (node/round/recompute.ts's decodeContributionPayload: safetensors, then the codec's decode
// against the parent's layout): arbitrary bytes, mutations of valid payloads of every codec, and
// forged entries (a top-k `.shape` naming a huge tensor, entries of another dtype or shape, entries
// dropped or added). Typed errors: ProtocolError, RoundError. Bound: a small multiple of the model.
import fc from 'fast-check'
import { type Codec, compressDelta, layoutOf, parseCodec } from '../../../protocol/compression.ts'
import { ProtocolError } from '../../../protocol/errors.ts'
import { encodeSafetensors, type TensorEntry } from '../../../protocol/safetensors.ts'
import { RoundError } from '../../../node/round/errors.ts'
import { decodeContributionPayload } from '../../../node/round/recompute.ts'
import type { NamedTensor } from '../../../node/round/tensors.ts'
import { type FuzzTarget, mutations, typedOutcome } from '../harness.ts'

/** A small model: the decoder's bound is relative to it, so a forged shape stands out. */
function model(seed: number): NamedTensor[] {
  let x = seed
  const next = () => {
    x = (x * 1103515245 + 12345) % 2147483648
    return x / 2147483648 - 0.5
  }
  return [
    { name: 'a.weight', shape: [20, 30], data: Float32Array.from({ length: 600 }, next) },
    { name: 'b.bias', shape: [5], data: Float32Array.from({ length: 5 }, next) },
    { name: 'c.norm', shape: [2, 3, 4], data: Float32Array.from({ length: 24 }, next) },
  ]
}

const PARENT = model(1)
/** The layout a verifier decodes against: the parent's names and shapes. */
const LAYOUT = layoutOf(PARENT)
const MODEL_BYTES = PARENT.reduce((n, t) => n + t.data.byteLength, 0)
const CODECS = ['none', 'int8', 'topk:0.05', 'topk:0.05:2bit'].map(parseCodec)

/** A payload and the codec the charter names (what the verifier decodes it under). */
export interface PayloadInput {
  codec: Codec
  bytes: Uint8Array
}

/** The entries an honest trainer would send, for a random delta in `codec`. */
const validEntriesIn = (codec: Codec): fc.Arbitrary<TensorEntry[]> =>
  fc.integer({ min: 2, max: 1_000_000 }).map((seed) => {
    const local = model(seed)
    const delta = PARENT.map((t, i) => ({
      name: t.name,
      shape: [...t.shape],
      data: t.data.map((v, j) => v - ((local[i] as NamedTensor).data[j] as number)),
    }))
    return compressDelta(delta, codec).entries
  })

const hugeDims = fc.array(
  fc.oneof(
    fc.integer({ min: 0, max: 40 }),
    fc.constantFrom(4096, 16_384, 65_536, 2 ** 20, 2 ** 28, 2 ** 31 - 1),
  ),
  {
    minLength: 1,
    maxLength: 4,
  },
)

/** Valid entries with one of them forged: huge declared shapes first, since they cost the most. */
const forgedEntriesIn = (codec: Codec): fc.Arbitrary<TensorEntry[]> =>
  fc
    .tuple(
      validEntriesIn(codec),
      fc.nat(),
      fc.integer({ min: 0, max: 4 }),
      hugeDims,
      fc.string({ maxLength: 10 }),
    )
    .map(([entries, pick, op, dims, name]) => {
      const out = entries.map((e) => ({ ...e }))
      const at = pick % out.length
      const target = out[at] as TensorEntry
      switch (op) {
        case 0: {
          // Rewrite a top-k `.shape` (or else any I32 vector) to name a huge tensor.
          const vector =
            out.find((e) => e.name.endsWith('.shape')) ?? out.find((e) => e.dtype === 'I32') ?? target
          vector.dtype = 'I32'
          vector.shape = [dims.length]
          vector.data = Int32Array.from(dims)
          break
        }
        case 1:
          // The same values under another shape of the same element count.
          target.shape = [target.data.length]
          break
        case 2:
          out.splice(at, 1)
          break
        case 3:
          out.push({ name: name || 'x', dtype: 'F32', shape: [1], data: Float32Array.of(0) })
          break
        default:
          target.name = `${target.name}${name}`
      }
      return out
    })

function encoded(entries: fc.Arbitrary<TensorEntry[]>): fc.Arbitrary<Uint8Array> {
  return entries.map((e) => {
    try {
      return encodeSafetensors(e)
    } catch {
      return new Uint8Array(0)
    }
  })
}

/** Inputs under each codec a charter may name. */
const underAnyCodec = (bytes: (codec: Codec) => fc.Arbitrary<Uint8Array>): fc.Arbitrary<PayloadInput> =>
  fc.constantFrom(...CODECS).chain((codec) => bytes(codec).map((b) => ({ codec, bytes: b })))

export const payloadTarget: FuzzTarget<PayloadInput> = {
  name: 'payload',
  decoder: 'decodeContributionPayload (node/round/recompute.ts: safetensors + codec decode)',
  inputs: fc.oneof(
    { arbitrary: underAnyCodec(() => fc.uint8Array({ maxLength: 512 })), weight: 1 },
    { arbitrary: underAnyCodec((codec) => mutations(encoded(validEntriesIn(codec)))), weight: 3 },
    // A payload made in one codec, decoded under another.
    {
      arbitrary: underAnyCodec(() => fc.constantFrom(...CODECS).chain((c) => encoded(validEntriesIn(c)))),
      weight: 1,
    },
    { arbitrary: underAnyCodec((codec) => encoded(forgedEntriesIn(codec))), weight: 3 },
  ),
  valid: underAnyCodec((codec) => encoded(validEntriesIn(codec))),
  run({ bytes, codec }) {
    try {
      decodeContributionPayload(bytes, LAYOUT, codec)
      return { accepted: true }
    } catch (err) {
      return typedOutcome(err, [ProtocolError, RoundError])
    }
  },
  // The dense delta, the decoded entries and a copy of each: a few times the model.
  allocationBound: () => 8 * MODEL_BYTES,
  size: (input) => input.bytes.byteLength,
}
