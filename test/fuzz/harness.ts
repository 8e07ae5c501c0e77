// What every fuzz target promises, whatever the input: the decoder returns, or throws one of its
// own typed errors with a code from its closed set; it never throws anything else (a TypeError,
// a RangeError from an allocation, a SyntaxError leaking from JSON.parse) and never allocates
// more than its bound. A target names its decoder, the inputs to try (fast-check arbitraries:
// arbitrary bytes, mutations of valid inputs, structured forgeries) and the bound.
//
// Allocation is read from V8's external memory (ArrayBuffer backing stores count there) just
// before and right after each input: a decoder that allocates a gigabyte for a forged shape shows
// a gigabyte here even if it then throws, since nothing collects it before it is read. A
// collection during the input only hides earlier garbage; a small slack covers V8's own buffers.
import { getHeapStatistics } from 'node:v8'
import fc from 'fast-check'

/** What a decoder did with one input. */
export type Outcome = { accepted: true } | { accepted: false; code: string }

export interface FuzzTarget<I> {
  name: string
  /** The function fuzzed, for tables and docs ("decodeSafetensors", "blob frames"). */
  decoder: string
  inputs: fc.Arbitrary<I>
  /** Inputs the decoder must accept: what the mutations start from (checked, so a broken decoder cannot pass by refusing everything). */
  valid: fc.Arbitrary<I>
  /** Runs the decoder; returns its outcome, or throws what is not one of its typed errors. */
  run(input: I): Outcome | Promise<Outcome>
  /** The bytes one input may make the decoder allocate, beyond the input itself. */
  allocationBound(input: I): number
  /** Size of an input in bytes (for the table). */
  size(input: I): number
  /** When the decoder accepts only inputs that are valid by construction, this says so. */
  mayAccept?(input: I): boolean
}

/** Slack over each bound: buffers of fast-check and V8 itself, allocated while an input runs. */
export const ALLOCATION_SLACK_BYTES = 4 * 1024 * 1024

export interface FuzzReport {
  target: string
  decoder: string
  runs: number
  accepted: number
  /** Rejections by code. */
  codes: Record<string, number>
  /** Most external memory one input added (before anything was collected). */
  peakInputAllocationBytes: number
  largestInputBytes: number
  seconds: number
  seed: number
}

/** A typed error of one closed set: its class and code, or undefined for anything else. */
export function typedOutcome(
  err: unknown,
  classes: readonly (abstract new (...args: never[]) => Error & { code: string })[],
): Outcome {
  for (const cls of classes)
    if (err instanceof cls) return { accepted: false, code: `${cls.name}:${err.code}` }
  throw new UntypedError(err)
}

/** A decoder threw something that is not one of its typed errors: a bug the fuzzer found. */
export class UntypedError extends Error {
  constructor(cause: unknown) {
    super(`untyped error: ${cause instanceof Error ? `${cause.name}: ${cause.message}` : String(cause)}`, {
      cause,
    })
    this.name = 'UntypedError'
  }
}

/** Runs `runs` inputs through a target under fast-check (which shrinks a failure to a small input). */
export async function fuzz<I>(
  target: FuzzTarget<I>,
  options: { runs: number; seed?: number },
): Promise<FuzzReport> {
  const seed = options.seed ?? Date.now() % 2 ** 31
  const codes: Record<string, number> = {}
  let accepted = 0
  let runs = 0
  let peak = 0
  let largest = 0
  const started = performance.now()
  const check = (input: I, outcome: Outcome, before: number): void => {
    const grown = getHeapStatistics().external_memory - before
    peak = Math.max(peak, grown)
    const bound = target.allocationBound(input) + target.size(input) + ALLOCATION_SLACK_BYTES
    if (grown > bound) throw new Error(`${target.name}: one input allocated ${grown} bytes (bound ${bound})`)
    runs += 1
    largest = Math.max(largest, target.size(input))
    if (outcome.accepted) {
      if (target.mayAccept !== undefined && !target.mayAccept(input))
        throw new Error(`${target.name}: accepted an input that is not valid by construction`)
      accepted += 1
    } else codes[outcome.code] = (codes[outcome.code] ?? 0) + 1
  }
  await fc.assert(
    fc.asyncProperty(target.inputs, async (input) => {
      const before = getHeapStatistics().external_memory
      check(input, await target.run(input), before)
    }),
    { numRuns: options.runs, seed, endOnFailure: false },
  )
  return {
    target: target.name,
    decoder: target.decoder,
    runs,
    accepted,
    codes,
    peakInputAllocationBytes: peak,
    largestInputBytes: largest,
    seconds: (performance.now() - started) / 1000,
    seed,
  }
}

// ---- shared input builders ----

/** One byte-level mutation of `bytes`: flip, insert, delete, truncate or overwrite a run. */
export function mutatedBytes(bytes: fc.Arbitrary<Uint8Array>): fc.Arbitrary<Uint8Array> {
  return fc
    .tuple(
      bytes,
      fc.nat(),
      fc.integer({ min: 1, max: 255 }),
      fc.integer({ min: 0, max: 4 }),
      fc.uint8Array({ maxLength: 16 }),
    )
    .map(([original, at, byte, op, run]) => {
      if (original.byteLength === 0) return run
      const position = at % original.byteLength
      switch (op) {
        case 0: {
          const out = Uint8Array.from(original)
          out[position] = (out[position] as number) ^ byte
          return out
        }
        case 1:
          return concat(original.subarray(0, position), Uint8Array.of(byte), original.subarray(position))
        case 2:
          return concat(original.subarray(0, position), original.subarray(position + 1))
        case 3:
          return original.subarray(0, position)
        default: {
          const out = Uint8Array.from(original)
          out.set(run.subarray(0, out.byteLength - position), position)
          return out
        }
      }
    })
}

/** One to three mutations in a row. */
export function mutations(bytes: fc.Arbitrary<Uint8Array>): fc.Arbitrary<Uint8Array> {
  const once = mutatedBytes(bytes)
  return fc.oneof(once, mutatedBytes(once), mutatedBytes(mutatedBytes(once)))
}

export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0))
  let offset = 0
  for (const part of parts) {
    out.set(part, offset)
    offset += part.byteLength
  }
  return out
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

/**
 * A JSON document with one value replaced, deleted or added at any depth: inputs that pass
 * the cheap stages and reach the deep ones (schema, signature, semantics).
 */
export function mutatedJson(document: Json): fc.Arbitrary<Json> {
  const all = paths(document)
  return fc
    .tuple(
      fc.constantFrom(...all),
      fc.oneof(
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
      ),
    )
    .map(([path, mutation]) => {
      const copy = structuredClone(document)
      if (path.length === 0) return mutation.kind === 'replace' ? mutation.value : copy
      let parent: Json = copy
      for (const step of path.slice(0, -1)) parent = (parent as Record<string, Json>)[step] as Json
      const last = path[path.length - 1] as string | number
      const container = parent as Record<string | number, Json>
      if (mutation.kind === 'replace') container[last] = mutation.value
      else if (mutation.kind === 'delete') {
        if (Array.isArray(parent)) parent.splice(last as number, 1)
        else delete container[last]
      } else {
        const target = container[last]
        if (Array.isArray(target)) target.push(mutation.value)
        else if (target !== null && typeof target === 'object')
          Object.defineProperty(target, mutation.key, {
            value: mutation.value,
            enumerable: true,
            writable: true,
            configurable: true,
          })
      }
      return copy
    })
}
