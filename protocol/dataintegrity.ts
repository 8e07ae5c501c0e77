// W3C Data Integrity proofs with the eddsa-jcs-2022 cryptosuite (W3C "Data Integrity EdDSA
// Cryptosuites v1.0", section 3.3), for documents issued by a did:key:
//   proofConfig   = proof options without proofValue, with "@context" copied from the document
//   proofHash     = SHA-256(JCS(proofConfig))
//   documentHash  = SHA-256(JCS(document without "proof"))
//   signature     = Ed25519(proofHash || documentHash)          (64 bytes)
//   proofValue    = "z" + base58btc(signature)
import { z } from 'zod'
import { sha256, sha256OfText } from './digest.ts'
import { fromBase58btc, toBase58btc } from './encoding.ts'
import { ProtocolError } from './errors.ts'
import { canonicalBytes, canonicalize } from './jcs.ts'
import {
  publicKeyFromVerificationMethod,
  sign,
  verificationMethodFor,
  verify,
  type Ed25519PrivateKey,
  type Ed25519PublicKey,
} from './keys.ts'
import { dateTimeSchema } from './schemas.ts'

export const DATA_INTEGRITY_PROOF_TYPE = 'DataIntegrityProof'
export const EDDSA_JCS_2022 = 'eddsa-jcs-2022'
export const ASSERTION_METHOD = 'assertionMethod'

export interface DataIntegrityProof {
  type: typeof DATA_INTEGRITY_PROOF_TYPE
  cryptosuite: typeof EDDSA_JCS_2022
  created: string
  verificationMethod: string
  proofPurpose: typeof ASSERTION_METHOD
  '@context': string[]
  proofValue: string
}

export const dataIntegrityProofSchema = z.strictObject({
  type: z.literal(DATA_INTEGRITY_PROOF_TYPE),
  cryptosuite: z.literal(EDDSA_JCS_2022),
  created: dateTimeSchema,
  verificationMethod: z.string().min(1).max(256),
  proofPurpose: z.literal(ASSERTION_METHOD),
  '@context': z.array(z.string().min(1).max(256)).min(1).max(16),
  proofValue: z.string().min(1).max(128),
})

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length)
  out.set(a)
  out.set(b, a.length)
  return out
}

/** proofHash || documentHash: the 64 bytes eddsa-jcs-2022 signs. */
export function eddsaJcs2022HashData(
  proofConfig: Record<string, unknown>,
  unsecuredDocument: Record<string, unknown> | string,
): Uint8Array {
  const documentHash =
    typeof unsecuredDocument === 'string'
      ? sha256OfText(unsecuredDocument)
      : sha256(canonicalBytes(unsecuredDocument))
  return concat(sha256(canonicalBytes(proofConfig)), documentHash)
}

/**
 * The canonical text of `document` without its top-level `proof`, cut out of `canonicalText`
 * (which must be the canonical text of `document`): JCS sorts members, so only the members from
 * `proof` on are serialised again, and a 1 MiB document is not canonicalised a second time.
 * Falls back to canonicalising when the text does not end as expected.
 */
function unsecuredCanonicalText(document: Record<string, unknown>, canonicalText: string): string {
  const after = Object.keys(document)
    .filter((key) => key > 'proof')
    .sort()
    .map((key) => `${canonicalize(key)}:${canonicalize(document[key])}`)
  const tail = `${[`"proof":${canonicalize(document.proof)}`, ...after].join(',')}}`
  if (!canonicalText.endsWith(tail)) {
    const { proof: _omitted, ...unsecured } = document
    return canonicalize(unsecured)
  }
  const head = canonicalText.slice(0, canonicalText.length - tail.length)
  if (after.length > 0) return `${head}${after.join(',')}}`
  return head === '{' ? '{}' : `${head.slice(0, -1)}}`
}

