// ConsentManifest: a W3C Verifiable Credential 2.0 issued by a rights holder's did:key and
// secured with an eddsa-jcs-2022 DataIntegrityProof. It names the node (custodian) allowed to
// train on the listed images, the license and attribution, the CAWG training-and-data-mining
// usage entries, the scope, and the items with their RFC 6962 Merkle root.
import { z } from 'zod'
import {
  MANIFEST_MAX_BYTES,
  MANIFEST_MAX_ITEM_BYTES,
  MANIFEST_MAX_ITEMS,
  MANIFEST_MEDIA_TYPES,
  VC_V2_CONTEXT,
} from './constants.ts'
import {
  addProof,
  assertSupportedProofSuite,
  dataIntegrityProofSchema,
  verifyProof,
  type DataIntegrityProof,
} from './dataintegrity.ts'
import { type DocumentInput, parseDocument, parseSchema } from './decode.ts'
import { sha256Digest, sha256DigestOfText } from './digest.ts'
import { ProtocolError } from './errors.ts'
import { canonicalBytes } from './jcs.ts'
import { didKeyFromPublicKey, type Ed25519PrivateKey } from './keys.ts'
import { licenseSatisfied, parseLicense } from './license.ts'
import { merkleRoot } from './merkle.ts'
import { isVerifiedRevocation, verifyRevocation, type VerifiedRevocation } from './revocation.ts'
import {
  attributionSchema,
  type Attribution,
  dateTimeSchema,
  didKeySchema,
  digestSchema,
  formatDateTime,
  longText,
  nonNegativeInt,
  peerIdSchema,
  positiveInt,
} from './schemas.ts'
import { isSortedUnique } from './statement.ts'

export const MANIFEST_TYPE = 'ConsentManifest'

/** CAWG training-and-data-mining assertion values; `constrained` counts as not allowed here. */
export const usageValueSchema = z.enum(['allowed', 'notAllowed', 'constrained'])
export type UsageValue = z.output<typeof usageValueSchema>

const usageEntrySchema = z.strictObject({ use: usageValueSchema, constraint_info: longText.optional() })

export const usageSchema = z.strictObject({
  'cawg.ai_generative_training': usageEntrySchema,
  'cawg.ai_training': usageEntrySchema.optional(),
  'cawg.ai_inference': usageEntrySchema.optional(),
  'cawg.data_mining': usageEntrySchema.optional(),
})

export const manifestItemSchema = z.strictObject({
  digest: digestSchema,
  mediaType: z.enum(MANIFEST_MEDIA_TYPES),
  byteLength: positiveInt.max(MANIFEST_MAX_ITEM_BYTES),
  license: z.string().min(1).max(1024).optional(),
  attribution: attributionSchema.optional(),
})
export type ManifestItem = z.output<typeof manifestItemSchema>

export const consentSubjectSchema = z.strictObject({
  type: z.literal('TrainingConsent'),
  custodian: peerIdSchema,
  license: z.string().min(1).max(1024),
  attribution: attributionSchema,
  usage: usageSchema,
  scope: z.strictObject({ commercialUse: z.boolean(), weightRedistribution: z.boolean() }),
  itemCount: nonNegativeInt.max(MANIFEST_MAX_ITEMS),
  merkleRoot: digestSchema,
  items: z.array(manifestItemSchema).min(1).max(MANIFEST_MAX_ITEMS),
})
export type ConsentSubject = z.output<typeof consentSubjectSchema>

export const manifestSchema = z.strictObject({
  '@context': z.tuple([z.literal(VC_V2_CONTEXT)]),
  type: z.tuple([z.literal('VerifiableCredential'), z.literal(MANIFEST_TYPE)]),
  issuer: didKeySchema,
  validFrom: dateTimeSchema,
  validUntil: dateTimeSchema.optional(),
  credentialSubject: consentSubjectSchema,
  proof: dataIntegrityProofSchema,
})

export type ConsentManifest = z.output<typeof manifestSchema> & { proof: DataIntegrityProof }

export interface CreateManifestInput {
  /** The rights holder's key; its did:key becomes the issuer. */
  issuerKey: Ed25519PrivateKey
  custodian: string
  license: string
  attribution: Attribution
  /** Defaults to generative training allowed. */
  usage?: z.input<typeof usageSchema>
  scope: { commercialUse: boolean; weightRedistribution: boolean }
  items: ManifestItem[]
  validFrom?: Date
  validUntil?: Date
  /** Proof creation time; defaults to validFrom. */
  created?: Date
}

/** Items in canonical order (by digest); duplicates are one image listed twice, rejected. */
export function sortItems(items: readonly ManifestItem[]): ManifestItem[] {
  const sorted = [...items].sort((a, b) => (a.digest < b.digest ? -1 : a.digest > b.digest ? 1 : 0))
  for (let i = 1; i < sorted.length; i++)
    if ((sorted[i] as ManifestItem).digest === (sorted[i - 1] as ManifestItem).digest)
      throw new ProtocolError('SCHEMA', `item ${(sorted[i] as ManifestItem).digest} is listed twice`)
  return sorted
}

