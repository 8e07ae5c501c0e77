// Each gossip refusal code as a few words a person understands: the logs carry the code (what
// counters, tests and the troubleshooting table use), the console adds the reason. A record
// over the closed code set, so a new code cannot land without its sentence.
import type { GossipErrorCode } from '../p2p/gossip-errors.ts'

export const REJECTION_REASONS: Record<GossipErrorCode, string> = {
  TOO_SMALL: 'the message is shorter than any valid document',
  TOO_LARGE: 'the message is over the size limit for its kind',
  UNKNOWN_KIND: 'the message is of no known kind',
  WRONG_TOPIC: 'the document was sent on the wrong topic',
  DECODE: 'the message is not valid JSON',
  SCHEMA: 'the document does not match its schema',
  BAD_SIGNATURE: 'the signature does not verify',
  SENDER_MISMATCH: 'the signer is not the peer that sent it',
  WRONG_COOP: 'it belongs to another cooperative',
  REVOKED: 'its consent manifest was revoked',
  EXPIRED: 'its consent manifest has expired',
  NOT_YET_VALID: 'its consent manifest is not valid yet',
  LICENSE_NOT_ACCEPTED: 'its license is not one the charter accepts',
  USAGE_NOT_ALLOWED: 'its consent does not allow this use',
  FOREIGN_CUSTODIAN: 'the manifest names another node as custodian',
  UNKNOWN_MANIFEST: 'it names a consent manifest this node does not hold',
  NOT_ISSUER: 'the revocation is not signed by the manifest issuer',
  UNKNOWN_ITEM: 'the revocation names an item its manifest does not list',
  SCOPE_NOT_ALLOWED: "the manifest's scope forbids what this cooperative does with its weights",
  ADMISSION_DENIED: 'the sender is not admitted to this cooperative',
  ROUND_OUT_OF_WINDOW: 'it is for a round that is not open',
  UNKNOWN_BASE: 'it starts from a checkpoint this node does not know',
  WRONG_BASE: "it does not start from the round's checkpoint",
  NOT_PUBLISHER: 'the signer is not a publisher of the charter',
  CONFLICT: 'it conflicts with one already received for the same round',
  SAMPLES_OUT_OF_RANGE: 'it claims more samples than the charter allows one round',
  EQUIVOCATION: 'its signer already signed another checkpoint for this round',
  BAD_PAYLOAD: 'its payload does not fit the model (names, shapes, codec or values)',
  TRIVIAL_DELTA: 'its update is zero or too small to count',
  CONTRIBUTION_MISMATCH: 'it lists a contribution its contributor never signed',
  PARENT_MISMATCH: 'its parent is not the checkpoint it names',
  RATE_LIMITED: 'the sender is over its message rate',
  BLOB_DIGEST_MISMATCH: 'the bytes served do not match their digest',
  BLOB_PROTOCOL: 'the peer broke the blob transfer protocol',
  INTERNAL: "this node failed to check it (not the sender's fault)",
}

/** The reason for a code, or undefined for a code outside the set (a log written by another version). */
export function rejectionReason(code: unknown): string | undefined {
  return typeof code === 'string' && Object.hasOwn(REJECTION_REASONS, code)
    ? REJECTION_REASONS[code as GossipErrorCode]
    : undefined
}
