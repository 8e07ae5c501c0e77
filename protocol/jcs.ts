// RFC 8785 JSON Canonicalization Scheme. Written here rather than taken from a library so that
// every input it cannot canonicalise (NaN, Infinity, lone surrogates, undefined, functions,
// bigint, non-plain objects, cycles) is a typed NOT_CANONICAL error rather than a silent
// JSON.stringify coercion. Numbers use ECMAScript Number::toString, which is exactly the
// serialisation RFC 8785 section 3.2.2.3 mandates; strings use JSON.stringify's escaping
// (RFC 8785 section 3.2.2.2); object members are sorted by UTF-16 code units (section 3.2.3).
//
// Fast path: a value whose objects already enumerate their keys in sorted order (any document
// JSON.parse'd from canonical text) serialises, once checked, with the engine's JSON.stringify:
// same number and string forms, same member order. It is 5x faster than building the text here,
// and a forged 1 MiB document is canonicalised at least once on its way to rejection.
import { ProtocolError } from './errors.ts'

/** True when every string is well-formed UTF-16 (no lone surrogate: RFC 8785 3.2.2.2). */
function wellFormed(s: string): boolean {
  // ES2024 String.prototype.isWellFormed (Node >= 20); the project's TypeScript lib is ES2023.
  return (s as string & { isWellFormed(): boolean }).isWellFormed()
}

function serializeString(s: string): string {
  if (!wellFormed(s)) throw new ProtocolError('NOT_CANONICAL', 'string contains a lone surrogate')
  return JSON.stringify(s)
}

function compareCodeUnits(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}

/** Deepest nesting of arrays and objects a document may have (the walks below recurse). */
export const MAX_DEPTH = 256

/**
 * Whether JSON `text` nests arrays and objects deeper than `MAX_DEPTH`, from its characters alone
 * (brackets inside strings do not count). Checked before the text is parsed: the engine's
 * JSON.stringify and these walks recurse, and a 1 MiB message of brackets would overflow the stack.
 */
export function nestsTooDeep(text: string): boolean {
  let depth = 0
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c === 0x22) {
      // Skip a string whole: it ends at the next quote not escaped by an odd run of backslashes.
      let end = text.indexOf('"', i + 1)
      for (;;) {
        if (end < 0) return false // unterminated: JSON.parse refuses it
        let backslashes = 0
        while (text.charCodeAt(end - 1 - backslashes) === 0x5c) backslashes++
        if (backslashes % 2 === 0) break
        end = text.indexOf('"', end + 1)
      }
      i = end
    } else if (c === 0x5b || c === 0x7b) {
      if (++depth > MAX_DEPTH) return true
    } else if (c === 0x5d || c === 0x7d) depth--
  }
  return false
}

/**
 * True when JSON.stringify(value) is exactly its canonical form: plain objects whose keys
 * enumerate in sorted order, dense arrays, finite numbers, well-formed strings, no cycle (a
 * cycle exceeds the depth bound). Anything else takes the general path, which names the fault.
 */
function stringifiesCanonically(value: unknown, depth: number): boolean {
  if (depth > MAX_DEPTH) return false
  if (value === null) return true
  switch (typeof value) {
    case 'boolean':
      return true
    case 'number':
      return Number.isFinite(value)
    case 'string':
      return wellFormed(value)
    case 'object': {
      if (Array.isArray(value)) {
        for (let i = 0; i < value.length; i++)
          if (!(i in value) || !stringifiesCanonically(value[i], depth + 1)) return false
        return true
      }
      const proto = Object.getPrototypeOf(value)
      if (proto !== Object.prototype && proto !== null) return false
      const record = value as Record<string, unknown>
      let previous: string | undefined
      for (const key of Object.keys(record)) {
        if (previous !== undefined && !(previous < key)) return false
        if (!wellFormed(key) || !stringifiesCanonically(record[key], depth + 1)) return false
        previous = key
      }
      return true
    }
    default:
      return false
  }
}

function serialize(value: unknown, depth: number, seen: Set<object>): string {
  if (depth > MAX_DEPTH) throw new ProtocolError('NOT_CANONICAL', 'nesting deeper than 256')
  if (value === null) return 'null'
  switch (typeof value) {
    case 'boolean':
      return value ? 'true' : 'false'
    case 'number':
      if (!Number.isFinite(value))
        throw new ProtocolError('NOT_CANONICAL', 'NaN and Infinity have no JSON form')
      // Number::toString; -0 serialises as "0" as the RFC requires.
      return Object.is(value, -0) ? '0' : String(value)
    case 'string':
      return serializeString(value)
    case 'object': {
      if (seen.has(value)) throw new ProtocolError('NOT_CANONICAL', 'cyclic structure')
      seen.add(value)
      let out: string
      if (Array.isArray(value)) {
        const parts: string[] = []
        for (let i = 0; i < value.length; i++) {
          if (!(i in value)) throw new ProtocolError('NOT_CANONICAL', 'sparse array')
          parts.push(serialize(value[i], depth + 1, seen))
        }
        out = `[${parts.join(',')}]`
      } else {
        const proto = Object.getPrototypeOf(value)
        if (proto !== Object.prototype && proto !== null)
          throw new ProtocolError('NOT_CANONICAL', 'only plain objects have a JSON form')
        const record = value as Record<string, unknown>
        const keys = Object.keys(record).sort(compareCodeUnits)
        const parts: string[] = []
        for (const key of keys)
          parts.push(`${serializeString(key)}:${serialize(record[key], depth + 1, seen)}`)
        out = `{${parts.join(',')}}`
      }
      seen.delete(value)
      return out
    }
    default:
      throw new ProtocolError('NOT_CANONICAL', `a ${typeof value} has no JSON form`)
  }
}

/** Members of every object (to MAX_DEPTH) enumerate in sorted order; walks without allocating. */
function membersSorted(value: unknown, depth: number): boolean {
  if (typeof value !== 'object' || value === null) return true
  if (depth > MAX_DEPTH) return false
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) if (!membersSorted(value[i], depth + 1)) return false
    return true
  }
  let previous: string | undefined
  for (const key in value) {
    if (previous !== undefined && !(previous < key)) return false
    if (!membersSorted((value as Record<string, unknown>)[key], depth + 1)) return false
    previous = key
  }
  return true
}

/**
 * Whether `text`, which JSON.parse turned into `value`, is exactly the canonical form of `value`.
 * JSON.parse only yields plain objects, dense arrays and finite numbers, so when the engine's
 * own serialisation reproduces the text it is left to check member order and, only if the text
 * has a \u escape at all, that no string is a lone surrogate. Throws NOT_CANONICAL as
 * canonicalize does for values with no canonical form.
 */
export function isCanonicalJsonText(text: string, value: unknown): boolean {
  if (JSON.stringify(value) !== text) return text === canonicalize(value)
  if (!membersSorted(value, 0)) return false
  return !text.includes('\\u') || stringifiesCanonically(value, 0)
}

/** The RFC 8785 canonical JSON text of `value`. */
export function canonicalize(value: unknown): string {
  if (stringifiesCanonically(value, 0)) return JSON.stringify(value)
  return serialize(value, 0, new Set())
}

/** The UTF-8 bytes of the canonical JSON text (what is hashed and signed). */
export function canonicalBytes(value: unknown): Uint8Array {
  return new TextEncoder().encode(canonicalize(value))
}
