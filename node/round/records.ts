// What the round engine keeps in the store, and under which keys. Every record is plain JSON.
//
//   contributions  <round:12>/<statement digest>   ContributionRecord (every accepted contribution)
//   checkpoints    <phase>/<round:12>              CheckpointRecord  (every adopted checkpoint)
//   checkpoints    id/<statement digest>           { phase, round }  (index by checkpoint id)
//   rounds         local/<round:12>                LocalRoundRecord  (this node's own contribution)
//   rounds         close/<round:12>                CloseRecord       (publisher: the frozen set, before aggregating)
//   rounds         residual/<phase>                { digest }         (top-k error-feedback residual blob)
//   rounds         refused/<statement digest>      RefusedPayloadRecord (a contribution whose payload failed admission, and why)
//   rounds         equivocation/<phase>/<round:12>/<checkpoint id>  EquivocationRecord (a second signed checkpoint for a round)
//   rounds         peer/<peerId>                   PeerRecord (contribution counts; the host owns the peers table)
import type { ContributionPredicate } from '../../protocol/contribution.ts'
import type { ExclusionDetails } from '../../protocol/exclusions.ts'
import type { ProvenancePredicate } from '../../protocol/provenance.ts'
import { roundKey } from '../store/store.ts'
import type { Phase } from './schedule.ts'

export interface ContributionRecord {
  /** Statement digest (sha256 of the in-toto statement bytes): the contribution's id. */
  id: string
  contributor: string
  delta: string
  predicate: ContributionPredicate
  /** Canonical DSSE envelope bytes' digest; the envelope is a blob under it. */
  envelope: string
  acceptedAt: string
}

/** 'component': an autoencoder of another cooperative, imported as the charter pins it. */
/** 'rollback': a rollback checkpoint whose receipt and lineage checked out (node/round/rollback.ts). */
export type Verification = 'published' | 'recomputed' | 'genesis' | 'signature' | 'component' | 'rollback'

export interface CheckpointRecord {
  /** Statement digest of the provenance: the checkpoint's id. */
  id: string
  phase: Phase
  round: number
  /** Blob digests of the files. */
  files: { model: string; momentum: string; config: string }
  /** Blob digest of the canonical provenance envelope (provenance.json). */
  envelope: string
  predicate: ProvenancePredicate
  signers: string[]
  verification: Verification
  adoptedAt: string
  dir: string
  /** The exclusion details the provenance's summary signs (checked against it before adoption). */
  exclusions?: ExclusionDetails
}

export interface LocalRoundRecord {
  round: number
  phase: Phase
  base: string
  contribution: string
  envelope: string
  delta: string
  samples: number
  loss: number
  createdAt: string
}

export interface CloseRecord {
  round: number
  phase: Phase
  base: string
  /** Statement digests, sorted: exactly what the checkpoint aggregates. */
  contributions: string[]
  /** What the checkpoint records as excluded since the base, frozen with the set. */
  excludedItems: string[]
  revocations: string[]
  expiredManifests?: string[]
  closedAt: string
  /**
   * Set when the round is a rollback (charter onRevocation "rollback"): the checkpoint continues
   * from `newBase` without contributions, and the publisher signs an unlearning receipt.
   * `superseded` oldest first; `createdAt` is the receipt's, frozen so a re-run signs the same bytes.
   */
  rollback?: { newBase: string; superseded: { provenance: string; round: number }[]; createdAt: string }
  /** Members of the frozen set that could not be aggregated, dropped before signing, and why. */
  dropped?: { statement: string; code: string; reason: string }[]
}

/** A contribution payload that failed admission: it never counts toward a quorum or enters a close set. */
export interface RefusedPayloadRecord {
  delta: string
  round: number
  contribution: string
  contributor: string
  /** BAD_PAYLOAD, TOO_LARGE or TRIVIAL_DELTA (node/p2p/gossip-errors.ts). */
  code: string
  reason: string
  refusedAt: string
}

/**
 * Evidence of equivocation: a checkpoint signed by the charter's publishers for a round that
 * already has another one here. Both envelopes are blobs (the adopted one's is its record's).
 */
export interface EquivocationRecord {
  phase: Phase
  round: number
  /** The checkpoint this node adopted (or was verifying) for the round: first adopted wins. */
  adopted: string
  adoptedEnvelope: string
  /** The other signed checkpoint: its statement digest and its envelope blob's digest. */
  conflicting: string
  conflictingEnvelope: string
  signers: string[]
  /** The peer that relayed it to us. */
  from: string
  seenAt: string
}

export interface PeerRecord {
  peerId: string
  lastSeen: string
  contributions: number
}

export const contributionKey = (round: number, id: string): string => `${roundKey(round)}/${id}`
export const checkpointKey = (phase: Phase, round: number): string => `${phase}/${roundKey(round)}`
export const checkpointIdKey = (id: string): string => `id/${id}`
export const localKey = (round: number): string => `local/${roundKey(round)}`
export const closeKey = (round: number): string => `close/${roundKey(round)}`
export const peerKey = (peerId: string): string => `peer/${peerId}`
export const residualKey = (phase: Phase): string => `residual/${phase}`
export const refusedKey = (contribution: string): string => `refused/${contribution}`
export const equivocationKey = (phase: Phase, round: number, id: string): string =>
  `equivocation/${phase}/${roundKey(round)}/${id}`
