// Every rejection made by protocol/ is a ProtocolError whose `code` comes from this
// closed set, so callers can label metrics, map gossip results and assert in tests
// without parsing messages.
import { CodedError } from './coded-error.ts'

export const PROTOCOL_ERROR_CODES = [
  /** A signature does not verify against the named key. */
  'BAD_SIGNATURE',
  /** A consent manifest is past its validUntil. */
  'EXPIRED',
  /** A consent manifest's validFrom is in the future. */
  'NOT_YET_VALID',
  /** The usage terms do not allow generative training (`notAllowed` or `constrained`). */
  'USAGE_NOT_ALLOWED',
  /** The license expression is not satisfied by the accepted licenses. */
  'LICENSE_NOT_ACCEPTED',
  /** The license is not a valid SPDX expression. */
  'INVALID_LICENSE',
  /** Bytes do not hash to the digest that names them. */
  'DIGEST_MISMATCH',
  /** A Merkle root or inclusion proof does not match the items. */
  'MERKLE_MISMATCH',
  /** A revocation withdraws consent for the manifest or item. */
  'REVOKED',
  /** The document parsed but does not have the required shape. */
  'SCHEMA',
  /** The input is larger than the limit for its kind (checked before parsing). */
  'TOO_LARGE',
  /** The input ends before its declared length. */
  'TRUNCATED',
  /** The document is not one of the known types (payloadType, predicateType, `type`). */
  'UNKNOWN_TYPE',
  /** The bytes are not well-formed UTF-8 JSON. */
  'INVALID_JSON',
  /** A key or identifier is malformed, of the wrong length or of an unsupported kind. */
  'BAD_KEY',
  /** The proof names a cryptosuite or proof type this protocol does not implement. */
  'UNSUPPORTED_CRYPTOSUITE',
  /** A multibase/base64/hex field is not valid in its encoding. */
  'BAD_ENCODING',
  /** Fewer distinct authorised signers than the threshold signed. */
  'THRESHOLD_NOT_MET',
  /** The signer is not the party the document says must sign it. */
  'ISSUER_MISMATCH',
  /** A consent manifest names another node as the custodian allowed to train. */
  'CUSTODIAN_MISMATCH',
  /** A value cannot be represented canonically (e.g. a non-finite number in JCS). */
  'NOT_CANONICAL',
  /** A consent manifest's scope forbids the cooperative's intended use (commercial use, weight redistribution). */
  'SCOPE_NOT_ALLOWED',
  /** A tensor payload's names, shapes, dtypes or codec differ from the model layout it must fit. */
  'LAYOUT_MISMATCH',
  /** A checkpoint lists a contribution its signed statement does not name (delta, contributor, coop, round, phase, base, manifests). */
  'CONTRIBUTION_MISMATCH',
  /** A checkpoint's parent is not the checkpoint it names (provenance or model digest, coop, phase, round). */
  'PARENT_MISMATCH',
] as const

export type ProtocolErrorCode = (typeof PROTOCOL_ERROR_CODES)[number]

export class ProtocolError extends CodedError<ProtocolErrorCode> {}

export function isProtocolError(error: unknown): error is ProtocolError {
  return error instanceof ProtocolError
}
