// A topic validator is a chain of plain functions run in a fixed order, cheapest first:
// size -> decode -> [shape] -> verify -> semantics. Each stage throws a GossipValidationError
// (via reject()/ignore()) or returns; the first failure ends the chain. The message is parsed
// exactly once (decode); every later stage, and the protocol/ verifier, reads that result.
import type { ParsedJson } from '../../protocol/decode.ts'
import { isProtocolError, type ProtocolError } from '../../protocol/index.ts'
import type { TopicName } from '../p2p/topics.ts'
import { type GossipErrorCode, GossipValidationError, ignore, reject } from '../p2p/gossip-errors.ts'
import type { GossipInput, GossipValidator } from '../p2p/gossip-validator.ts'
import { checkSize, decodeBody, type GossipKind } from './messages.ts'

export interface ChainContext {
  /** Author of the gossip message (gossipsub verified its envelope signature). */
  from: string
  propagationSource: string
  topic: TopicName
  kind: GossipKind
  /** The document's exact bytes (canonical JSON), for digests. */
  body: Uint8Array
  /** The decode stage's result: hand it to protocol/ verifiers, which then do not parse again. */
  parsed: ParsedJson
}

export interface KindStages<S, V = S> {
  /**
   * Optional cheap checks on the decoded document before any cryptography (e.g. who may send
   * this kind); returns it typed. The closed schema itself is the protocol/ verifier's, run once.
   */
  schema?(document: Record<string, unknown>, ctx: ChainContext): S | Promise<S>
  /** The protocol/ verifier (signatures, then schema), and that its signer may send it; returns the verified form. */
  signature(message: S, ctx: ChainContext): V | Promise<V>
  /** Meaning in our current state (windows, known references, consent); plugged in by the owner of that state. */
  semantics?(verified: V, ctx: ChainContext): void | Promise<void>
}

// The stage tables are keyed by kind; `any` lets each kind carry its own document types.
// biome-ignore lint/suspicious/noExplicitAny: heterogeneous per-kind document types
export type StagesByKind = Partial<Record<GossipKind, KindStages<any, any>>>

/** What a chain validator keeps of a message it accepted, for the topic's handler. */
export interface AcceptedDocument {
  kind: GossipKind
  /** The decoded document (for a statement, its DSSE envelope), or the shape stage's typed form. */
  message: unknown
  /** The signature stage's result: the verified form. */
  verified: unknown
}

export interface ChainValidator extends GossipValidator {
  /**
   * The decoded and verified forms of a message this validator accepted, looked up by the
   * message's data array, which gossipsub hands unchanged to the handlers: handlers never parse
   * or verify a message again.
   */
  verified(data: Uint8Array): AcceptedDocument | undefined
}

export function createChainValidator(topic: TopicName, stagesByKind: StagesByKind): ChainValidator {
  // Weak keys: entries vanish with the message, so a flood cannot grow this map.
  const accepted = new WeakMap<Uint8Array, AcceptedDocument>()
  const validate = async (input: GossipInput): Promise<void> => {
    // size: kind byte and the kind's size window, before any parsing.
    const { kind, body } = checkSize(topic, input.data)
    const stages = stagesByKind[kind]
    // A kind of this topic that this node has no chain for is not ours to judge.
    if (stages === undefined) throw ignore('UNKNOWN_KIND', `no validator for ${kind}`)
    // decode: well-formed UTF-8 JSON object in canonical form, parsed once.
    const parsed = decodeBody(body)
    const ctx: ChainContext = {
      from: input.from,
      propagationSource: input.propagationSource,
      topic,
      kind,
      body,
      parsed,
    }
    const document = parsed.value as Record<string, unknown>
    // shape: cheap checks before any cryptography.
    const message = stages.schema === undefined ? document : await stages.schema(document, ctx)
    // verify: the document's own signatures, then its closed schema; its signer may send it.
    const verified = await stages.signature(message, ctx)
    // semantics: it makes sense now (state-dependent checks).
    if (stages.semantics !== undefined) await stages.semantics(verified, ctx)
    accepted.set(input.data, { kind, message, verified })
  }
  return Object.assign(validate, { verified: (data: Uint8Array) => accepted.get(data) })
}

/** How protocol/ rejection codes map to gossip codes (all REJECT: each is the author's fault). */
const PROTOCOL_TO_GOSSIP: Partial<Record<ProtocolError['code'], GossipErrorCode>> = {
  BAD_SIGNATURE: 'BAD_SIGNATURE',
  EXPIRED: 'EXPIRED',
  NOT_YET_VALID: 'NOT_YET_VALID',
  USAGE_NOT_ALLOWED: 'USAGE_NOT_ALLOWED',
  LICENSE_NOT_ACCEPTED: 'LICENSE_NOT_ACCEPTED',
  INVALID_LICENSE: 'SCHEMA',
  REVOKED: 'REVOKED',
  SCHEMA: 'SCHEMA',
  TOO_LARGE: 'TOO_LARGE',
  TRUNCATED: 'DECODE',
  UNKNOWN_TYPE: 'SCHEMA',
  INVALID_JSON: 'DECODE',
  BAD_KEY: 'SCHEMA',
  UNSUPPORTED_CRYPTOSUITE: 'SCHEMA',
  BAD_ENCODING: 'DECODE',
  THRESHOLD_NOT_MET: 'BAD_SIGNATURE',
  ISSUER_MISMATCH: 'NOT_ISSUER',
  DIGEST_MISMATCH: 'SCHEMA',
  MERKLE_MISMATCH: 'SCHEMA',
  NOT_CANONICAL: 'SCHEMA',
  SCOPE_NOT_ALLOWED: 'SCOPE_NOT_ALLOWED',
}

/**
 * Runs a protocol/ function and turns its ProtocolError into a gossip REJECT with the mapped
 * code (or `fallback` for codes that mean something else at this stage).
 */
export async function viaProtocol<T>(fallback: GossipErrorCode, fn: () => T | Promise<T>): Promise<T> {
  try {
    return await fn()
  } catch (err) {
    if (err instanceof GossipValidationError) throw err
    if (isProtocolError(err)) throw reject(PROTOCOL_TO_GOSSIP[err.code] ?? fallback, err.message)
    // Anything else is a bug of ours, not a classified fault of the sender: refuse the message
    // (it never passes) but charge no one, so our bugs never penalise honest relays.
    throw ignore('INTERNAL', err instanceof Error ? err.message : String(err))
  }
}
