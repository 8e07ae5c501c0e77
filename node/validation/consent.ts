// Validation chain of the consent topic: consent manifests and revocation notices.
//
// REJECT (the sender is charged) only for faults of the document itself, which every honest peer
// sees the same way: a bad signature, a custodian other than the sender, a license or scope the
// charter refuses, a revocation by someone other than the manifest's issuer or naming items the
// manifest does not list. What depends on this node's clock or on what it holds (a validity
// window, a revocation it has and the sender may not) is IGNOREd: an honest custodian
// re-announcing its manifest a moment before a revocation reaches it must not lose standing.
import {
  type CoopCharter,
  licenseSatisfied,
  type VerifiedManifest,
  type VerifiedRevocation,
  verifyManifest,
  verifyRevocation,
} from '../../protocol/index.ts'
import { scopeForbids } from '../../protocol/manifest.ts'
import type { RevocationStatus } from '../consent/book.ts'
import type { HoldOutcome } from '../consent/held.ts'
import {
  type ChainContext,
  type ChainValidator,
  createChainValidator,
  type KindStages,
  type StagesByKind,
  viaProtocol,
} from './chain.ts'
import { ignore, reject } from '../p2p/gossip-errors.ts'

/** What the charter says about consent. */
export interface ConsentPolicy {
  acceptedLicenses: CoopCharter['acceptedLicenses']
  admission: CoopCharter['admission']
  intendedUse: CoopCharter['intendedUse']
  /** Clock for validity windows (tests pin it). */
  now?: () => Date
}

/** The consent state the chain reads (node/consent/book.ts's ConsentBook implements it). */
export interface ConsentLookup {
  /** What a revocation would do here: known, applies, names an unknown manifest, or can never apply. */
  revocationStatus(revocation: VerifiedRevocation): RevocationStatus
  /** Keeps a revocation for a manifest not held yet, bounded per sender, per issuer and in total. */
  holdRevocation(revocation: VerifiedRevocation, sender: string): HoldOutcome
  /** Every item of the manifest withdrawn by its issuer (applied or held revocations). */
  fullyRevoked(manifest: VerifiedManifest): boolean
}

export function manifestStages(
  policy: ConsentPolicy,
  lookup: ConsentLookup,
): KindStages<unknown, VerifiedManifest> {
  const now = policy.now ?? (() => new Date())
  return {
    signature: (_, ctx) =>
      // A ConsentManifest credential whose issuer's eddsa-jcs-2022 proof verifies, with the closed
      // manifest schema, items matching their Merkle root and generative training allowed
      // (verified from the parsed message: no re-parse). Its window is judged below, as IGNORE.
      viaProtocol('BAD_SIGNATURE', () => verifyManifest(ctx.parsed, { now: now(), validityWindow: 'skip' })),
    async semantics(verified: VerifiedManifest, ctx: ChainContext) {
      // Only the custodian announces a manifest: a node never gossips consent that names another node.
      if (verified.custodian !== ctx.from)
        throw reject('FOREIGN_CUSTODIAN', `manifest names custodian ${verified.custodian}`)
      // Under an allowlist charter, only admitted peers may hold consent for this coop.
      if (policy.admission.mode === 'allowlist' && !policy.admission.peers.includes(verified.custodian)) {
        throw reject('ADMISSION_DENIED', 'custodian is not on the charter allowlist')
      }
      // The manifest's license, and every per-item license, is accepted by the charter.
      const licenses = [
        verified.manifest.credentialSubject.license,
        ...verified.items.flatMap((item) => (item.license === undefined ? [] : [item.license])),
      ]
      for (const license of new Set(licenses)) {
        const accepted = await viaProtocol('LICENSE_NOT_ACCEPTED', () =>
          licenseSatisfied(license, policy.acceptedLicenses),
        )
        if (!accepted)
          throw reject('LICENSE_NOT_ACCEPTED', `license ${license} is not accepted by the charter`)
      }
      // The manifest's scope allows what the charter says the cooperative does with its weights.
      const forbidden = scopeForbids(verified.manifest.credentialSubject.scope, policy.intendedUse)
      if (forbidden !== undefined) throw reject('SCOPE_NOT_ALLOWED', forbidden)
      // It is within its validity window by our clock (clocks differ: no one is charged).
      const at = now().getTime()
      if (Date.parse(verified.manifest.validFrom) > at)
        throw ignore('NOT_YET_VALID', `valid from ${verified.manifest.validFrom}`)
      if (verified.manifest.validUntil !== undefined && Date.parse(verified.manifest.validUntil) <= at)
        throw ignore('EXPIRED', `expired at ${verified.manifest.validUntil}`)
      // It is not withdrawn entirely by its issuer (the sender may not have the revocation yet).
      if (lookup.fullyRevoked(verified)) throw ignore('REVOKED', 'every item of the manifest is revoked')
    },
  }
}

export function revocationStages(lookup: ConsentLookup): KindStages<unknown, VerifiedRevocation> {
  return {
    signature: (_, ctx) =>
      // A ConsentRevocation credential whose issuer's eddsa-jcs-2022 proof verifies, with the
      // closed revocation schema (verified from the parsed message: no re-parse).
      viaProtocol('BAD_SIGNATURE', () => verifyRevocation(ctx.parsed)),
    semantics(verified: VerifiedRevocation, ctx: ChainContext) {
      const status = lookup.revocationStatus(verified)
      // Already applied: a re-announcement, ACCEPTed so it reaches peers that missed it; the handler skips it.
      if (status.kind === 'known' || status.kind === 'applies') return
      // Signed by someone other than the manifest's issuer, or naming items the manifest does not
      // list: every peer holding the manifest sees the same, so the sender answers for it.
      if (status.kind === 'refused') throw reject(status.code, status.message)
      // For a manifest we do not hold: held (bounded) and checked when the manifest arrives, but
      // not relayed, since nothing about it can be checked yet.
      const outcome = lookup.holdRevocation(verified, ctx.from)
      throw ignore('UNKNOWN_MANIFEST', `revocation for a manifest not held here (${outcome})`)
    },
  }
}

export function consentStages(policy: ConsentPolicy, lookup: ConsentLookup): StagesByKind {
  return { manifest: manifestStages(policy, lookup), revocation: revocationStages(lookup) }
}

/** The consent topic's validator; `.verified(data)` gives handlers the VerifiedManifest/VerifiedRevocation. */
export function createConsentValidator(policy: ConsentPolicy, lookup: ConsentLookup): ChainValidator {
  return createChainValidator('consent', consentStages(policy, lookup))
}
