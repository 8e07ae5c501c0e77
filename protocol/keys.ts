// Ed25519 identities. A node's libp2p peer key is its signing key (so the same key file is
// its network identity), and rights holders are named by `did:key` (multicodec ed25519-pub
// 0xed01, base58btc multibase). Signing and verification go through node:crypto (OpenSSL),
// which is strict RFC 8032 verification and ~10x faster than a JS implementation.
import {
  createPrivateKey,
  createPublicKey,
  randomBytes,
  sign as nodeSign,
  verify as nodeVerify,
  type KeyObject,
} from 'node:crypto'
import {
  privateKeyFromProtobuf,
  privateKeyFromRaw,
  privateKeyToProtobuf,
  publicKeyFromRaw,
} from '@libp2p/crypto/keys'
import type { Ed25519PrivateKey, Ed25519PublicKey } from '@libp2p/interface'
import { peerIdFromPublicKey, peerIdFromString } from '@libp2p/peer-id'
import { base58btc } from 'multiformats/bases/base58'
import {
  ED25519_PUBLIC_KEY_BYTES,
  ED25519_SEED_BYTES,
  ED25519_SIGNATURE_BYTES,
  KEY_CACHE_SIZE,
  MULTICODEC_ED25519_PUB,
} from './constants.ts'
import { ProtocolError } from './errors.ts'

export type { Ed25519PrivateKey, Ed25519PublicKey }

const DID_KEY_PREFIX = 'did:key:'
// DER prefixes that wrap a raw 32-byte Ed25519 key as PKCS#8 / SPKI (RFC 8410).
const PKCS8_PREFIX = Uint8Array.from([
  0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
])
const SPKI_PREFIX = Uint8Array.from([0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00])

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length)
  out.set(a)
  out.set(b, a.length)
  return out
}

function rawPublicKey(key: Ed25519PublicKey | Uint8Array): Uint8Array {
  const raw = key instanceof Uint8Array ? key : key?.raw
  if (!(raw instanceof Uint8Array) || raw.length !== ED25519_PUBLIC_KEY_BYTES)
    throw new ProtocolError('BAD_KEY', `an Ed25519 public key is ${ED25519_PUBLIC_KEY_BYTES} bytes`)
  return raw
}

/** An Ed25519 key from a 32-byte seed (the RFC 8032 private key); random when omitted. */
export function generateKey(seed?: Uint8Array): Ed25519PrivateKey {
  const secret = seed ?? new Uint8Array(randomBytes(ED25519_SEED_BYTES))
  if (!(secret instanceof Uint8Array) || secret.length !== ED25519_SEED_BYTES)
    throw new ProtocolError('BAD_KEY', `an Ed25519 seed is ${ED25519_SEED_BYTES} bytes`)
  const keyObject = createPrivateKey({
    key: Buffer.from(concat(PKCS8_PREFIX, secret)),
    format: 'der',
    type: 'pkcs8',
  })
  const spki = createPublicKey(keyObject).export({ format: 'der', type: 'spki' })
  const publicKey = new Uint8Array(spki.subarray(SPKI_PREFIX.length))
  // libp2p's raw private key form is seed || public key (64 bytes).
  const key = privateKeyFromRaw(concat(secret, publicKey))
  if (key.type !== 'Ed25519') throw new ProtocolError('BAD_KEY', 'not an Ed25519 key')
  return key
}

/** The libp2p protobuf encoding of the private key (what libp2p stores as a peer identity). */
export function marshalPrivateKey(key: Ed25519PrivateKey): Uint8Array {
  return privateKeyToProtobuf(key)
}

/** Parses a libp2p protobuf private key; BAD_KEY unless it is a well-formed Ed25519 key. */
export function unmarshalPrivateKey(bytes: Uint8Array): Ed25519PrivateKey {
  let key: ReturnType<typeof privateKeyFromProtobuf>
  try {
    key = privateKeyFromProtobuf(bytes)
  } catch (error) {
    throw new ProtocolError('BAD_KEY', 'not a libp2p protobuf private key', { cause: error })
  }
  if (key.type !== 'Ed25519') throw new ProtocolError('BAD_KEY', `expected an Ed25519 key, got ${key.type}`)
  // Re-derive from the seed so a file whose stored public half was altered is rejected.
  const rederived = generateKey(key.raw.subarray(0, ED25519_SEED_BYTES))
  if (!rederived.publicKey.equals(key.publicKey))
    throw new ProtocolError('BAD_KEY', 'stored public key does not match the private key')
  return rederived
}

/** `did:key:z6Mk...` for an Ed25519 public key. */
export function didKeyFromPublicKey(key: Ed25519PublicKey | Uint8Array): string {
  return DID_KEY_PREFIX + base58btc.encode(concat(MULTICODEC_ED25519_PUB, rawPublicKey(key)))
}

/** The DID URL of the key's verification method: `did:key:z...#z...` (did:key method spec). */
export function verificationMethodFor(key: Ed25519PublicKey | Uint8Array): string {
  const did = didKeyFromPublicKey(key)
  return `${did}#${did.slice(DID_KEY_PREFIX.length)}`
}

/** The libp2p PeerId string (base58btc identity multihash) of an Ed25519 public key. */
export function peerIdString(key: Ed25519PublicKey | Uint8Array): string {
  const publicKey = key instanceof Uint8Array ? publicKeyFromRaw(rawPublicKey(key)) : key
  if (publicKey.type !== 'Ed25519') throw new ProtocolError('BAD_KEY', 'not an Ed25519 key')
  return peerIdFromPublicKey(publicKey).toString()
}

