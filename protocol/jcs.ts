// RFC 8785 JSON Canonicalization Scheme. Written here rather than taken from a library so that
// every input it cannot canonicalise (NaN, Infinity, lone surrogates, undefined, functions,
// bigint, non-plain objects, cycles) is a typed NOT_CANONICAL error rather than a silent
// JSON.stringify coercion. Numbers use ECMAScript Number::toString, which is exactly the
// serialisation RFC 8785 section 3.2.2.3 mandates; strings use JSON.stringify's escaping
// (RFC 8785 section 3.2.2.2); object members are sorted by UTF-16 code units (section 3.2.3).
import { ProtocolError } from './errors.ts'

function hasLoneSurrogate(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c >= 0xd800 && c <= 0xdbff) {
      const next = s.charCodeAt(i + 1)
      if (!(next >= 0xdc00 && next <= 0xdfff)) return true
      i++
    } else if (c >= 0xdc00 && c <= 0xdfff) return true
  }
  return false
}

function serializeString(s: string): string {
  if (hasLoneSurrogate(s)) throw new ProtocolError('NOT_CANONICAL', 'string contains a lone surrogate')
  return JSON.stringify(s)
}

function compareCodeUnits(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}

function serialize(value: unknown, depth: number, seen: Set<object>): string {
  if (depth > 256) throw new ProtocolError('NOT_CANONICAL', 'nesting deeper than 256')
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

/** The RFC 8785 canonical JSON text of `value`. */
export function canonicalize(value: unknown): string {
  return serialize(value, 0, new Set())
}

/** The UTF-8 bytes of the canonical JSON text (what is hashed and signed). */
export function canonicalBytes(value: unknown): Uint8Array {
  return new TextEncoder().encode(canonicalize(value))
}
