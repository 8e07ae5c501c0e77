// Typed errors of the consent book and the inbox. Codes are a closed set so that logs, exit codes
// and tests can name them.
import { CodedError } from '../../protocol/coded-error.ts'

export const CONSENT_ERROR_CODES = [
  // a local manifest names another node as custodian
  'FOREIGN_CUSTODIAN',
  // a document does not verify, is too large, or is neither a manifest nor a revocation
  'MANIFEST_INVALID',
  // a revocation is signed by someone other than the manifest's issuer
  'NOT_ISSUER',
  // a revocation lists an item its manifest does not list
  'UNKNOWN_ITEM',
  // a manifest's scope forbids the cooperative's intended use (commercial use, weight redistribution)
  'SCOPE_NOT_ALLOWED',
  // a revocation names a manifest this node does not hold, and the held pool refused it (bounded)
  'HOLD_REFUSED',
] as const

export type ConsentErrorCode = (typeof CONSENT_ERROR_CODES)[number]

export class ConsentError extends CodedError<ConsentErrorCode> {}
