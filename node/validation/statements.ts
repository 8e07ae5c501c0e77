// Validation chains of the contributions and checkpoints topics. The generic stages (size,
// decode, schema, signature and who may send what) live here; the round engine plugs in the
// semantic stage (round window, base checkpoint known, manifests valid and unrevoked, ...).
import {
  type CoopCharter,
  type VerifiedContribution,
  type VerifiedProvenance,
  verifyContribution,
  verifyProvenance,
} from '../../protocol/index.ts'
import {
  type ChainContext,
  type ChainValidator,
  createChainValidator,
  type KindStages,
  viaProtocol,
} from './chain.ts'
import { reject } from '../p2p/gossip-errors.ts'

export type SemanticStage<V> = (verified: V, ctx: ChainContext) => void | Promise<void>

export interface ContributionChainOptions {
  coopId: string
  admission: CoopCharter['admission']
  /** The round engine's checks; throw reject()/ignore() from node/p2p/gossip-errors.ts. */
  semantics?: SemanticStage<VerifiedContribution>
}

export function contributionStages(
  options: ContributionChainOptions,
): KindStages<unknown, VerifiedContribution> {
  return {
    async signature(_, ctx) {
      // A DSSE envelope with exactly one signature, by a PeerId, over an in-toto
      // ContributionStatement of the right schema (verified from the parsed message: no re-parse).
      const verified = await viaProtocol('BAD_SIGNATURE', () => verifyContribution(ctx.parsed))
      // A contribution is published by the node that signed it, so its author answers for it.
      if (verified.contributor !== ctx.from)
        throw reject('SENDER_MISMATCH', `signed by ${verified.contributor}, published by ${ctx.from}`)
      // It belongs to this coop.
      if (verified.predicate.coop !== options.coopId)
        throw reject('WRONG_COOP', 'contribution names another coop')
      // Under an allowlist charter, only admitted peers contribute.
      if (options.admission.mode === 'allowlist' && !options.admission.peers.includes(verified.contributor)) {
        throw reject('ADMISSION_DENIED', 'contributor is not on the charter allowlist')
      }
      return verified
    },
    ...(options.semantics === undefined ? {} : { semantics: options.semantics }),
  }
}

/** The contributions topic's validator; `.verified(data)` gives handlers the VerifiedContribution. */
export function createContributionValidator(options: ContributionChainOptions): ChainValidator {
  return createChainValidator('contributions', { contribution: contributionStages(options) })
}

export interface CheckpointChainOptions {
  coopId: string
  publishers: CoopCharter['publishers']
  threshold: CoopCharter['threshold']
  /** The round engine's checks (parent known, round in sequence, recomputation, ...). */
  semantics?: SemanticStage<VerifiedProvenance>
}

export function checkpointStages(options: CheckpointChainOptions): KindStages<unknown, VerifiedProvenance> {
  return {
    async signature(_, ctx) {
      // Only a publisher named by the charter announces checkpoints.
      if (!options.publishers.includes(ctx.from))
        throw reject('NOT_PUBLISHER', `${ctx.from} is not a publisher`)
      // Every signature verifies, every signer is a publisher, and at least `threshold` of them signed.
      const verified = await viaProtocol('BAD_SIGNATURE', () =>
        verifyProvenance(ctx.parsed, { publishers: options.publishers, threshold: options.threshold }),
      )
      // It belongs to this coop.
      if (verified.predicate.coop !== options.coopId)
        throw reject('WRONG_COOP', 'provenance names another coop')
      return verified
    },
    ...(options.semantics === undefined ? {} : { semantics: options.semantics }),
  }
}

/** The checkpoints topic's validator; `.verified(data)` gives handlers the VerifiedProvenance. */
export function createCheckpointValidator(options: CheckpointChainOptions): ChainValidator {
  return createChainValidator('checkpoints', { checkpoint: checkpointStages(options) })
}
