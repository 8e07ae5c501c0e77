// Validation chain of the consent topic: consent manifests and revocation notices.
import {
  type CoopCharter,
  licenseSatisfied,
  type VerifiedManifest,
  type VerifiedRevocation,
  verifyManifest,
  verifyRevocation,
} from '../../protocol/index.ts'
import {
  type ChainContext,
  type ChainValidator,
  createChainValidator,
  type KindStages,
  type StagesByKind,
  viaProtocol,
} from './chain.ts'
import { reject } from '../p2p/gossip-errors.ts'

/** What the charter says about consent. */
export interface ConsentPolicy {
  acceptedLicenses: CoopCharter['acceptedLicenses']
  admission: CoopCharter['admission']
  /** Clock for validity windows (tests pin it). */
  now?: () => Date
}

/** The consent state the chain reads (node/consent/book.ts's ConsentBook implements it). */
export interface ConsentLookup {
  /** Verified revocations naming the manifest, from any issuer (only the manifest's issuer's apply). */
  revocationsFor(manifestDigest: string): Promise<VerifiedRevocation[]>
  /** The issuer (did:key) of a manifest we hold, if we hold it. */
  manifestIssuer(manifestDigest: string): Promise<string | undefined>
}

export function manifestStages(
  policy: ConsentPolicy,
  lookup: ConsentLookup,
): KindStages<unknown, VerifiedManifest> {
  const now = policy.now ?? (() => new Date())
  return {
    signature: (_, ctx) =>
      // A ConsentManifest credential whose issuer's eddsa-jcs-2022 proof verifies, with the closed
      // manifest schema, items matching their Merkle root, within its validity window and with
      // generative training allowed (verified from the parsed message: no re-parse).
      viaProtocol('BAD_SIGNATURE', () => verifyManifest(ctx.parsed, { now: now() })),
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
      // The manifest is not revoked as a whole by its issuer (a partial revocation only removes items).
      const revocations = (await lookup.revocationsFor(verified.digest)).filter(
        (r) => r.issuer === verified.issuer,
      )
      const revoked = new Set(
        revocations.flatMap((r) => (r.items === 'all' ? verified.items.map((item) => item.digest) : r.items)),
      )
      if (revocations.length > 0 && verified.items.every((item) => revoked.has(item.digest)))
        throw reject('REVOKED', 'every item of the manifest is revoked')
    },
  }
}

export function revocationStages(lookup: ConsentLookup): KindStages<unknown, VerifiedRevocation> {
  return {
    signature: (_, ctx) =>
      // A ConsentRevocation credential whose issuer's eddsa-jcs-2022 proof verifies, with the
      // closed revocation schema (verified from the parsed message: no re-parse).
      viaProtocol('BAD_SIGNATURE', () => verifyRevocation(ctx.parsed)),
    async semantics(verified: VerifiedRevocation) {
      // A revocation of a manifest we hold is signed by that manifest's issuer; for one we do not
      // hold yet it is kept, and verifyManifest applies it only if the issuers match.
      const issuer = await lookup.manifestIssuer(verified.manifest)
      if (issuer !== undefined && issuer !== verified.issuer)
        throw reject('NOT_ISSUER', 'revocation is not signed by the manifest issuer')
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
