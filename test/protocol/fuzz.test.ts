// Property tests: arbitrary input and arbitrary mutations of valid documents, fed to every
// decoder and verifier. The only allowed outcomes are a ProtocolError, or acceptance of input
// that is byte-for-byte (or, for objects, value-for-value) the unmutated document.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { verifyCharter } from '../../protocol/charter.ts'
import { verifyContribution } from '../../protocol/contribution.ts'
import { type DocumentInput } from '../../protocol/decode.ts'
import { identifyDocument } from '../../protocol/document.ts'
import { fromBase58btc, fromBase64, toBase64 } from '../../protocol/encoding.ts'
import { ProtocolError } from '../../protocol/errors.ts'
import { canonicalize } from '../../protocol/jcs.ts'
import { publicKeyFromIdentity, unmarshalPrivateKey } from '../../protocol/keys.ts'
import { parseLicense } from '../../protocol/license.ts'
import { verifyManifest } from '../../protocol/manifest.ts'
import { verifyProvenance } from '../../protocol/provenance.ts'
import { verifyRevocation } from '../../protocol/revocation.ts'

const dir = join(import.meta.dirname, '..', 'vectors')
const readText = (file: string) => readFileSync(join(dir, file), 'utf8')
const now = new Date('2026-06-15T12:00:00Z')
const charter = verifyCharter(readText('charter.valid.json'))

const verifiers: Record<string, { file: string; verify: (input: DocumentInput) => unknown }> = {
  manifest: { file: 'manifest.valid.json', verify: (input) => verifyManifest(input, { now }) },
  revocation: { file: 'revocation.valid.json', verify: (input) => verifyRevocation(input) },
  charter: { file: 'charter.valid.json', verify: (input) => verifyCharter(input) },
  contribution: { file: 'contribution.valid.json', verify: (input) => verifyContribution(input) },
  provenance: {
    file: 'provenance.valid.json',
    verify: (input) =>
      verifyProvenance(input, {
        publishers: charter.charter.publishers,
        threshold: charter.charter.threshold,
        coopId: charter.coopId,
      }),
  },
}

/** Runs `fn`: returns 'accepted', or the ProtocolError code; any other throw fails the test. */
function outcome(fn: () => unknown): string {
  try {
    fn()
    return 'accepted'
  } catch (error) {
    if (error instanceof ProtocolError) return error.code
    throw new Error(`non-ProtocolError thrown: ${String(error)}`, { cause: error })
  }
}

type Json = null | boolean | number | string | Json[] | { [key: string]: Json }

/** Every path to a value inside a JSON document. */
function paths(value: Json, prefix: (string | number)[] = []): (string | number)[][] {
  const out: (string | number)[][] = [prefix]
  if (Array.isArray(value)) value.forEach((v, i) => out.push(...paths(v, [...prefix, i])))
  else if (value !== null && typeof value === 'object')
    for (const [k, v] of Object.entries(value)) out.push(...paths(v, [...prefix, k]))
  return out
}

type Mutation =
  { kind: 'replace'; value: Json } | { kind: 'delete' } | { kind: 'add'; key: string; value: Json }

function mutate(document: Json, path: (string | number)[], mutation: Mutation): Json {
  const copy = JSON.parse(JSON.stringify(document)) as Json
  if (path.length === 0) return mutation.kind === 'replace' ? mutation.value : copy
  let parent: any = copy
  for (const step of path.slice(0, -1)) parent = parent[step]
  const last = path[path.length - 1] as string | number
  if (mutation.kind === 'replace') parent[last] = mutation.value
  else if (mutation.kind === 'delete') {
    if (Array.isArray(parent)) parent.splice(last as number, 1)
    else delete parent[last]
  } else {
    const target = parent[last]
    if (target !== null && typeof target === 'object' && !Array.isArray(target))
      Object.defineProperty(target, mutation.key, {
        value: mutation.value,
        enumerable: true,
        writable: true,
        configurable: true,
      })
    else if (Array.isArray(target)) target.push(mutation.value)
  }
  return copy
}

const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({
    kind: fc.constant('replace' as const),
    value: fc.jsonValue({ maxDepth: 2 }) as fc.Arbitrary<Json>,
  }),
  fc.record({ kind: fc.constant('delete' as const) }),
  fc.record({
    kind: fc.constant('add' as const),
    key: fc.string({ maxLength: 8 }),
    value: fc.jsonValue({ maxDepth: 1 }) as fc.Arbitrary<Json>,
  }),
)

