// Expected failures of `coop summary`: one closed set of codes, printed as one line by the CLI.
import { CodedError } from '../../protocol/coded-error.ts'

export const SUMMARY_ERROR_CODES = [
  /** The checkpoint directory is not one of the store's verified checkpoints. */
  'NOT_IN_STORE',
  /** A signed audit covers other file bytes than the checkpoint's. */
  'AUDIT_MISMATCH',
] as const

export type SummaryErrorCode = (typeof SUMMARY_ERROR_CODES)[number]

export class SummaryError extends CodedError<SummaryErrorCode> {}
