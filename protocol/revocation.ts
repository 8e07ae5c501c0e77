// RevocationNotice: a VC 2.0 with an eddsa-jcs-2022 proof by the manifest's own issuer,
// withdrawing consent for some items of a manifest, or all of them. Kept forever.
import { z } from 'zod'
import { MANIFEST_MAX_ITEMS, REVOCATION_MAX_BYTES, VC_V2_CONTEXT } from './constants.ts'
import {
  addProof,
  assertSupportedProofSuite,
  dataIntegrityProofSchema,
  verifyProof,
  type DataIntegrityProof,
} from './dataintegrity.ts'
import { type DocumentInput, parseDocument, parseSchema } from './decode.ts'
import { sha256DigestOfText } from './digest.ts'
import { ProtocolError } from './errors.ts'
import { didKeyFromPublicKey, type Ed25519PrivateKey } from './keys.ts'
import { didKeySchema, dateTimeSchema, digestSchema, formatDateTime, longText } from './schemas.ts'
import { isSortedUnique } from './statement.ts'

export const REVOCATION_TYPE = 'ConsentRevocation'

export const revocationSchema = z.strictObject({
  '@context': z.tuple([z.literal(VC_V2_CONTEXT)]),
  type: z.tuple([z.literal('VerifiableCredential'), z.literal(REVOCATION_TYPE)]),
  issuer: didKeySchema,
  validFrom: dateTimeSchema,
  credentialSubject: z.strictObject({
    type: z.literal(REVOCATION_TYPE),
    manifest: digestSchema,
    items: z.union([
      z.literal('all'),
      z
        .array(digestSchema)
        .min(1)
        .max(MANIFEST_MAX_ITEMS)
        .refine((list) => isSortedUnique(list), 'items must be sorted and unique'),
    ]),
    reason: longText.optional(),
  }),
  proof: dataIntegrityProofSchema,
})

export type RevocationNotice = z.output<typeof revocationSchema> & { proof: DataIntegrityProof }

export interface CreateRevocationInput {
  /** The key that issued the manifest. */
  issuerKey: Ed25519PrivateKey
  /** Digest of the manifest being revoked (sha256 of its canonical bytes). */
  manifest: string
  /** Item digests to withdraw, or 'all'. */
  items: readonly string[] | 'all'
  reason?: string
  revokedAt?: Date
}

export function createRevocation(input: CreateRevocationInput): RevocationNotice {
  const revokedAt = formatDateTime(input.revokedAt ?? new Date())
  const unsecured = {
    '@context': [VC_V2_CONTEXT],
    type: ['VerifiableCredential', REVOCATION_TYPE],
    issuer: didKeyFromPublicKey(input.issuerKey.publicKey),
    validFrom: revokedAt,
    credentialSubject: {
      type: REVOCATION_TYPE,
      manifest: input.manifest,
      items: input.items === 'all' ? 'all' : [...new Set(input.items)].sort(),
      ...(input.reason === undefined ? {} : { reason: input.reason }),
    },
  }
  const notice = addProof(unsecured, input.issuerKey, revokedAt)
  parseSchema(revocationSchema, notice, 'revocation')
  return notice as RevocationNotice
}

export interface VerifiedRevocation {
  revocation: RevocationNotice
  digest: string
  issuer: string
  manifest: string
  items: string[] | 'all'
  revokedAt: string
}

// Results of verifyRevocation, so they can be passed on without being verified twice and
// without any look-alike object being taken as verified.
const verifiedRevocations = new WeakSet<object>()

export function isVerifiedRevocation(value: unknown): value is VerifiedRevocation {
  return typeof value === 'object' && value !== null && verifiedRevocations.has(value)
}

export function looksLikeRevocation(value: unknown): boolean {
  const type = (value as { type?: unknown } | null)?.type
  return Array.isArray(type) && type.includes(REVOCATION_TYPE)
}

/**
 * Verifies a revocation notice, the document parsed once and the cheapest checks first: size,
 * canonical JSON, type (UNKNOWN_TYPE), cryptosuite (UNSUPPORTED_CRYPTOSUITE), proof by the
 * issuer (BAD_KEY, ISSUER_MISMATCH, BAD_SIGNATURE), then the closed schema (SCHEMA). Whether it
 * applies to a manifest is decided against that manifest (same issuer, items it lists).
 */
export function verifyRevocation(input: DocumentInput): VerifiedRevocation {
  const parsed = parseDocument(input, REVOCATION_MAX_BYTES, 'revocation')
  const value = parsed.value
  if (!looksLikeRevocation(value))
    throw new ProtocolError('UNKNOWN_TYPE', 'not a ConsentRevocation credential')
  const record = value as Record<string, unknown>
  assertSupportedProofSuite(record)
  if (typeof record.issuer !== 'string')
    throw new ProtocolError('SCHEMA', 'revocation: issuer must be a did:key')
  verifyProof(record, record.issuer, parsed.text)
  const revocation = parseSchema(revocationSchema, value, 'revocation') as RevocationNotice
  const verified: VerifiedRevocation = {
    revocation,
    digest: sha256DigestOfText(parsed.text),
    issuer: revocation.issuer,
    manifest: revocation.credentialSubject.manifest,
    items: revocation.credentialSubject.items,
    revokedAt: revocation.validFrom,
  }
  verifiedRevocations.add(verified)
  return verified
}
