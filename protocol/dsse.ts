// DSSE v1 envelopes (https://github.com/secure-systems-lab/dsse, envelope.md + protocol.md):
//   { "payload": base64(body), "payloadType": type, "signatures": [{ "keyid": id, "sig": base64(sig) }] }
// Each signature is Ed25519 over PAE(type, body):
//   PAE = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body
// where LEN is the byte length as ASCII decimal without leading zeros and SP is 0x20.
// Here `keyid` is the signer's libp2p PeerId, signatures are sorted by keyid with no
// duplicates, and the envelope itself is exchanged as RFC 8785 canonical JSON.
import { z } from 'zod'
import { parseDocument, parseSchema, type DocumentInput } from './decode.ts'
import { sha256Digest } from './digest.ts'
import { fromBase64, toBase64 } from './encoding.ts'
import { ProtocolError } from './errors.ts'
import { canonicalBytes } from './jcs.ts'
import { peerIdString, publicKeyFromIdentity, sign, verify, type Ed25519PrivateKey } from './keys.ts'
import { peerIdSchema } from './schemas.ts'
import { DSSE_MAX_SIGNATURES } from './constants.ts'

export interface DsseSignature {
  keyid: string
  sig: string
}

export interface DsseEnvelope {
  payload: string
  payloadType: string
  signatures: DsseSignature[]
}

export const dsseEnvelopeSchema = z.strictObject({
  payload: z.string(),
  payloadType: z.string().min(1).max(256),
  signatures: z
    .array(z.strictObject({ keyid: peerIdSchema, sig: z.string().length(88) }))
    .min(1)
    .max(DSSE_MAX_SIGNATURES),
})

const encoder = new TextEncoder()

/** DSSE pre-authentication encoding of (payloadType, payload). */
export function pae(payloadType: string, payload: Uint8Array): Uint8Array {
  const type = encoder.encode(payloadType)
  const head = encoder.encode(`DSSEv1 ${type.length} ${payloadType} ${payload.length} `)
  const out = new Uint8Array(head.length + payload.length)
  out.set(head)
  out.set(payload, head.length)
  return out
}

function compareCodeUnits(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}

/** Signs `payload` with each key and returns the envelope (signatures sorted by keyid). */
export function createEnvelope(
  payloadType: string,
  payload: Uint8Array,
  signers: readonly Ed25519PrivateKey[],
): DsseEnvelope {
  if (signers.length === 0) throw new ProtocolError('SCHEMA', 'a DSSE envelope needs at least one signer')
  const message = pae(payloadType, payload)
  const signatures = signers.map((key) => ({
    keyid: peerIdString(key.publicKey),
    sig: toBase64(sign(key, message)),
  }))
  signatures.sort((a, b) => compareCodeUnits(a.keyid, b.keyid))
  for (let i = 1; i < signatures.length; i++)
    if ((signatures[i] as DsseSignature).keyid === (signatures[i - 1] as DsseSignature).keyid)
      throw new ProtocolError('SCHEMA', 'the same key signed twice')
  return { payload: toBase64(payload), payloadType, signatures }
}

/** Adds one more signature (e.g. a second publisher co-signing a checkpoint). */
export function addSignature(envelope: DsseEnvelope, key: Ed25519PrivateKey): DsseEnvelope {
  const payload = fromBase64(envelope.payload, 'payload')
  const keyid = peerIdString(key.publicKey)
  if (envelope.signatures.some((s) => s.keyid === keyid))
    throw new ProtocolError('SCHEMA', 'this key already signed the envelope')
  const sig = toBase64(sign(key, pae(envelope.payloadType, payload)))
  const signatures = [...envelope.signatures, { keyid, sig }].sort((a, b) =>
    compareCodeUnits(a.keyid, b.keyid),
  )
  return { payload: envelope.payload, payloadType: envelope.payloadType, signatures }
}

export interface OpenedEnvelope {
  envelope: DsseEnvelope
  payloadType: string
  /** The exact signed body bytes. */
  payload: Uint8Array
  /** PeerIds whose signatures verified, sorted. */
  signers: string[]
  /** sha256 of the payload bytes: the name of the signed statement. */
  payloadDigest: string
}

/**
 * Decodes an envelope and verifies EVERY signature in it (a single bad signature rejects
 * the envelope, so a valid envelope cannot carry junk). Does not decide who must sign.
 */
export function openEnvelope(input: DocumentInput, maxBytes: number, what: string): OpenedEnvelope {
  const { value } = parseDocument(input, maxBytes, what)
  const envelope = parseSchema(dsseEnvelopeSchema, value, what) as DsseEnvelope
  const payload = fromBase64(envelope.payload, `${what} payload`)
  const message = pae(envelope.payloadType, payload)
  const signers: string[] = []
  for (let i = 0; i < envelope.signatures.length; i++) {
    const { keyid, sig } = envelope.signatures[i] as DsseSignature
    if (i > 0 && compareCodeUnits((envelope.signatures[i - 1] as DsseSignature).keyid, keyid) >= 0)
      throw new ProtocolError('SCHEMA', `${what}: signatures must be sorted by keyid without duplicates`)
    const publicKey = publicKeyFromIdentity(keyid)
    if (!verify(publicKey, message, fromBase64(sig, `${what} signature`)))
      throw new ProtocolError('BAD_SIGNATURE', `${what}: signature by ${keyid} does not verify`)
    signers.push(keyid)
  }
  return {
    envelope,
    payloadType: envelope.payloadType,
    payload,
    signers,
    payloadDigest: sha256Digest(payload),
  }
}

/** The canonical bytes of an envelope, as written to files and sent on the wire. */
export function envelopeBytes(envelope: DsseEnvelope): Uint8Array {
  return canonicalBytes(envelope)
}
