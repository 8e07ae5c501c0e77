// Shared first steps of every document decoder: bound the size, decode UTF-8 strictly,
// parse JSON, insist on the RFC 8785 canonical form, then validate against a closed schema.
import { isUtf8 } from 'node:buffer'
import type { z } from 'zod'
import { ProtocolError } from './errors.ts'
import { canonicalize, isCanonicalJsonText, MAX_DEPTH, nestsTooDeep } from './jcs.ts'

/**
 * Input to a verifier: the exact bytes or text of a document, an already-parsed value, or the
 * result of parseDocument (a gossip validator parses once, then hands that to the verifier).
 */
export type DocumentInput = Uint8Array | string | object

export interface ParsedJson {
  value: unknown
  /** True when the input was text/bytes and was checked to be canonical. */
  fromBytes: boolean
  /** The document's canonical JSON text (for text/bytes input: the input itself). */
  text: string
  /** UTF-8 length of `text`. */
  byteLength: number
}

// Results of parseDocument, so a verifier handed one skips parsing again, and no look-alike
// object is taken as already checked.
const parsedDocuments = new WeakSet<object>()

export function isParsedJson(input: unknown): input is ParsedJson {
  return typeof input === 'object' && input !== null && parsedDocuments.has(input)
}

function parsed(value: unknown, fromBytes: boolean, text: string, byteLength: number): ParsedJson {
  const out: ParsedJson = { value, fromBytes, text, byteLength }
  parsedDocuments.add(out)
  return out
}

/**
 * Parses a document. Text and bytes must be exactly the document's RFC 8785 canonical JSON
 * (no BOM, no whitespace, no trailing newline): this is the only encoding a signed document
 * has in this protocol, so a byte-level change to a valid document can never also be accepted.
 */
export function parseDocument(input: DocumentInput, maxBytes: number, what: string): ParsedJson {
  // Parsed and checked once already: only the (possibly tighter) size limit is left to apply.
  if (isParsedJson(input)) {
    if (input.byteLength > maxBytes) throw new ProtocolError('TOO_LARGE', `${what} exceeds ${maxBytes} bytes`)
    return input
  }
  let text: string
  let byteLength: number
  if (typeof input === 'string') {
    // A string has at least as many UTF-8 bytes as UTF-16 code units: cheap pre-check.
    if (input.length > maxBytes) throw new ProtocolError('TOO_LARGE', `${what} exceeds ${maxBytes} bytes`)
    byteLength = Buffer.byteLength(input, 'utf8')
    if (byteLength > maxBytes) throw new ProtocolError('TOO_LARGE', `${what} exceeds ${maxBytes} bytes`)
    text = input
  } else if (input instanceof Uint8Array) {
    if (input.length > maxBytes) throw new ProtocolError('TOO_LARGE', `${what} exceeds ${maxBytes} bytes`)
    // Validate first, then decode: node's native check is much faster than a fatal TextDecoder.
    if (!isUtf8(input)) throw new ProtocolError('INVALID_JSON', `${what} is not UTF-8`)
    text = Buffer.from(input.buffer, input.byteOffset, input.byteLength).toString('utf8')
    byteLength = input.byteLength
  } else if (typeof input === 'object' && input !== null) {
    let canonical: string
    try {
      canonical = canonicalize(input)
    } catch (error) {
      if (error instanceof ProtocolError)
        throw new ProtocolError('SCHEMA', `${what}: ${error.message}`, { cause: error })
      throw error
    }
    const size = Buffer.byteLength(canonical, 'utf8')
    if (size > maxBytes) throw new ProtocolError('TOO_LARGE', `${what} exceeds ${maxBytes} bytes`)
    return parsed(input, false, canonical, size)
  } else {
    throw new ProtocolError('SCHEMA', `${what} must be JSON text, bytes or an object`)
  }
  if (text.charCodeAt(0) === 0xfeff)
    throw new ProtocolError('INVALID_JSON', `${what} starts with a byte order mark`)
  if (nestsTooDeep(text)) throw new ProtocolError('NOT_CANONICAL', `${what} nests deeper than ${MAX_DEPTH}`)
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (error) {
    throw new ProtocolError('INVALID_JSON', `${what} is not valid JSON`, { cause: error })
  }
  let canonical: boolean
  try {
    canonical = isCanonicalJsonText(text, value)
  } catch (error) {
    if (error instanceof ProtocolError)
      throw new ProtocolError('NOT_CANONICAL', `${what}: ${error.message}`, { cause: error })
    throw error
  }
  if (!canonical) throw new ProtocolError('NOT_CANONICAL', `${what} is not in RFC 8785 canonical form`)
  return parsed(value, true, text, byteLength)
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