describe.each(Object.entries(verifiers))('%s verifier under arbitrary input', (_kind, { file, verify }) => {
  const original = readText(file)
  const originalBytes = new TextEncoder().encode(original)
  const document = JSON.parse(original) as Json

  it('accepts the unmutated document (as bytes, text and object)', () => {
    expect(outcome(() => verify(originalBytes))).toBe('accepted')
    expect(outcome(() => verify(original))).toBe('accepted')
    expect(outcome(() => verify(JSON.parse(original)))).toBe('accepted')
  })

  it('rejects arbitrary bytes, strings and values with a ProtocolError', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 512 }), (bytes) => {
        expect(outcome(() => verify(bytes))).not.toBe('accepted')
      }),
      { numRuns: 200 },
    )
    fc.assert(
      fc.property(fc.json({ maxDepth: 3 }), (text) => {
        expect(outcome(() => verify(text))).not.toBe('accepted')
      }),
      { numRuns: 200 },
    )
    fc.assert(
      fc.property(fc.anything({ maxDepth: 3 }), (value) => {
        expect(outcome(() => verify(value as DocumentInput))).not.toBe('accepted')
      }),
      { numRuns: 200 },
    )
  })

  it('rejects a document nested 10,000 deep with a ProtocolError, not a stack overflow', () => {
    const depth = 10_000
    const texts = ['['.repeat(depth) + ']'.repeat(depth), '{"a":'.repeat(depth) + '1' + '}'.repeat(depth)]
    for (const text of texts) {
      expect(outcome(() => verify(text))).toBe('NOT_CANONICAL')
      expect(outcome(() => verify(new TextEncoder().encode(text)))).toBe('NOT_CANONICAL')
      // As an object it has no canonical form: SCHEMA, still a ProtocolError.
      expect(outcome(() => verify(JSON.parse(text) as DocumentInput))).toBe('SCHEMA')
    }
    // Brackets inside a string are text, not nesting.
    const brackets = `{"a":"${'['.repeat(depth)}"}`
    expect(outcome(() => verify(brackets))).not.toBe('accepted')
  })

  it('rejects every byte-level mutation (flip, insert, delete, truncate)', () => {
    fc.assert(
      fc.property(
        fc.nat(originalBytes.length - 1),
        fc.integer({ min: 1, max: 255 }),
        fc.integer({ min: 0, max: 3 }),
        (position, byte, op) => {
          let mutated: Uint8Array
          if (op === 0) {
            mutated = Uint8Array.from(originalBytes)
            mutated[position] ^= byte
          } else if (op === 1)
            mutated = Uint8Array.from([
              ...originalBytes.subarray(0, position),
              byte,
              ...originalBytes.subarray(position),
            ])
          else if (op === 2)
            mutated = Uint8Array.from([
              ...originalBytes.subarray(0, position),
              ...originalBytes.subarray(position + 1),
            ])
          else mutated = originalBytes.subarray(0, position)
          expect(outcome(() => verify(mutated))).not.toBe('accepted')
        },
      ),
      { numRuns: 400 },
    )
  })

  it('rejects every structural mutation that changes the document, re-encoded canonically', () => {
    const allPaths = paths(document)
    fc.assert(
      fc.property(fc.constantFrom(...allPaths), mutationArb, (path, mutation) => {
        const mutated = mutate(document, path, mutation)
        let text: string
        try {
          text = canonicalize(mutated)
        } catch {
          return
        }
        const result = outcome(() => verify(text))
        if (text === original) expect(result).toBe('accepted')
        else expect(result).not.toBe('accepted')
      }),
      { numRuns: 400 },
    )
  })

  if (typeof (document as Record<string, Json>).payload === 'string') {
    it('rejects every mutation of the signed payload inside the envelope', () => {
      const envelope = document as { payload: string }
      const statement = JSON.parse(Buffer.from(envelope.payload, 'base64').toString('utf8')) as Json
      const statementPaths = paths(statement)
      fc.assert(
        fc.property(fc.constantFrom(...statementPaths), mutationArb, (path, mutation) => {
          let payloadText: string
          try {
            payloadText = canonicalize(mutate(statement, path, mutation))
          } catch {
            return
          }
          const payload = toBase64(new TextEncoder().encode(payloadText))
          const text = canonicalize({ ...envelope, payload })
          const result = outcome(() => verify(text))
          if (payload === envelope.payload) expect(result).toBe('accepted')
          else expect(result).not.toBe('accepted')
        }),
        { numRuns: 300 },
      )
    })
  }
})

describe('other decoders under arbitrary input', () => {
  it('identifyDocument, identities, keys, encodings and SPDX throw only ProtocolErrors', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 120 }), fc.uint8Array({ maxLength: 100 }), (text, bytes) => {
        for (const fn of [
          () => identifyDocument(text),
          () => identifyDocument(bytes),
          () => publicKeyFromIdentity(text),
          () => publicKeyFromIdentity(`did:key:${text}`),
          () => unmarshalPrivateKey(bytes),
          () => fromBase64(text, 'x'),
          () => fromBase58btc(text, 'x'),
          () => fromBase58btc(`z${text}`, 'x'),
          () => parseLicense(text),
        ])
          outcome(fn)
      }),
      { numRuns: 500 },
    )
  })
})
