// The 2-bit top-k codec in the real node's path: a charter may name it, the round engine's
// recomputation decodes it against the parent's layout (node/round/recompute.ts), and a payload
// made for another model layout is refused rather than misread.
import { describe, expect, it } from 'vitest'
import { aggregateDeltas, outerStep } from '../../protocol/aggregation.ts'
import { charterSchema } from '../../protocol/charter.ts'
import { compressDelta, decompressDelta, parseCodec } from '../../protocol/compression.ts'
import { sha256Digest } from '../../protocol/digest.ts'
import { decodeSafetensors, encodeSafetensors } from '../../protocol/safetensors.ts'
import { computeCheckpoint } from '../../node/round/recompute.ts'
import { pseudoGradient, zerosLike, type NamedTensor } from '../../node/round/tensors.ts'
import { charterContent } from '../protocol/fixtures.ts'

function model(seed: number, extra = 0): NamedTensor[] {
  let x = seed
  const next = () => {
    x = (x * 1103515245 + 12345) % 2147483648
    return x / 2147483648 - 0.5
  }
  return [
    { name: 'a.weight', shape: [20, 30], data: Float32Array.from({ length: 600 }, next) },
    { name: 'b.bias', shape: [5 + extra], data: Float32Array.from({ length: 5 + extra }, next) },
  ]
}

const codec = parseCodec('topk:0.05:2bit')

describe('top-k 2-bit contributions in the round engine', () => {
  it('recomputes a checkpoint from 2-bit payloads exactly as the protocol maths says', () => {
    const parent = model(1)
    const payloads = [2, 3].map((seed) => {
      const bytes = encodeSafetensors(compressDelta(pseudoGradient(parent, model(seed)), codec).entries)
      return { payloadDigest: sha256Digest(bytes), samples: 32, payload: bytes }
    })
    const outer = {
      aggregator: { kind: 'mean' as const },
      outerLr: 0.7,
      outerMomentum: 0.9,
      codec,
      maxSamples: 64,
    }
    const result = computeCheckpoint(parent, zerosLike(parent), payloads, outer)
    const deltas = payloads.map((p) => ({
      digest: p.payloadDigest,
      samples: p.samples,
      delta: decompressDelta(decodeSafetensors(p.payload).tensors, parent, codec),
    }))
    const expected = outerStep(
      parent,
      undefined,
      aggregateDeltas(deltas, outer.aggregator, { maxSamples: 64 }),
      {
        lr: 0.7,
        momentum: 0.9,
      },
    )
    expect(result.weights.map((t) => Array.from(t.data))).toEqual(
      expected.weights.map((t) => Array.from(t.data)),
    )
    // Few bytes: 5% of the values at 1.25 bytes each, plus five small entries.
    expect(payloads[0]!.payload.length).toBeLessThan(605 * 0.07 * 1.25 + 400)
  })

  it('refuses a 2-bit payload made for another layout', () => {
    const parent = model(1)
    const other = model(1, 3)
    const bytes = encodeSafetensors(compressDelta(pseudoGradient(other, model(4, 3)), codec).entries)
    expect(() =>
      computeCheckpoint(
        parent,
        zerosLike(parent),
        [{ payloadDigest: sha256Digest(bytes), samples: 1, payload: bytes }],
        {
          aggregator: { kind: 'mean' },
          outerLr: 0.7,
          outerMomentum: 0.9,
          codec,
          maxSamples: 64,
        },
      ),
    ).toThrow(/elements in the payload/)
  })

  it('is a charter compression setting; other value encodings are not', () => {
    const charter = charterContent()
    expect(
      charterSchema.safeParse({ ...charter, rounds: { ...charter.rounds, compression: codec } }).success,
    ).toBe(true)
    expect(
      charterSchema.safeParse({
        ...charter,
        rounds: { ...charter.rounds, compression: { kind: 'topk', fraction: 0.05, values: '4bit' } },
      }).success,
    ).toBe(false)
  })
})
