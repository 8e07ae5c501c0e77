// Typed errors of the round engine and the commands built on it. Codes are a closed set so
// that logs, exit codes and tests can name them.
import { CodedError } from '../../protocol/coded-error.ts'

export const ROUND_ERROR_CODES = [
  // checkpoint verification
  'BAD_SIGNATURE',
  'WRONG_COOP',
  'FILE_DIGEST_MISMATCH',
  'MISSING_FILE',
  'RECOMPUTE_MISMATCH',
  'MISSING_PARENT',
  'MISSING_PAYLOAD',
  'MISSING_CONTRIBUTION',
  'BAD_CHECKPOINT',
  'COMPONENT_MISMATCH',
  // a checkpoint's exclusion details are missing or do not match its signed summary
  'BAD_EXCLUSIONS',
  // unlearning by rollback (node/round/rollback.ts, unlearning.ts)
  'BAD_ROLLBACK',
  'ROLLBACK_PENDING',
  'LINEAGE_USES_REVOKED',
  /** A listed contribution is not the statement its contributor signed (delta, base, manifests...). */
  'CONTRIBUTION_MISMATCH',
  /** The parent is not the checkpoint the provenance names (id, model or momentum digest, round). */
  'PARENT_MISMATCH',
  /** `coop checkpoint verify` was given no charter to trust: the directory's own copy is not enough. */
  'CHARTER_REQUIRED',
  /** The directory carries a charter of another coop than the one given or stored. */
  'CHARTER_MISMATCH',
  /** A provenance that parses but breaks a protocol rule other than its signatures. */
  'BAD_PROVENANCE',
  // consent (the consent book's own codes are in node/consent/errors.ts)
  'NO_CONSENT',
  // a manifest a checkpoint's license and attribution depend on is not available here
  'MISSING_MANIFEST',
  // configuration and state
  'BAD_CHARTER',
  'NOT_A_PUBLISHER',
  'UNSUPPORTED',
] as const

export type RoundErrorCode = (typeof ROUND_ERROR_CODES)[number]

export class RoundError extends CodedError<RoundErrorCode> {}
