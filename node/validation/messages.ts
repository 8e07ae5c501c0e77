// Gossip message kinds: a closed set, each bound to one topic and a size window.
// Wire form: one kind byte, then the document's RFC 8785 canonical JSON (UTF-8). The kind byte
// lets the size stage check the kind's own bounds before a single byte of JSON is parsed.
import { canonicalBytes } from '../../protocol/jcs.ts'
import { parseDocument, type ParsedJson } from '../../protocol/decode.ts'
import { isProtocolError } from '../../protocol/errors.ts'
import {
  GOSSIP_CHECKPOINT_MAX_BYTES,
  GOSSIP_CONTRIBUTION_MAX_BYTES,
  GOSSIP_MAX_MESSAGE_BYTES,
  GOSSIP_MIN_MESSAGE_BYTES,
  GOSSIP_MANIFEST_MAX_BYTES,
  GOSSIP_REVOCATION_MAX_BYTES,
} from '../constants.ts'
import type { TopicName } from '../p2p/topics.ts'
import { reject } from '../p2p/gossip-errors.ts'

export const GOSSIP_KINDS = {
  manifest: {
    tag: 1,
    topic: 'consent',
    minBytes: GOSSIP_MIN_MESSAGE_BYTES,
    maxBytes: GOSSIP_MANIFEST_MAX_BYTES,
  },
  revocation: {
    tag: 2,
    topic: 'consent',
    minBytes: GOSSIP_MIN_MESSAGE_BYTES,
    maxBytes: GOSSIP_REVOCATION_MAX_BYTES,
  },
  contribution: {
    tag: 3,
    topic: 'contributions',
    minBytes: GOSSIP_MIN_MESSAGE_BYTES,
    maxBytes: GOSSIP_CONTRIBUTION_MAX_BYTES,
  },
  checkpoint: {
    tag: 4,
    topic: 'checkpoints',
    minBytes: GOSSIP_MIN_MESSAGE_BYTES,
    maxBytes: GOSSIP_CHECKPOINT_MAX_BYTES,
  },
} as const satisfies Record<string, { tag: number; topic: TopicName; minBytes: number; maxBytes: number }>

export type GossipKind = keyof typeof GOSSIP_KINDS

const KIND_BY_TAG = new Map<number, GossipKind>(
  Object.entries(GOSSIP_KINDS).map(([kind, spec]) => [spec.tag, kind as GossipKind]),
)

/** Encodes a document for gossip; throws TOO_LARGE if it would not pass a receiver's size stage. */
export function encodeGossipMessage(kind: GossipKind, document: unknown): Uint8Array {
  const body = canonicalBytes(document)
  const out = new Uint8Array(1 + body.byteLength)
  out[0] = GOSSIP_KINDS[kind].tag
  out.set(body, 1)
  if (out.byteLength > GOSSIP_KINDS[kind].maxBytes || out.byteLength > GOSSIP_MAX_MESSAGE_BYTES) {
    throw reject(
      'TOO_LARGE',
      `${kind} message of ${out.byteLength} bytes exceeds ${GOSSIP_KINDS[kind].maxBytes}`,
    )
  }
  return out
}

export interface SizedMessage {
  kind: GossipKind
  body: Uint8Array
}

/** Size stage: the kind byte names a kind of this topic, and the message fits that kind's window. */
export function checkSize(topic: TopicName, data: Uint8Array): SizedMessage {
  // Nothing shorter than the smallest signed document can be valid, whatever its kind.
  if (data.byteLength < GOSSIP_MIN_MESSAGE_BYTES)
    throw reject('TOO_SMALL', `message of ${data.byteLength} bytes`)
  // Nothing larger than the network-wide gossip limit is ever processed.
  if (data.byteLength > GOSSIP_MAX_MESSAGE_BYTES)
    throw reject('TOO_LARGE', `message of ${data.byteLength} bytes`)
  const kind = KIND_BY_TAG.get(data[0] as number)
  // The kind byte must name a known kind.
  if (kind === undefined) throw reject('UNKNOWN_KIND', `kind byte ${data[0]}`)
  const spec = GOSSIP_KINDS[kind]
  // Each kind travels on exactly one topic.
  if (spec.topic !== topic) throw reject('WRONG_TOPIC', `${kind} on ${topic}`)
  // Each kind has its own size window.
  if (data.byteLength > spec.maxBytes)
    throw reject('TOO_LARGE', `${kind} of ${data.byteLength} bytes exceeds ${spec.maxBytes}`)
  if (data.byteLength < spec.minBytes) throw reject('TOO_SMALL', `${kind} of ${data.byteLength} bytes`)
  return { kind, body: data.subarray(1) }
}

/**
 * Decode stage: the body is well-formed UTF-8 JSON in RFC 8785 canonical form, holding an
 * object. This is the only JSON.parse of a gossip message: the result is what every later stage
 * and the protocol/ verifiers read (they take a ParsedJson without parsing again).
 */
export function decodeBody(body: Uint8Array): ParsedJson {
  let parsed: ParsedJson
  try {
    parsed = parseDocument(body, body.byteLength, 'message')
  } catch (err) {
    // Signed documents have exactly one encoding: any other is a fault of the author.
    if (isProtocolError(err) && err.code === 'NOT_CANONICAL')
      throw reject('SCHEMA', 'body is not RFC 8785 canonical JSON')
    throw reject('DECODE', 'body is not UTF-8 JSON')
  }
  const value = parsed.value
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw reject('DECODE', 'body is not a JSON object')
  return parsed
}
