// The consent inbox's parsing (node/consent/inbox-document.ts), then what the consent book checks
// of a document before it records it (the protocol verifier of its kind) and the gossip encoding
// the inbox does before publishing: arbitrary bytes, mutations of the valid manifest and
// revocation vectors, and structural JSON mutations of them. Typed errors: ConsentError,
// ProtocolError, GossipValidationError (TOO_LARGE). Bound: the file's size.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import fc from 'fast-check'
import { ProtocolError } from '../../../protocol/errors.ts'
import { verifyManifest } from '../../../protocol/manifest.ts'
import { verifyRevocation } from '../../../protocol/revocation.ts'
import { ConsentError } from '../../../node/consent/errors.ts'
import { readInboxDocument } from '../../../node/consent/inbox-document.ts'
import { GossipValidationError } from '../../../node/p2p/gossip-errors.ts'
import { encodeGossipMessage } from '../../../node/validation/messages.ts'
import { type FuzzTarget, mutatedJson, mutations, typedOutcome } from '../harness.ts'

const vectors = join(import.meta.dirname, '..', '..', 'vectors')
const files = ['manifest.valid.json', 'revocation.valid.json'].map((f) => readFileSync(join(vectors, f)))
/** Inside the vectors' validity window. */
const NOW = new Date('2026-06-15T12:00:00Z')
const encoder = new TextEncoder()

export const inboxTarget: FuzzTarget<Uint8Array> = {
  name: 'inbox',
  decoder: 'consent inbox file (node/consent/inbox-document.ts, then the verifier the book runs)',
  inputs: fc.oneof(
    { arbitrary: fc.uint8Array({ maxLength: 512 }), weight: 1 },
    { arbitrary: fc.json({ maxDepth: 3 }).map((text) => encoder.encode(text)), weight: 1 },
    ...files.map((bytes) => ({ arbitrary: mutations(fc.constant(new Uint8Array(bytes))), weight: 2 })),
    ...files.map((bytes) => ({
      // Pretty-printed as a person's editor would save it, not canonical.
      arbitrary: mutatedJson(JSON.parse(bytes.toString('utf8'))).map((doc) =>
        encoder.encode(JSON.stringify(doc, null, 2) ?? ''),
      ),
      weight: 2,
    })),
  ),
  valid: fc.constantFrom(...files.map((bytes) => new Uint8Array(bytes))),
  run(bytes) {
    try {
      const { kind, document } = readInboxDocument(bytes, 'fuzz.json')
      encodeGossipMessage(kind, document)
      if (kind === 'revocation') verifyRevocation(document)
      else verifyManifest(document, { now: NOW })
      return { accepted: true }
    } catch (err) {
      return typedOutcome(err, [ConsentError, ProtocolError, GossipValidationError])
    }
  },
  allocationBound: (bytes) => 4 * bytes.byteLength,
  size: (bytes) => bytes.byteLength,
}
