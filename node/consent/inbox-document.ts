// What one file dropped in <store>/inbox/ must be before the consent book looks at it: at most
// CONSENT_DOCUMENT_MAX_BYTES (the consent gossip limit it will travel under), UTF-8 JSON, and a
// manifest or a revocation credential. Pure, so the inbox's parsing is fuzzed on its own
// (test/fuzz/targets/inbox.ts); every refusal is a ConsentError MANIFEST_INVALID.
import { looksLikeManifest } from '../../protocol/manifest.ts'
import { looksLikeRevocation } from '../../protocol/revocation.ts'
import { CONSENT_DOCUMENT_MAX_BYTES } from '../constants.ts'
import { ConsentError } from './errors.ts'

export interface InboxDocument {
  kind: 'manifest' | 'revocation'
  document: object
}

const utf8 = new TextDecoder('utf-8', { fatal: true })

export function readInboxDocument(bytes: Uint8Array, name: string): InboxDocument {
  // Size first: nothing larger than gossip can carry is decoded.
  if (bytes.byteLength > CONSENT_DOCUMENT_MAX_BYTES)
    throw new ConsentError('MANIFEST_INVALID', `${name} exceeds ${CONSENT_DOCUMENT_MAX_BYTES} bytes`)
  let document: unknown
  try {
    document = JSON.parse(utf8.decode(bytes))
  } catch {
    throw new ConsentError('MANIFEST_INVALID', `${name} is not UTF-8 JSON`)
  }
  // A revocation is tried first: its type list never names a manifest.
  if (looksLikeRevocation(document)) return { kind: 'revocation', document: document as object }
  if (looksLikeManifest(document)) return { kind: 'manifest', document: document as object }
  throw new ConsentError('MANIFEST_INVALID', `${name} is neither a manifest nor a revocation`)
}
