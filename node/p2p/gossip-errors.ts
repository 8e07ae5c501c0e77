// The one error type gossip validators throw. Its action says what gossipsub does with the
// message (IGNORE: drop quietly; REJECT: drop and charge the sender), its code says why.
import { CodedError } from '../../protocol/coded-error.ts'

export type GossipAction = 'IGNORE' | 'REJECT'

/** Closed set of reasons a gossip message or a blob can be refused; codes label counters and tests. */
export const GOSSIP_ERROR_CODES = [
  // size and framing
  'TOO_SMALL',
  'TOO_LARGE',
  'UNKNOWN_KIND',
  'WRONG_TOPIC',
  // decode and schema
  'DECODE',
  'SCHEMA',
  // signature and identity
  'BAD_SIGNATURE',
  'SENDER_MISMATCH',
  'WRONG_COOP',
  // consent semantics
  'REVOKED',
  'EXPIRED',
  'NOT_YET_VALID',
  'LICENSE_NOT_ACCEPTED',
  'USAGE_NOT_ALLOWED',
  'FOREIGN_CUSTODIAN',
  'UNKNOWN_MANIFEST',
  'NOT_ISSUER',
  // a revocation lists an item its manifest does not list
  'UNKNOWN_ITEM',
  // a manifest's scope forbids the cooperative's intended use (charter `intendedUse`)
  'SCOPE_NOT_ALLOWED',
  'ADMISSION_DENIED',
  // round semantics (the round engine's hooks use these)
  'ROUND_OUT_OF_WINDOW',
  'UNKNOWN_BASE',
  'WRONG_BASE',
  'NOT_PUBLISHER',
  'CONFLICT',
  // a contribution claims more samples than the charter's inner steps x batch size allow
  'SAMPLES_OUT_OF_RANGE',
  // a publisher signed a second, different checkpoint for a round (charged to the signer, never the relay)
  'EQUIVOCATION',
  // contribution payloads (checked after gossip, charged to the contributor who signed the statement)
  'BAD_PAYLOAD',
  'TRIVIAL_DELTA',
  // checkpoint binding (charged by the round verifier, not a validator stage): a listed
  // contribution that is not its signed statement, a parent that is not the one named
  'CONTRIBUTION_MISMATCH',
  'PARENT_MISMATCH',
  // flow control
  'RATE_LIMITED',
  // blob transfer
  'BLOB_DIGEST_MISMATCH',
  'BLOB_PROTOCOL',
  // a validator failed in a way it did not classify: never the sender's fault by default
  'INTERNAL',
] as const

export type GossipErrorCode = (typeof GOSSIP_ERROR_CODES)[number]

/** What a refusal names for whoever acts on it after validation (e.g. the manifest to fetch). */
export type GossipErrorDetail = Readonly<Record<string, string>>

export class GossipValidationError extends CodedError<GossipErrorCode> {
  readonly action: GossipAction
  readonly detail: GossipErrorDetail | undefined

  constructor(action: GossipAction, code: GossipErrorCode, message?: string, detail?: GossipErrorDetail) {
    super(code, message ?? `${action} ${code}`)
    this.action = action
    this.detail = detail
  }
}

export function reject(
  code: GossipErrorCode,
  message?: string,
  detail?: GossipErrorDetail,
): GossipValidationError {
  return new GossipValidationError('REJECT', code, message, detail)
}

export function ignore(
  code: GossipErrorCode,
  message?: string,
  detail?: GossipErrorDetail,
): GossipValidationError {
  return new GossipValidationError('IGNORE', code, message, detail)
}

export function isGossipValidationError(err: unknown): err is GossipValidationError {
  return err instanceof GossipValidationError
}
