// Expected failures of `coop audit`: one closed set of codes, printed as one line by the CLI.
import { CodedError } from '../../protocol/coded-error.ts'

export const AUDIT_ERROR_CODES = [
  /** The checkpoint directory is neither a cooperative checkpoint nor a `coop train` output. */
  'NOT_A_CHECKPOINT',
  /** The checkpoint is an autoencoder: it cannot sample images. */
  'NOT_A_UNET',
  /** The autoencoder the U-Net checkpoint names cannot be found next to it or in the store. */
  'AUTOENCODER_NOT_FOUND',
  /** A checkpoint file does not match the digest its signed provenance gives. */
  'FILE_DIGEST_MISMATCH',
  /** The data folder's classes are not the model's classes. */
  'DATA_MISMATCH',
  /** An output exists and --force was not given. */
  'OUTPUT_EXISTS',
] as const

export type AuditErrorCode = (typeof AUDIT_ERROR_CODES)[number]

export class AuditError extends CodedError<AuditErrorCode> {}
