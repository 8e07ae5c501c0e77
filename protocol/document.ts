// Routes any signed document to its verifier by content, for `coop verify <file>` and for
// tools that receive documents of unknown kind. The kinds are a closed set.
import {
  AUDIT_MAX_BYTES,
  AUDIT_PREDICATE_TYPE,
  CHARTER_MAX_BYTES,
  CHARTER_PAYLOAD_TYPE,
  CONTRIBUTION_MAX_BYTES,
  CONTRIBUTION_PREDICATE_TYPE,
  IN_TOTO_PAYLOAD_TYPE,
  MANIFEST_MAX_BYTES,
  PROVENANCE_MAX_BYTES,
  PROVENANCE_PREDICATE_TYPE,
  RECEIPT_MAX_BYTES,
  RECEIPT_PREDICATE_TYPE,
  REVOCATION_MAX_BYTES,
} from './constants.ts'
import { type DocumentInput, parseDocument } from './decode.ts'
import { fromBase64 } from './encoding.ts'
import { ProtocolError } from './errors.ts'
import { looksLikeManifest } from './manifest.ts'
import { looksLikeRevocation } from './revocation.ts'

export const DOCUMENT_KINDS = [
  'manifest',
  'revocation',
  'charter',
  'contribution',
  'provenance',
  'audit',
  'receipt',
] as const
export type DocumentKind = (typeof DOCUMENT_KINDS)[number]

/** Largest accepted encoding of each kind, checked before parsing (reasons in constants.ts). */
export const DOCUMENT_MAX_BYTES: Record<DocumentKind, number> = {
  manifest: MANIFEST_MAX_BYTES,
  revocation: REVOCATION_MAX_BYTES,
  charter: CHARTER_MAX_BYTES,
  contribution: CONTRIBUTION_MAX_BYTES,
  provenance: PROVENANCE_MAX_BYTES,
  audit: AUDIT_MAX_BYTES,
  receipt: RECEIPT_MAX_BYTES,
}

const LARGEST_DOCUMENT = Math.max(...Object.values(DOCUMENT_MAX_BYTES))

/**
 * Names the kind of a document from its content, without verifying it. UNKNOWN_TYPE when it is
 * none of the seven; the usual decoding errors when it is not canonical JSON at all.
 */
export function identifyDocument(input: DocumentInput): DocumentKind {
  // The largest kind's limit: the kind-specific verifier then applies the tighter one.
  const { value } = parseDocument(input, LARGEST_DOCUMENT, 'document')
  if (looksLikeManifest(value)) return 'manifest'
  if (looksLikeRevocation(value)) return 'revocation'
  const envelope = value as { payloadType?: unknown; payload?: unknown } | null
  if (typeof envelope === 'object' && envelope !== null && typeof envelope.payloadType === 'string') {
    if (envelope.payloadType === CHARTER_PAYLOAD_TYPE) return 'charter'
    if (envelope.payloadType === IN_TOTO_PAYLOAD_TYPE && typeof envelope.payload === 'string') {
      let predicateType: unknown
      try {
        predicateType = (
          JSON.parse(
            new TextDecoder('utf-8', { fatal: true }).decode(fromBase64(envelope.payload, 'payload')),
          ) as { predicateType?: unknown }
        )?.predicateType
      } catch (error) {
        if (error instanceof ProtocolError) throw error
        throw new ProtocolError('INVALID_JSON', 'envelope payload is not JSON', { cause: error })
      }
      if (predicateType === CONTRIBUTION_PREDICATE_TYPE) return 'contribution'
      if (predicateType === PROVENANCE_PREDICATE_TYPE) return 'provenance'
      if (predicateType === AUDIT_PREDICATE_TYPE) return 'audit'
      if (predicateType === RECEIPT_PREDICATE_TYPE) return 'receipt'
    }
  }
  throw new ProtocolError(
    'UNKNOWN_TYPE',
    'not a manifest, revocation, charter, contribution, provenance, audit or receipt document',
  )
}