/** Builds, validates and signs a consent manifest. */
export function createManifest(input: CreateManifestInput): ConsentManifest {
  if (input.items.length > MANIFEST_MAX_ITEMS)
    throw new ProtocolError('TOO_LARGE', `a manifest lists at most ${MANIFEST_MAX_ITEMS} items`)
  parseLicense(input.license)
  for (const item of input.items) if (item.license !== undefined) parseLicense(item.license)
  const items = sortItems(input.items)
  const validFrom = formatDateTime(input.validFrom ?? new Date())
  const unsecured = {
    '@context': [VC_V2_CONTEXT],
    type: ['VerifiableCredential', MANIFEST_TYPE],
    issuer: didKeyFromPublicKey(input.issuerKey.publicKey),
    validFrom,
    ...(input.validUntil === undefined ? {} : { validUntil: formatDateTime(input.validUntil) }),
    credentialSubject: {
      type: 'TrainingConsent',
      custodian: input.custodian,
      license: input.license,
      attribution: input.attribution,
      usage: input.usage ?? { 'cawg.ai_generative_training': { use: 'allowed' } },
      scope: input.scope,
      itemCount: items.length,
      merkleRoot: merkleRoot(items.map((item) => item.digest)),
      items,
    },
  }
  const manifest = addProof(
    unsecured,
    input.issuerKey,
    input.created === undefined ? validFrom : formatDateTime(input.created),
  )
  parseSchema(manifestSchema, manifest, 'manifest')
  return manifest as ConsentManifest
}

/** The manifest's name: sha256 of its canonical bytes (proof included). */
export function manifestDigest(manifest: ConsentManifest): string {
  return sha256Digest(canonicalBytes(manifest))
}

export interface VerifyManifestOptions {
  /** The time validity is judged at. */
  now: Date
  /**
   * 'skip' verifies everything but the validity window: a node re-reading a manifest it stored
   * (an expired one still names the license and attribution of checkpoints trained before).
   */
  validityWindow?: 'check' | 'skip'
  /** When given, the manifest's license (and every item license) must be satisfiable from these SPDX terms. */
  acceptedLicenses?: readonly string[]
  /** Revocation notices (documents or already verified) to apply. */
  revocations?: readonly (DocumentInput | VerifiedRevocation)[]
  /** When given, the manifest must name this PeerId as custodian. */
  custodian?: string
  /** When given (a coop's charter), the manifest's scope must allow this use (SCOPE_NOT_ALLOWED). */
  intendedUse?: { commercialUse: boolean; weightRedistribution: boolean }
}

/** Why a manifest's scope forbids an intended use, or undefined when it allows it. */
export function scopeForbids(
  scope: ConsentSubject['scope'],
  intendedUse: { commercialUse: boolean; weightRedistribution: boolean },
): string | undefined {
  if (intendedUse.commercialUse && !scope.commercialUse)
    return 'the manifest forbids commercial use and the cooperative intends it'
  if (intendedUse.weightRedistribution && !scope.weightRedistribution)
    return 'the manifest forbids weight redistribution and the cooperative redistributes its weights'
  return undefined
}

export interface VerifiedManifest {
  manifest: ConsentManifest
  digest: string
  issuer: string
  custodian: string
  items: ManifestItem[]
  merkleRoot: string
  /** Items withdrawn by verified revocations (all items when the whole manifest is revoked, which throws). */
  revokedItems: Set<string>
  /** Digests of the revocations that applied to this manifest. */
  appliedRevocations: string[]
}

/** True when a parsed JSON value claims to be a consent manifest (used to route documents). */
export function looksLikeManifest(value: unknown): boolean {
  const type = (value as { type?: unknown } | null)?.type
  return Array.isArray(type) && type.includes(MANIFEST_TYPE)
}

/**
 * Verifies a consent manifest. Checks, in order (cheapest first, the document parsed once):
 *  1. size (TOO_LARGE), UTF-8 JSON (INVALID_JSON), canonical form (NOT_CANONICAL);
 *  2. it is a ConsentManifest credential (UNKNOWN_TYPE);
 *  3. proof type/cryptosuite (UNSUPPORTED_CRYPTOSUITE); `issuer` is a string (SCHEMA);
 *  4. the proof: did:key method of the issuer (BAD_KEY, ISSUER_MISMATCH), signature (BAD_SIGNATURE),
 *     before the closed schema, so a forged document costs one hash and one signature check;
 *  5. closed schema (SCHEMA); license and item licenses are SPDX expressions (INVALID_LICENSE);
 *  6. items sorted and unique, itemCount and merkleRoot match the items (MERKLE_MISMATCH);
 *  7. validFrom <= now (NOT_YET_VALID), now < validUntil (EXPIRED), unless `validityWindow` is 'skip';
 *  8. generative training allowed (USAGE_NOT_ALLOWED); custodian (CUSTODIAN_MISMATCH);
 *  9. licenses accepted (LICENSE_NOT_ACCEPTED); scope allows the intended use (SCOPE_NOT_ALLOWED);
 * 10. revocations (REVOKED if all items are revoked).
 */
