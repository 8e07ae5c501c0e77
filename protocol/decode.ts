// Shared first steps of every document decoder: bound the size, decode UTF-8 strictly,
// parse JSON, insist on the RFC 8785 canonical form, then validate against a closed schema.
import { isUtf8 } from 'node:buffer'
import type { z } from 'zod'
import { ProtocolError } from './errors.ts'
import { canonicalize } from './jcs.ts'

/** Input to a verifier: the exact bytes or text of a document, or an already-parsed value. */
export type DocumentInput = Uint8Array | string | object

export interface ParsedJson {
  value: unknown
  /** True when the input was text/bytes and was checked to be canonical. */
  fromBytes: boolean
}

/**
 * Parses a document. Text and bytes must be exactly the document's RFC 8785 canonical JSON
 * (no BOM, no whitespace, no trailing newline): this is the only encoding a signed document
 * has in this protocol, so a byte-level change to a valid document can never also be accepted.
 */
export function parseDocument(input: DocumentInput, maxBytes: number, what: string): ParsedJson {
  let text: string
  if (typeof input === 'string') {
    // A string has at least as many UTF-8 bytes as UTF-16 code units: cheap pre-check.
    if (input.length > maxBytes) throw new ProtocolError('TOO_LARGE', `${what} exceeds ${maxBytes} bytes`)
    if (Buffer.byteLength(input, 'utf8') > maxBytes)
      throw new ProtocolError('TOO_LARGE', `${what} exceeds ${maxBytes} bytes`)
    text = input
  } else if (input instanceof Uint8Array) {
    if (input.length > maxBytes) throw new ProtocolError('TOO_LARGE', `${what} exceeds ${maxBytes} bytes`)
    // Validate first, then decode: node's native check is much faster than a fatal TextDecoder.
    if (!isUtf8(input)) throw new ProtocolError('INVALID_JSON', `${what} is not UTF-8`)
    text = Buffer.from(input.buffer, input.byteOffset, input.byteLength).toString('utf8')
  } else if (typeof input === 'object' && input !== null) {
    let size: number
    try {
      size = Buffer.byteLength(canonicalize(input), 'utf8')
    } catch (error) {
      if (error instanceof ProtocolError)
        throw new ProtocolError('SCHEMA', `${what}: ${error.message}`, { cause: error })
      throw error
    }
    if (size > maxBytes) throw new ProtocolError('TOO_LARGE', `${what} exceeds ${maxBytes} bytes`)
    return { value: input, fromBytes: false }
  } else {
    throw new ProtocolError('SCHEMA', `${what} must be JSON text, bytes or an object`)
  }
  if (text.charCodeAt(0) === 0xfeff)
    throw new ProtocolError('INVALID_JSON', `${what} starts with a byte order mark`)
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (error) {
    throw new ProtocolError('INVALID_JSON', `${what} is not valid JSON`, { cause: error })
  }
  let canonical: string
  try {
    canonical = canonicalize(value)
  } catch (error) {
    if (error instanceof ProtocolError)
      throw new ProtocolError('NOT_CANONICAL', `${what}: ${error.message}`, { cause: error })
    throw error
  }
  if (text !== canonical)
    throw new ProtocolError('NOT_CANONICAL', `${what} is not in RFC 8785 canonical form`)
  return { value, fromBytes: true }
}

/** Validates `value` against a closed zod schema; SCHEMA naming the first failing path. */
export function parseSchema<T extends z.ZodType>(schema: T, value: unknown, what: string): z.output<T> {
  const result = schema.safeParse(value)
  if (!result.success) {
    const issue = result.error.issues[0]
    const path =
      issue === undefined || issue.path.length === 0 ? '' : ` at ${issue.path.map(String).join('.')}`
    throw new ProtocolError('SCHEMA', `${what}${path}: ${issue?.message ?? 'invalid'}`)
  }
  return result.data
}
