// The one function that turns a parent checkpoint and a set of contributions into the next
// checkpoint. The publisher calls it to make a checkpoint and every other peer calls it to
// check one: both sides run the same deterministic code (fixed order by digest, float64
// accumulation in protocol/aggregation.ts), so the resulting file bytes, and therefore their
// digests, must agree bit for bit.
import { aggregateDeltas, outerStep } from '../../protocol/aggregation.ts'
import type { CoopCharter } from '../../protocol/charter.ts'
import { outerHyperparameters } from '../../protocol/outer-schedule.ts'
import { decompressDelta } from '../../protocol/compression.ts'
import { sha256Digest } from '../../protocol/digest.ts'
import { decodeSafetensors } from '../../protocol/safetensors.ts'
import { CONTRIBUTION_PAYLOAD_MAX_BYTES, MAX_TENSORS } from './constants.ts'
import { RoundError } from './errors.ts'
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
}

/** The charter's outer optimiser for round `round`: what every peer applies after aggregating it (the lr may follow the charter's outer schedule). */
export function outerOptimizer(
  charter: Pick<CoopCharter, 'rounds' | 'phases'>,
  round: number,
): OuterOptimizer {
  const { lr, momentum } = outerHyperparameters(charter, round)
  return { aggregator: charter.rounds.aggregator, outerLr: lr, outerMomentum: momentum }
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

/** Decodes and decompresses one contribution payload and checks it fits the parent's layout. */
export function decodeContributionPayload(
  payload: Uint8Array,
  parentWeights: readonly NamedTensor[],
): NamedTensor[] {
  const { tensors } = decodeSafetensors(payload, {
    maxBytes: CONTRIBUTION_PAYLOAD_MAX_BYTES,
    maxTensors: 4 * MAX_TENSORS,
  })
  const delta = decompressDelta(tensors, parentWeights)
    .map((t) => ({ name: t.name, shape: [...t.shape], data: t.data }))
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
  // decompressDelta refuses non-finite values (ProtocolError SCHEMA); the layout is ours to check.
  assertSameLayout(parentWeights, delta, 'contribution payload')
  return delta
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
 * MISSING_CONTRIBUTION for an empty set (a round never closes without contributions) and
 * BAD_CHECKPOINT for a payload that does not fit the parent.
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
      delta: decodeContributionPayload(c.payload, parentWeights),
    }
  })
  const aggregated = aggregateDeltas(deltas, optimizer.aggregator)
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