export function verifyManifest(input: DocumentInput, options: VerifyManifestOptions): VerifiedManifest {
  if (!(options?.now instanceof Date) || !Number.isFinite(options.now.getTime()))
    throw new ProtocolError('SCHEMA', 'verifyManifest needs a valid `now`')
  const parsed = parseDocument(input, MANIFEST_MAX_BYTES, 'manifest')
  const value = parsed.value
  if (!looksLikeManifest(value)) throw new ProtocolError('UNKNOWN_TYPE', 'not a ConsentManifest credential')
  const record = value as Record<string, unknown>
  assertSupportedProofSuite(record)
  if (typeof record.issuer !== 'string')
    throw new ProtocolError('SCHEMA', 'manifest: issuer must be a did:key')
  verifyProof(record, record.issuer, parsed.text)
  const manifest = parseSchema(manifestSchema, value, 'manifest') as ConsentManifest
  const subject = manifest.credentialSubject
  parseLicense(subject.license)
  for (const item of subject.items) if (item.license !== undefined) parseLicense(item.license)

  const digests = subject.items.map((item) => item.digest)
  if (!isSortedUnique(digests))
    throw new ProtocolError('MERKLE_MISMATCH', 'items must be sorted by digest and unique')
  if (subject.itemCount !== digests.length)
    throw new ProtocolError(
      'MERKLE_MISMATCH',
      `itemCount ${subject.itemCount} but ${digests.length} items listed`,
    )
  if (merkleRoot(digests) !== subject.merkleRoot)
    throw new ProtocolError('MERKLE_MISMATCH', 'merkleRoot does not match the items')

  const now = options.now.getTime()
  if (options.validityWindow !== 'skip') {
    if (Date.parse(manifest.validFrom) > now)
      throw new ProtocolError('NOT_YET_VALID', `valid from ${manifest.validFrom}`)
    if (manifest.validUntil !== undefined && Date.parse(manifest.validUntil) <= now)
      throw new ProtocolError('EXPIRED', `expired at ${manifest.validUntil}`)
  }
  if (Date.parse(manifest.validUntil ?? manifest.validFrom) < Date.parse(manifest.validFrom))
    throw new ProtocolError('SCHEMA', 'validUntil precedes validFrom')

  // `constrained` carries free-text conditions no machine can check: treated as not allowed.
  const generative = subject.usage['cawg.ai_generative_training'].use
  if (generative !== 'allowed')
    throw new ProtocolError('USAGE_NOT_ALLOWED', `generative training is ${generative}`)
  if (options.custodian !== undefined && subject.custodian !== options.custodian)
    throw new ProtocolError('CUSTODIAN_MISMATCH', `manifest names custodian ${subject.custodian}`)

  if (options.acceptedLicenses !== undefined) {
    if (!licenseSatisfied(subject.license, options.acceptedLicenses))
      throw new ProtocolError('LICENSE_NOT_ACCEPTED', `license ${subject.license} is not accepted`)
    for (const item of subject.items)
      if (item.license !== undefined && !licenseSatisfied(item.license, options.acceptedLicenses))
        throw new ProtocolError(
          'LICENSE_NOT_ACCEPTED',
          `item ${item.digest} license ${item.license} is not accepted`,
        )
  }

  if (options.intendedUse !== undefined) {
    const forbidden = scopeForbids(subject.scope, options.intendedUse)
    if (forbidden !== undefined) throw new ProtocolError('SCOPE_NOT_ALLOWED', forbidden)
  }

  const digest = sha256DigestOfText(parsed.text)
  const verified: VerifiedManifest = {
    manifest,
    digest,
    issuer: manifest.issuer,
    custodian: subject.custodian,
    items: subject.items,
    merkleRoot: subject.merkleRoot,
    revokedItems: new Set(),
    appliedRevocations: [],
  }
  for (const candidate of options.revocations ?? []) {
    // Only results that verifyRevocation itself produced skip re-verification: a look-alike object does not.
    const revocation = isVerifiedRevocation(candidate)
      ? candidate
      : verifyRevocation(candidate as DocumentInput)
    if (revocation.manifest !== digest) continue
    if (revocation.issuer !== manifest.issuer)
      throw new ProtocolError('ISSUER_MISMATCH', 'a revocation for this manifest is signed by another issuer')
    verified.appliedRevocations.push(revocation.digest)
    const listed = new Set(digests)
    const revoked = revocation.items === 'all' ? digests : revocation.items.filter((item) => listed.has(item))
    for (const item of revoked) verified.revokedItems.add(item)
  }
  if (verified.appliedRevocations.length > 0 && digests.every((d) => verified.revokedItems.has(d)))
    throw new ProtocolError('REVOKED', 'consent for every item of this manifest has been revoked')
  return verified
}