/** Adds an eddsa-jcs-2022 DataIntegrityProof made with `key`, whose did:key must be the issuer. */
export function addProof<T extends { '@context': string[] }>(
  unsecuredDocument: T,
  key: Ed25519PrivateKey,
  created: string,
): T & { proof: DataIntegrityProof } {
  if ('proof' in unsecuredDocument) throw new ProtocolError('SCHEMA', 'document already has a proof')
  const proofConfig = {
    type: DATA_INTEGRITY_PROOF_TYPE,
    cryptosuite: EDDSA_JCS_2022,
    created,
    verificationMethod: verificationMethodFor(key.publicKey),
    proofPurpose: ASSERTION_METHOD,
    '@context': unsecuredDocument['@context'],
  } as const
  const signature = sign(key, eddsaJcs2022HashData(proofConfig, unsecuredDocument))
  return {
    ...unsecuredDocument,
    proof: {
      ...proofConfig,
      '@context': [...unsecuredDocument['@context']],
      proofValue: toBase58btc(signature),
    },
  }
}

/**
 * Checks the proof of a secured document whose shape the caller has already validated.
 * Order: type and cryptosuite (UNSUPPORTED_CRYPTOSUITE), proof shape (SCHEMA), proof @context
 * equals the document's (SCHEMA), verification method is a did:key URL (BAD_KEY) naming the
 * expected issuer (ISSUER_MISMATCH), proofValue encoding (BAD_ENCODING), signature (BAD_SIGNATURE).
 */
/**
 * An unknown proof type or cryptosuite is its own error (UNSUPPORTED_CRYPTOSUITE), checked before
 * the schema so that a verifier names the suite it cannot verify rather than a schema mismatch.
 */
export function assertSupportedProofSuite(securedDocument: Record<string, unknown>): void {
  const proof = securedDocument.proof
  if (typeof proof !== 'object' || proof === null) return
  const { type, cryptosuite } = proof as Record<string, unknown>
  if (type !== 'DataIntegrityProof' || cryptosuite !== 'eddsa-jcs-2022')
    throw new ProtocolError(
      'UNSUPPORTED_CRYPTOSUITE',
      'only DataIntegrityProof with eddsa-jcs-2022 is accepted',
    )
}

/**
 * `canonicalText`, when given, is the canonical JSON text of `securedDocument` (a verifier that
 * parsed the document from its canonical bytes has it): the document hash is then computed from
 * it without canonicalising the document again.
 */
export function verifyProof(
  securedDocument: Record<string, unknown>,
  issuerDid: string,
  canonicalText?: string,
): Ed25519PublicKey {
  const rawProof = securedDocument.proof
  if (typeof rawProof !== 'object' || rawProof === null || Array.isArray(rawProof))
    throw new ProtocolError('SCHEMA', 'document needs exactly one proof object')
  const proofRecord = rawProof as Record<string, unknown>
  if (proofRecord.type !== DATA_INTEGRITY_PROOF_TYPE || proofRecord.cryptosuite !== EDDSA_JCS_2022)
    throw new ProtocolError(
      'UNSUPPORTED_CRYPTOSUITE',
      `only ${DATA_INTEGRITY_PROOF_TYPE} with ${EDDSA_JCS_2022} is accepted`,
    )
  const parsed = dataIntegrityProofSchema.safeParse(proofRecord)
  if (!parsed.success)
    throw new ProtocolError('SCHEMA', `proof: ${parsed.error.issues[0]?.message ?? 'invalid'}`)
  const proof = parsed.data
  // The spec lets a proof @context be a prefix of the document's; we issue them equal and accept only that.
  if (canonicalize(proof['@context']) !== canonicalize(securedDocument['@context']))
    throw new ProtocolError('SCHEMA', 'proof @context differs from the document @context')
  const publicKey = publicKeyFromVerificationMethod(proof.verificationMethod)
  if (!proof.verificationMethod.startsWith(`${issuerDid}#`))
    throw new ProtocolError('ISSUER_MISMATCH', 'proof is not made with the issuer key')
  const signature = fromBase58btc(proof.proofValue, 'proofValue')
  const { proofValue: _value, ...proofConfig } = proof
  let unsecuredDocument: Record<string, unknown> | string
  if (canonicalText !== undefined) unsecuredDocument = unsecuredCanonicalText(securedDocument, canonicalText)
  else {
    const { proof: _omitted, ...rest } = securedDocument
    unsecuredDocument = rest
  }
  if (!verify(publicKey, eddsaJcs2022HashData(proofConfig, unsecuredDocument), signature))
    throw new ProtocolError('BAD_SIGNATURE', 'Data Integrity proof does not verify')
  return publicKey
}
