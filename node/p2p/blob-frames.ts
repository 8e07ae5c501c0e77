// The wire format of /diffusion-coop/blob/1.0.0, as pure functions over bytes (so they can be
// fuzzed without a network). Every frame is unsigned-varint length-prefixed (it-length-prefixed):
//   requester -> holder: one frame, JSON {"digest":"sha256:<hex>","maxBytes":<n>}, or
//                        {"digest","maxBytes","as":"envelope"}: the DSSE envelope of the signed
//                        statement whose bytes hash to <digest> (a peer catching up knows a
//                        checkpoint's parent only by its statement digest, and needs the
//                        signatures too)
//   holder -> requester: one header frame, JSON {"status":"ok","size":<n>} or
//                        {"status":"not_found"|"too_large"|"busy"}; after "ok", data frames
//                        of at most BLOB_CHUNK_BYTES until exactly <size> bytes, then close.
import { createHash } from 'node:crypto'
import * as lp from 'it-length-prefixed'
import { CodedError } from '../../protocol/coded-error.ts'
import { BLOB_HEADER_MAX_BYTES, BLOB_MAX_BYTES, BLOB_REQUEST_MAX_BYTES } from '../constants.ts'

export const BLOB_ERROR_CODES = [
  'BAD_DIGEST',
  'NO_PROVIDERS',
  'ALL_PROVIDERS_FAILED',
  'NOT_FOUND',
  'TOO_LARGE',
  'TIMEOUT',
  'DIGEST_MISMATCH',
  'PROTOCOL',
  'BUSY',
  'UNREACHABLE',
  'ABORTED',
] as const
export type BlobErrorCode = (typeof BLOB_ERROR_CODES)[number]

export class BlobTransferError extends CodedError<BlobErrorCode> {
  /** For ALL_PROVIDERS_FAILED: why each provider failed, in the order tried. */
  readonly attempts: { provider: string; code: BlobErrorCode; message: string }[]

  constructor(code: BlobErrorCode, message: string, attempts: BlobTransferError['attempts'] = []) {
    super(code, message)
    this.attempts = attempts
  }
}

/** it-length-prefixed's errors for a frame longer than allowed or a malformed length; a truncated frame (UnexpectedEOFError) is a vanished peer instead. */
export const FRAMING_ERRORS: ReadonlySet<string> = new Set([
  'InvalidMessageLengthError',
  'InvalidDataLengthError',
  'InvalidDataLengthLengthError',
])

const DIGEST_PATTERN = /^sha256:[0-9a-f]{64}$/

export function isBlobDigest(value: unknown): value is string {
  return typeof value === 'string' && DIGEST_PATTERN.test(value)
}

export function blobDigest(bytes: Uint8Array): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`
}

export type HeaderStatus = 'ok' | 'not_found' | 'too_large' | 'busy'

export interface BlobRequest {
  digest: string
  /** What the requester accepts, capped at BLOB_MAX_BYTES. */
  maxBytes: number
  /** "as":"envelope": serve the DSSE envelope of the statement `digest` names, not the blob. */
  envelope: boolean
}

export type BlobHeader = { status: 'ok'; size: number } | { status: Exclude<HeaderStatus, 'ok'> }

export function encodeJson(value: unknown): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(value))
}

const utf8 = new TextDecoder('utf-8', { fatal: true })

/** The digest of the statement a DSSE envelope carries (sha256 of its decoded payload), or undefined if it is not one. */
export function envelopeStatementDigest(bytes: Uint8Array): string | undefined {
  try {
    const parsed = JSON.parse(utf8.decode(bytes)) as unknown
    if (typeof parsed !== 'object' || parsed === null) return undefined
    const payload = (parsed as { payload?: unknown }).payload
    if (typeof payload !== 'string') return undefined
    return blobDigest(new Uint8Array(Buffer.from(payload, 'base64')))
  } catch {
    return undefined
  }
}

function parseObject(frame: Uint8Array, maxBytes: number, what: string): Record<string, unknown> {
  if (frame.byteLength > maxBytes) throw new BlobTransferError('PROTOCOL', `oversized ${what} frame`)
  let parsed: unknown
  try {
    parsed = JSON.parse(utf8.decode(frame))
  } catch {
    throw new BlobTransferError('PROTOCOL', `${what} frame is not UTF-8 JSON`)
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
    throw new BlobTransferError('PROTOCOL', `${what} frame is not a JSON object`)
  return parsed as Record<string, unknown>
}

/** The request frame a holder reads; PROTOCOL for anything but a digest, a non-negative size cap and an optional "as":"envelope". */
export function parseBlobRequest(frame: Uint8Array): BlobRequest {
  const { digest, maxBytes, as } = parseObject(frame, BLOB_REQUEST_MAX_BYTES, 'request')
  if (!isBlobDigest(digest)) throw new BlobTransferError('PROTOCOL', 'request names no sha256 digest')
  if (typeof maxBytes !== 'number' || !Number.isSafeInteger(maxBytes) || maxBytes < 0)
    throw new BlobTransferError('PROTOCOL', 'request maxBytes is not a non-negative integer')
  if (as !== undefined && as !== 'envelope')
    throw new BlobTransferError('PROTOCOL', 'request "as" is not "envelope"')
  return { digest, maxBytes: Math.min(maxBytes, BLOB_MAX_BYTES), envelope: as === 'envelope' }
}

/**
 * The header frame a requester reads. NOT_FOUND, BUSY and TOO_LARGE are the holder's answers;
 * PROTOCOL for a malformed header or an `ok` announcing more than `maxBytes` (checked before a
 * single byte of the blob is allocated).
 */
export function parseBlobHeader(frame: Uint8Array, maxBytes: number): { size: number } {
  const { status, size } = parseObject(frame, BLOB_HEADER_MAX_BYTES, 'header')
  if (status === 'not_found') throw new BlobTransferError('NOT_FOUND', 'provider does not hold the blob')
  if (status === 'busy') throw new BlobTransferError('BUSY', 'provider is serving too many streams')
  if (status === 'too_large') throw new BlobTransferError('TOO_LARGE', 'blob is larger than we accept')
  if (status !== 'ok' || typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0)
    throw new BlobTransferError('PROTOCOL', 'malformed header')
  if (size > maxBytes)
    throw new BlobTransferError('PROTOCOL', 'provider announced more bytes than we asked for')
  return { size }
}

/**
 * Splits bytes into length-prefixed frames of at most `maxDataLength` bytes, as the stream
 * decoders do: PROTOCOL for a frame longer than allowed or a garbled length, UNREACHABLE for input
 * that ends inside a frame (a vanished peer looks the same).
 */
export function* decodeFrames(chunks: Iterable<Uint8Array>, maxDataLength: number): Generator<Uint8Array> {
  try {
    for (const frame of lp.decode(chunks, { maxDataLength })) yield frame.subarray()
  } catch (err) {
    if (err instanceof Error && FRAMING_ERRORS.has(err.name))
      throw new BlobTransferError('PROTOCOL', err.message)
    if (err instanceof Error && err.name === 'UnexpectedEOFError')
      throw new BlobTransferError('UNREACHABLE', 'input ends inside a frame')
    throw err
  }
}
