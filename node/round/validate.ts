// The semantic stage of the contributions and checkpoints topics: pure functions over a
// read-only view of the round state and the consent book (as Lodestar's chain/validation/*.ts).
// They run after the generic stages of node/validation/statements.ts (size, decode, schema,
// signature; signer = gossip author, coop, admission), so they do not repeat those checks. They
// throw reject()/ignore() with a code, never write and never start network work: a refusal that
// needs follow-up (an unknown manifest to fetch) names it in the error's `detail`.
import type { VerifiedContribution } from '../../protocol/contribution.ts'
import type { VerifiedManifest } from '../../protocol/manifest.ts'
import type { VerifiedProvenance } from '../../protocol/provenance.ts'
import { manifestEnd } from '../consent/book.ts'
import { ignore, reject } from '../p2p/gossip-errors.ts'
import { maxSamples } from './limits.ts'
import type { ChainExclusions, RoundState } from './state.ts'
import { genesisRound, lastRoundOf, phaseOfRound } from './schedule.ts'
import { isRollbackShape } from './unlearning.ts'

/** What the round checks read of the round state. */
export type RoundView = Pick<
  RoundState,
  | 'coopId'
  | 'charter'
  | 'plan'
  | 'checkpointAt'
  | 'checkpointById'
  | 'contribution'
  | 'contributionsFor'
  | 'chainExclusions'
>

/** What the manifest checks read of the consent book. */
export interface ConsentView {
  manifest(id: string): VerifiedManifest | undefined
  fullyRevokedBy(manifestId: string, revocationIds: ReadonlySet<string>): boolean
}

/** A ContributionStatement makes sense now: for the open round, from its base, once per peer, on valid consent. */
export function validateContribution(
  view: RoundView,
  consent: ConsentView,
  verified: VerifiedContribution,
  now: number = Date.now(),
): void {
  const p = verified.predicate
  // Its round exists in the charter and its phase is that round's phase.
  if (p.round < 1 || p.round > view.plan.total)
    throw reject('ROUND_OUT_OF_WINDOW', `round ${p.round} is outside the charter`)
  if (phaseOfRound(view.plan, p.round) !== p.phase)
    throw reject('SCHEMA', `round ${p.round} is not in phase ${p.phase}`)
  // The codec is the charter's.
  if (JSON.stringify(p.codec) !== JSON.stringify(view.charter.rounds.compression))
    throw reject('SCHEMA', 'codec differs from the charter')
  // Its weight rests on no more samples than the charter allows a round: inner steps x batch size.
  const allowed = maxSamples(view.charter, p.phase)
  if (p.samples > allowed)
    throw reject('SAMPLES_OUT_OF_RANGE', `${p.samples} samples; the charter allows at most ${allowed}`)
  // Already accepted: a re-announcement. It is ACCEPTed again so gossipsub relays it to peers that
  // missed it (IGNORE would stop it here: a peer reachable only through us would never get it);
  // the handler drops it. The signature stage already proved it is the same signed statement.
  if (view.contribution(p.round, verified.digest) !== undefined) return
  // Only the open round is accepted: a closed round is history, a future one cannot have a base yet.
  if (view.checkpointAt(p.phase, p.round) !== undefined)
    throw ignore('ROUND_OUT_OF_WINDOW', `round ${p.round} is closed`)
  const base = view.checkpointAt(p.phase, p.round - 1)
  if (base === undefined) throw ignore('UNKNOWN_BASE', `no checkpoint for round ${p.round - 1} yet`)
  // It trained from the round's base checkpoint.
  if (base.id !== p.baseCheckpoint)
    throw reject('WRONG_BASE', 'contribution was not trained from the round base')
  // One contribution per peer per round: a second, different one is equivocation.
  for (const other of view.contributionsFor(p.round)) {
    if (other.contributor === verified.contributor)
      throw reject('CONFLICT', 'a second contribution from the same peer for the round')
  }
  // Each manifest is known, held by the contributor, and its consent had not ended when the round started.
  const chain = view.chainExclusions(base)
  const graceMs = view.charter.rounds.deadlineSeconds * 1000
  for (const manifestId of p.manifests)
    validateContributionManifest(consent, manifestId, verified.contributor, chain, now, graceMs)
}

