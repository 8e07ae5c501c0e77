// Expected failures of `coop credit`: one closed set of codes, printed as one line by the CLI.
import { CodedError } from '../../protocol/coded-error.ts'

export const CREDIT_ERROR_CODES = [
  /** The named checkpoint is not a verified checkpoint of the store. */
  'UNKNOWN_CHECKPOINT',
  /** A contribution the lineage lists has no statement blob in the store. */
  'MISSING_CONTRIBUTION',
  /** A contribution statement does not verify, or says something else than the provenance lists. */
  'CONTRIBUTION_MISMATCH',
] as const

export type CreditErrorCode = (typeof CREDIT_ERROR_CODES)[number]

export class CreditError extends CodedError<CreditErrorCode> {}
