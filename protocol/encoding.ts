// Byte-string encodings used in documents. Decoders accept only the canonical form of each
// encoding, so one value has exactly one textual representation and a mutated encoding can
// never decode to the same bytes.
import { base58btc } from 'multiformats/bases/base58'
import { ProtocolError } from './errors.ts'

/** RFC 4648 section 4 base64 (standard alphabet, with padding). */
export function toBase64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64')
}

/** Strict RFC 4648 base64 decode: standard alphabet, padding required, no whitespace, zero pad bits. */
export function fromBase64(text: string, what: string): Uint8Array {
  if (typeof text !== 'string' || text.length % 4 !== 0)
    throw new ProtocolError('BAD_ENCODING', `${what} is not canonical base64`)
  const bytes = new Uint8Array(Buffer.from(text, 'base64'))
  // Node's decoder skips characters outside the alphabet and accepts the URL-safe one; requiring
  // that re-encoding gives back the exact text rejects those, missing padding and non-zero pad bits.
  if (toBase64(bytes) !== text) throw new ProtocolError('BAD_ENCODING', `${what} is not canonical base64`)
  return bytes
}

/** Multibase base58btc: 'z' followed by the Bitcoin base58 alphabet. */
export function toBase58btc(bytes: Uint8Array): string {
  return base58btc.encode(bytes)
}

export function fromBase58btc(text: string, what: string): Uint8Array {
  if (typeof text !== 'string' || !text.startsWith('z'))
    throw new ProtocolError('BAD_ENCODING', `${what} is not base58btc multibase`)
  let bytes: Uint8Array
  try {
    bytes = base58btc.decode(text)
  } catch (error) {
    throw new ProtocolError('BAD_ENCODING', `${what} is not base58btc multibase`, { cause: error })
  }
  if (toBase58btc(bytes) !== text)
    throw new ProtocolError('BAD_ENCODING', `${what} is not canonical base58btc`)
  return bytes
}