/**
 * One manifest a contribution lists. `chain` is what the checkpoints up to the contribution's
 * base recorded: a manifest they record as expired, or withdraw entirely, had lost its consent
 * before the round started, and every peer holding the base sees that: training on it is a
 * violation (REJECT). Consent that ended during the round does not invalidate that round's
 * contributions (the trainer stopped using the items at its next step); the next checkpoint
 * records it. What only a clock can tell (a manifest that ended more than a round ago, or has not
 * started) is IGNOREd: clocks differ, so no one is charged for it.
 */
export function validateContributionManifest(
  consent: ConsentView,
  manifestId: string,
  contributor: string,
  chain: Pick<ChainExclusions, 'revocations' | 'expiredManifests'>,
  now: number = Date.now(),
  graceMs = 0,
): void {
  const manifest = consent.manifest(manifestId)
  // The manifest must be known; it may simply not have reached us yet, so this is not the sender's
  // fault. Its custodian serves it by digest: `detail` tells the handler what to fetch from whom.
  if (manifest === undefined)
    throw ignore('UNKNOWN_MANIFEST', `manifest ${manifestId} is not known here`, {
      manifest: manifestId,
      custodian: contributor,
    })
  // Only the custodian a manifest names may train on its images.
  if (manifest.custodian !== contributor)
    throw reject('FOREIGN_CUSTODIAN', 'contributor is not the custodian of a listed manifest')
  // Its consent had not ended by a checkpoint up to the base.
  if (chain.expiredManifests.has(manifestId))
    throw reject('EXPIRED', 'a listed manifest expired before the round started')
  // It was not withdrawn entirely before the round started.
  if (consent.fullyRevokedBy(manifestId, chain.revocations))
    throw reject('REVOKED', 'a listed manifest was revoked before the round started')
  // By our clock, it has started and it did not end more than a round ago.
  if (Date.parse(manifest.manifest.validFrom) > now)
    throw ignore('NOT_YET_VALID', 'a listed manifest is not valid yet')
  const end = manifestEnd(manifest)
  if (end !== undefined && end + graceMs <= now)
    throw ignore('EXPIRED', 'a listed manifest expired before this round could have started')
}

/** A CheckpointProvenance makes sense now: in the charter, one per round, genesis-shaped only at genesis. */
export function validateCheckpoint(view: RoundView, verified: VerifiedProvenance): void {
  const p = verified.predicate
  // Its round and phase exist in the charter.
  const genesis = genesisRound(view.plan, p.phase)
  if (p.round < genesis || p.round > lastRoundOf(view.plan, p.phase))
    throw reject('ROUND_OUT_OF_WINDOW', `round ${p.round} is outside phase ${p.phase}`)
  // A re-announcement of what we adopted: ACCEPTed so it reaches peers behind us that missed it
  // (restarted or late peers catch up this way); the handler skips it.
  if (view.checkpointById(verified.digest) !== undefined) return
  // Two different checkpoints for one round is a publisher equivocating: the first adopted wins.
  // Not the relay's fault (it may not have adopted either yet), so IGNORE; the signers are
  // charged and the evidence kept after validation (gossip.ts, verifier.ts).
  const adopted = view.checkpointAt(p.phase, p.round)
  if (adopted !== undefined)
    throw ignore('EQUIVOCATION', `another checkpoint for ${p.phase} round ${p.round} is adopted`, {
      adopted: adopted.id,
      conflicting: verified.digest,
    })
  // A genesis has no parent and no contributions; every other checkpoint has both, except a
  // rollback checkpoint under a rollback charter (a parent, its receipt, no contributions).
  const rollback = view.charter.onRevocation === 'rollback' && isRollbackShape(p, verified.files)
  if (
    (p.round === genesis) !== (p.parent === null) ||
    (!rollback && (p.parent === null) !== (p.contributions.length === 0))
  )
    throw reject('SCHEMA', 'genesis checkpoints, and only they, have no parent and no contributions')
  // Under a component autoencoder, every U-Net checkpoint names exactly the one the charter pins.
  const ae = view.charter.phases.autoencoder
  if (ae.mode === 'component' && p.phase === 'unet') {
    const named = p.components.filter((c) => c.role === 'autoencoder')
    if (
      named.length !== 1 ||
      named[0]?.checkpoint !== ae.checkpoint ||
      named[0]?.provenance !== ae.provenance
    )
      throw reject('SCHEMA', "a U-Net checkpoint must name the charter's component autoencoder")
  }
}
