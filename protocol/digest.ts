// Digests are written `sha256:<64 lowercase hex>` everywhere: image identity, payload
// identity, coop id. node:crypto's SHA-256 is used (not a JS implementation) because
// consent creation hashes whole image folders and it is ~10x faster; it does no I/O.
import { createHash } from 'node:crypto'
import { ProtocolError } from './errors.ts'

const DIGEST_PATTERN = /^sha256:[0-9a-f]{64}$/

export const DIGEST_PREFIX = 'sha256:'

/** Raw 32-byte SHA-256 of `bytes`. */
export function sha256(bytes: Uint8Array): Uint8Array {
  const out = createHash('sha256').update(bytes).digest()
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength)
}

/** SHA-256 of `bytes` written `sha256:<64 hex>`. */
export function sha256Digest(bytes: Uint8Array): string {
  return DIGEST_PREFIX + createHash('sha256').update(bytes).digest('hex')
}

/** SHA-256 of a text's UTF-8 bytes, written `sha256:<64 hex>`, without copying the text into a byte array first. */
export function sha256DigestOfText(text: string): string {
  return DIGEST_PREFIX + createHash('sha256').update(text, 'utf8').digest('hex')
}

/** Raw 32-byte SHA-256 of a text's UTF-8 bytes. */
export function sha256OfText(text: string): Uint8Array {
  const out = createHash('sha256').update(text, 'utf8').digest()
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength)
}

/** True only for a well-formed `sha256:<64 lowercase hex>` string. */
export function isDigest(s: unknown): s is string {
  return typeof s === 'string' && DIGEST_PATTERN.test(s)
}

/** The 32 raw bytes named by a digest string; SCHEMA if it is not one. */
export function digestToBytes(digest: string): Uint8Array {
  if (!isDigest(digest)) throw new ProtocolError('SCHEMA', 'not a sha256:<64 hex> digest')
  return Buffer.from(digest.slice(DIGEST_PREFIX.length), 'hex')
}

/** The digest string for 32 raw SHA-256 bytes. */
export function bytesToDigest(bytes: Uint8Array): string {
  if (bytes.length !== 32) throw new ProtocolError('SCHEMA', 'a SHA-256 digest is 32 bytes')
  return DIGEST_PREFIX + Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex')
}

/** Incremental SHA-256 for callers that stream large files through it. */
export interface StreamingDigest {
  update(chunk: Uint8Array): void
  /** The `sha256:<hex>` digest of everything passed to update; call once. */
  digest(): string
}

export function createStreamingDigest(): StreamingDigest {
  const hash = createHash('sha256')
  return {
    update(chunk) {
      hash.update(chunk)
    },
    digest() {
      return DIGEST_PREFIX + hash.digest('hex')
    },
  }
}

/** Throws DIGEST_MISMATCH unless `bytes` hash to `expected`. */
export function assertDigest(bytes: Uint8Array, expected: string, what: string): void {
  if (!isDigest(expected)) throw new ProtocolError('SCHEMA', `${what}: expected digest is malformed`)
  if (sha256Digest(bytes) !== expected)
    throw new ProtocolError('DIGEST_MISMATCH', `${what}: bytes do not match ${expected}`)
}
