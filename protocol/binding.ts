// What ties a checkpoint to its inputs, checked by every verifier (a peer adopting a checkpoint,
// `coop checkpoint verify`, a third party): each contribution a provenance lists is exactly the
// statement its contributor signed, delta included, and the parent it names is the checkpoint it
// was computed from. Recomputation alone proves neither: a publisher can pair an honest
// contributor's statement with a delta that contributor never signed, and the weights still
// recompute from the delta it listed.
import { CHECKPOINT_MODEL_FILE } from './constants.ts'
import {
  readContributionStatement,
  type ContributionPredicate,
  type VerifiedContribution,
} from './contribution.ts'
import { ProtocolError } from './errors.ts'
import type { ProvenancePredicate } from './provenance.ts'

export type ListedContribution = ProvenancePredicate['contributions'][number]

/** What a listed entry is compared with: a verified envelope, or statement bytes named by their digest. */
export interface ContributionClaim {
  /** sha256 of the statement bytes. */
  digest: string
  /** sha256 of the delta payload the statement names. */
  delta: string
  predicate: ContributionPredicate
  /** The signer, when the envelope (and so the signature) is at hand. */
  contributor?: string
}

function mismatch(entry: ListedContribution, why: string): ProtocolError {
  return new ProtocolError(
    'CONTRIBUTION_MISMATCH',
    `listed contribution ${entry.statement} does not match its statement: ${why}`,
  )
}

/**
 * Throws CONTRIBUTION_MISMATCH unless `claim` is what the provenance's entry says: the same
 * statement, delta, manifests, coop, round and phase, trained from the provenance's parent, and
 * (when the signature is at hand) signed by the listed contributor.
 */
export function checkListedContribution(
  provenance: ProvenancePredicate,
  entry: ListedContribution,
  claim: ContributionClaim,
): void {
  const p = claim.predicate
  // The entry names these statement bytes.
  if (claim.digest !== entry.statement) throw mismatch(entry, `statement digest is ${claim.digest}`)
  // The listed delta is the payload the contributor signed, and nothing else.
  if (claim.delta !== entry.delta)
    throw mismatch(entry, `the statement names delta ${claim.delta}, the checkpoint lists ${entry.delta}`)
  // The listed contributor signed it (checked when the envelope is at hand).
  if (claim.contributor !== undefined && claim.contributor !== entry.contributor)
    throw mismatch(entry, `signed by ${claim.contributor}, listed as ${entry.contributor}`)
  // It is a contribution to this coop, round and phase.
  if (p.coop !== provenance.coop) throw mismatch(entry, 'another coop')
  if (p.round !== provenance.round) throw mismatch(entry, `round ${p.round}, not ${provenance.round}`)
  if (p.phase !== provenance.phase) throw mismatch(entry, `phase ${p.phase}, not ${provenance.phase}`)
  // It was trained from this checkpoint's parent.
  if (provenance.parent === null) throw mismatch(entry, 'a checkpoint without a parent lists contributions')
  if (p.baseCheckpoint !== provenance.parent.provenance)
    throw mismatch(entry, `trained from ${p.baseCheckpoint}, not the parent ${provenance.parent.provenance}`)
  // The manifests listed for it are exactly the ones it declared (both sorted and unique).
  if (p.manifests.length !== entry.manifests.length || p.manifests.some((m, i) => m !== entry.manifests[i]))
    throw mismatch(entry, 'the listed manifests differ from the signed ones')
}

/** The claim of a verified envelope (signature and contributor included). */
export function claimOf(verified: VerifiedContribution): ContributionClaim {
  return {
    digest: verified.digest,
    delta: verified.delta,
    predicate: verified.predicate,
    contributor: verified.contributor,
  }
}

/**
 * Reads statement bytes fetched by the digest an entry lists and checks them against the entry.
 * Returns the statement's predicate (its sample count weighs the aggregate).
 */
export function verifyListedStatement(
  provenance: ProvenancePredicate,
  entry: ListedContribution,
  statementBytes: Uint8Array,
): ContributionPredicate {
  const body = readContributionStatement(statementBytes)
  checkListedContribution(provenance, entry, body)
  return body.predicate
}

/** A parent as a verifier holds it: its id, its predicate and its signed files. */
export interface ParentClaim {
  /** sha256 of the parent's provenance statement: its checkpoint id. */
  digest: string
  predicate: ProvenancePredicate
  /** File name -> signed digest. */
  files: ReadonlyMap<string, string>
}

/**
 * Throws PARENT_MISMATCH unless `parent` is the checkpoint `child` names: the same provenance id
 * and model digest, the same coop and phase, and the round before. The parent's own signature
 * (or the digest chain that reached it) is the caller's to have checked; its momentum file is
 * then bound by `parent.files`.
 */
export function checkParent(child: ProvenancePredicate, parent: ParentClaim): void {
  if (child.parent === null) throw new ProtocolError('PARENT_MISMATCH', 'a genesis checkpoint has no parent')
  // The parent is the checkpoint the child names.
  if (parent.digest !== child.parent.provenance)
    throw new ProtocolError('PARENT_MISMATCH', `parent is ${parent.digest}, not ${child.parent.provenance}`)
  // Its weights are the ones the child names.
  if (parent.files.get(CHECKPOINT_MODEL_FILE) !== child.parent.checkpoint)
    throw new ProtocolError('PARENT_MISMATCH', 'the parent model digest differs from the one the child names')
  // Same coop and phase, one round earlier.
  if (parent.predicate.coop !== child.coop || parent.predicate.phase !== child.phase)
    throw new ProtocolError('PARENT_MISMATCH', 'the parent is from another coop or phase')
  if (parent.predicate.round !== child.round - 1)
    throw new ProtocolError(
      'PARENT_MISMATCH',
      `the parent is round ${parent.predicate.round}, not ${child.round - 1}`,
    )
}
