// The one function that turns a parent checkpoint and a set of contributions into the next
// checkpoint. The publisher calls it to make a checkpoint and every other peer calls it to
// check one: both sides run the same deterministic code (fixed order by digest, float64
// accumulation in protocol/aggregation.ts), so the resulting file bytes, and therefore their
// digests, must agree bit for bit.
import { aggregateDeltas, outerStep } from '../../protocol/aggregation.ts'
import type { CoopCharter } from '../../protocol/charter.ts'
import {
  decompressDelta,
  layoutOf,
  payloadMaxBytes,
  type Codec,
  type TensorLayout,
} from '../../protocol/compression.ts'
import { outerHyperparameters } from '../../protocol/outer-schedule.ts'
import { sha256Digest } from '../../protocol/digest.ts'
import { ProtocolError } from '../../protocol/errors.ts'
import { decodeSafetensors } from '../../protocol/safetensors.ts'
import { RoundError } from './errors.ts'
import { charterCodec, maxSamples } from './limits.ts'
import type { Phase } from './schedule.ts'
import { assertSameLayout, encodeTensors, type NamedTensor } from './tensors.ts'

export type Aggregator =
  | { kind: 'mean' }
  | { kind: 'median' }
  | { kind: 'trimmed'; fraction: number }
  | { kind: 'clip'; norm: number }

export interface OuterOptimizer {
  aggregator: Aggregator
  outerLr: number
  outerMomentum: number
  /** The charter's payload codec: a payload in another one does not fit. */
  codec: Codec
  /** The weight cap of one contribution (charter inner steps x batch size of the phase). */
  maxSamples: number
}

/**
 * The charter's rules for turning round `round` of `phase` into a checkpoint: what every peer applies
 * (the outer lr may follow the charter's outer schedule).
 */
export function outerOptimizer(
  charter: Pick<CoopCharter, 'rounds' | 'model' | 'phases'>,
  phase: Phase,
  round: number,
): OuterOptimizer {
  const { lr, momentum } = outerHyperparameters(charter, round)
  return {
    aggregator: charter.rounds.aggregator,
    outerLr: lr,
    outerMomentum: momentum,
    codec: charterCodec(charter),
    maxSamples: maxSamples(charter, phase),
  }
}

export interface ContributionPayload {
  /** Digest of the payload bytes; the aggregation order is by this digest. */
  payloadDigest: string
  samples: number
  payload: Uint8Array
}

export interface ComputedCheckpoint {
  weights: NamedTensor[]
  momentum: NamedTensor[]
  modelBytes: Uint8Array
  momentumBytes: Uint8Array
  modelDigest: string
  momentumDigest: string
}

/** Safetensors metadata of checkpoint files: fixed, so the bytes depend on the tensors only. */
const FILE_METADATA = { format: 'pt' }

/**
 * Decodes and decompresses one contribution payload against the model `layout` (the parent's
 * names and shapes) and the charter's codec. Its size is checked against the largest payload a
 * correct trainer writes before anything is parsed, and every declared shape against the layout
 * before anything dense is allocated, so one payload never costs more than a small multiple of
 * the model's size. Throws ProtocolError (LAYOUT_MISMATCH, TOO_LARGE, SCHEMA, ...): the
 * contributor's fault.
 */
export function decodeContributionPayload(
  payload: Uint8Array,
  layout: readonly TensorLayout[],
  codec: Codec,
): NamedTensor[] {
  const maxBytes = payloadMaxBytes(layout, codec)
  if (payload.byteLength > maxBytes)
    throw new ProtocolError(
      'TOO_LARGE',
      `payload of ${payload.byteLength} bytes exceeds ${maxBytes}, the largest this model and codec produce`,
    )
  const { tensors } = decodeSafetensors(payload, { maxBytes, maxTensors: Math.max(3 * layout.length, 5) })
  // Three entries per tensor (top-k with F32 values) or five for the whole model (2-bit).
  // decompressDelta refuses non-finite values and anything that does not fit the layout.
  return decompressDelta(tensors, layout, codec)
}

export function encodeCheckpointFiles(
  weights: readonly NamedTensor[],
  momentum: readonly NamedTensor[],
): Omit<ComputedCheckpoint, 'weights' | 'momentum'> {
  const modelBytes = encodeTensors(weights, FILE_METADATA)
  const momentumBytes = encodeTensors(momentum, FILE_METADATA)
  return {
    modelBytes,
    momentumBytes,
    modelDigest: sha256Digest(modelBytes),
    momentumDigest: sha256Digest(momentumBytes),
  }
}

/**
 * parent + aggregate(contributions) through one outer Nesterov SGD step. Throws RoundError
 * MISSING_CONTRIBUTION for an empty set (a round never closes without contributions),
 * BAD_CHECKPOINT for a parent whose momentum does not fit its weights, and ProtocolError for a
 * payload that does not fit the parent (see decodeContributionPayload).
 */
export function computeCheckpoint(
  parentWeights: readonly NamedTensor[],
  parentMomentum: readonly NamedTensor[],
  contributions: readonly ContributionPayload[],
  optimizer: OuterOptimizer,
): ComputedCheckpoint {
  if (contributions.length === 0)
    throw new RoundError('MISSING_CONTRIBUTION', 'a checkpoint needs at least one contribution')
  assertSameLayout(parentWeights, parentMomentum, 'parent momentum')
  const layout = layoutOf(parentWeights)
  const seen = new Set<string>()
  const deltas = contributions.map((c) => {
    if (seen.has(c.payloadDigest))
      throw new RoundError('BAD_CHECKPOINT', `contribution payload ${c.payloadDigest} is listed twice`)
    seen.add(c.payloadDigest)
    if (sha256Digest(c.payload) !== c.payloadDigest)
      throw new RoundError('MISSING_PAYLOAD', `payload bytes do not hash to ${c.payloadDigest}`)
    return {
      digest: c.payloadDigest,
      samples: c.samples,
      delta: decodeContributionPayload(c.payload, layout, optimizer.codec),
    }
  })
  const aggregated = aggregateDeltas(deltas, optimizer.aggregator, { maxSamples: optimizer.maxSamples })
  const stepped = outerStep(
    parentWeights.map((t) => ({ name: t.name, shape: [...t.shape], data: t.data })),
    parentMomentum.map((t) => ({ name: t.name, shape: [...t.shape], data: t.data })),
    aggregated,
    { lr: optimizer.outerLr, momentum: optimizer.outerMomentum },
  )
  const weights = sortByName(stepped.weights)
  const momentum = sortByName(stepped.momentum)
  return { weights, momentum, ...encodeCheckpointFiles(weights, momentum) }
}

function sortByName(tensors: readonly NamedTensor[]): NamedTensor[] {
  return tensors
    .map((t) => ({ name: t.name, shape: [...t.shape], data: t.data }))
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
}