function publicKeyFromDidKey(did: string): Ed25519PublicKey {
  const multibase = did.slice(DID_KEY_PREFIX.length)
  let decoded: Uint8Array
  try {
    decoded = base58btc.decode(multibase)
  } catch (error) {
    throw new ProtocolError('BAD_KEY', 'did:key is not base58btc multibase', { cause: error })
  }
  if (
    decoded.length !== MULTICODEC_ED25519_PUB.length + ED25519_PUBLIC_KEY_BYTES ||
    decoded[0] !== MULTICODEC_ED25519_PUB[0] ||
    decoded[1] !== MULTICODEC_ED25519_PUB[1]
  )
    throw new ProtocolError('BAD_KEY', 'did:key is not an ed25519-pub multicodec key')
  const raw = decoded.subarray(MULTICODEC_ED25519_PUB.length)
  // Canonical form only: base58 has a single encoding per byte string, so this rejects nothing valid.
  if (didKeyFromPublicKey(raw) !== did) throw new ProtocolError('BAD_KEY', 'did:key is not in canonical form')
  const key = publicKeyFromRaw(raw)
  if (key.type !== 'Ed25519') throw new ProtocolError('BAD_KEY', 'not an Ed25519 key')
  return key
}

/** The Ed25519 public key named by a `did:key` or a libp2p PeerId string; BAD_KEY otherwise. */
// Identities already parsed, so a node verifying a stream of statements from the same peers
// decodes each PeerId once. Bounded because peers choose the identities; only valid ones are kept.
const identityKeys = new Map<string, Ed25519PublicKey>()

export function publicKeyFromIdentity(identity: string): Ed25519PublicKey {
  if (typeof identity !== 'string' || identity.length === 0 || identity.length > 128)
    throw new ProtocolError('BAD_KEY', 'identity must be a short string')
  const cached = identityKeys.get(identity)
  if (cached !== undefined) return cached
  const key = parseIdentity(identity)
  if (identityKeys.size >= KEY_CACHE_SIZE) identityKeys.delete(identityKeys.keys().next().value as string)
  identityKeys.set(identity, key)
  return key
}

function parseIdentity(identity: string): Ed25519PublicKey {
  if (identity.startsWith(DID_KEY_PREFIX)) return publicKeyFromDidKey(identity)
  let peerId: ReturnType<typeof peerIdFromString>
  try {
    peerId = peerIdFromString(identity)
  } catch (error) {
    throw new ProtocolError('BAD_KEY', 'neither a did:key nor a PeerId', { cause: error })
  }
  if (peerId.type !== 'Ed25519' || peerId.publicKey === undefined)
    throw new ProtocolError('BAD_KEY', 'PeerId is not an Ed25519 identity')
  if (peerId.toString() !== identity)
    throw new ProtocolError('BAD_KEY', 'PeerId is not in canonical base58btc form')
  return peerId.publicKey
}

/** The public key of a `did:key` DID URL `did:key:z..#z..` (fragment must repeat the key). */
export function publicKeyFromVerificationMethod(url: string): Ed25519PublicKey {
  if (typeof url !== 'string') throw new ProtocolError('BAD_KEY', 'verification method must be a string')
  const hash = url.indexOf('#')
  if (hash < 0) throw new ProtocolError('BAD_KEY', 'verification method has no fragment')
  const key = publicKeyFromDidKey(url.slice(0, hash))
  if (verificationMethodFor(key) !== url)
    throw new ProtocolError('BAD_KEY', 'verification method fragment does not match its did:key')
  return key
}

const privateKeyObjects = new WeakMap<Ed25519PrivateKey, KeyObject>()
const publicKeyObjects = new Map<string, KeyObject>()

function privateKeyObject(key: Ed25519PrivateKey): KeyObject {
  let object = privateKeyObjects.get(key)
  if (object === undefined) {
    if (
      key?.type !== 'Ed25519' ||
      !(key.raw instanceof Uint8Array) ||
      key.raw.length !== 2 * ED25519_SEED_BYTES
    )
      throw new ProtocolError('BAD_KEY', 'not an Ed25519 private key')
    object = createPrivateKey({
      key: Buffer.from(concat(PKCS8_PREFIX, key.raw.subarray(0, ED25519_SEED_BYTES))),
      format: 'der',
      type: 'pkcs8',
    })
    privateKeyObjects.set(key, object)
  }
  return object
}

function publicKeyObject(raw: Uint8Array): KeyObject {
  const id = Buffer.from(raw).toString('hex')
  let object = publicKeyObjects.get(id)
  if (object === undefined) {
    try {
      object = createPublicKey({ key: Buffer.from(concat(SPKI_PREFIX, raw)), format: 'der', type: 'spki' })
    } catch (error) {
      throw new ProtocolError('BAD_KEY', 'not a valid Ed25519 public key', { cause: error })
    }
    // Bounded: verifiers see keys chosen by peers.
    if (publicKeyObjects.size >= KEY_CACHE_SIZE)
      publicKeyObjects.delete(publicKeyObjects.keys().next().value as string)
    publicKeyObjects.set(id, object)
  }
  return object
}

/** Ed25519 signature (64 bytes) of `bytes`. */
export function sign(privateKey: Ed25519PrivateKey, bytes: Uint8Array): Uint8Array {
  return new Uint8Array(nodeSign(null, bytes, privateKeyObject(privateKey)))
}

/** True iff `signature` is a valid Ed25519 signature of `bytes` by `publicKey`; never throws for bad signatures. */
export function verify(
  publicKey: Ed25519PublicKey | Uint8Array,
  bytes: Uint8Array,
  signature: Uint8Array,
): boolean {
  const raw = rawPublicKey(publicKey)
  if (!(signature instanceof Uint8Array) || signature.length !== ED25519_SIGNATURE_BYTES) return false
  try {
    return nodeVerify(null, bytes, publicKeyObject(raw), signature)
  } catch {
    return false
  }
}
