import { generateKeyPair, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { expectCode } from './expect-code.ts'
import {
  didKeyFromPublicKey,
  generateKey,
  marshalPrivateKey,
  peerIdString,
  publicKeyFromIdentity,
  publicKeyFromVerificationMethod,
  sign,
  unmarshalPrivateKey,
  verificationMethodFor,
  verify,
} from '../../protocol/keys.ts'

describe('keys and identities', () => {
  it('matches RFC 8032 test 1 (seed -> public key -> signature of the empty message)', () => {
    const key = generateKey(
      Uint8Array.from(Buffer.from('9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60', 'hex')),
    )
    expect(Buffer.from(key.publicKey.raw).toString('hex')).toBe(
      'd75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a',
    )
    const signature = sign(key, new Uint8Array(0))
    expect(Buffer.from(signature).toString('hex')).toBe(
      'e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b',
    )
    expect(verify(key.publicKey, new Uint8Array(0), signature)).toBe(true)
  })

  it('writes did:key as the did:key spec example does for its key', () => {
    // did:key spec: ed25519 keys give identifiers starting z6Mk (0xed01 multicodec prefix).
    const key = generateKey()
    const did = didKeyFromPublicKey(key.publicKey)
    expect(did.startsWith('did:key:z6Mk')).toBe(true)
    expect(publicKeyFromIdentity(did).equals(key.publicKey)).toBe(true)
    expect(publicKeyFromVerificationMethod(verificationMethodFor(key.publicKey)).equals(key.publicKey)).toBe(
      true,
    )
  })

  it('is interchangeable with a libp2p peer identity', async () => {
    const libp2pKey = await generateKeyPair('Ed25519')
    const ours = unmarshalPrivateKey(privateKeyToProtobuf(libp2pKey))
    expect(peerIdString(ours.publicKey)).toBe(peerIdFromPrivateKey(libp2pKey).toString())
    expect(
      publicKeyFromIdentity(peerIdFromPrivateKey(libp2pKey).toString()).equals(libp2pKey.publicKey),
    ).toBe(true)
    const message = new TextEncoder().encode('round 7')
    expect(await libp2pKey.publicKey.verify(message, sign(ours, message))).toBe(true)
    expect(verify(ours.publicKey, message, await libp2pKey.sign(message))).toBe(true)
    expect(Buffer.from(marshalPrivateKey(ours)).equals(Buffer.from(privateKeyToProtobuf(libp2pKey)))).toBe(
      true,
    )
  })

  it('rejects malformed identities and keys with BAD_KEY', async () => {
    const key = generateKey()
    const did = didKeyFromPublicKey(key.publicKey)
    const secp = await generateKeyPair('secp256k1')
    for (const bad of [
      '',
      'did:key:',
      'did:key:zzzz',
      `${did}x`,
      did.replace('z6Mk', 'z6Mj'),
      'did:key:z0',
      'did:web:example.com',
      '12D3KooWnotapeer',
      peerIdFromPrivateKey(secp).toString(),
      'x'.repeat(500),
    ])
      expectCode(() => publicKeyFromIdentity(bad), 'BAD_KEY')
    expectCode(() => publicKeyFromVerificationMethod(did), 'BAD_KEY')
    expectCode(() => publicKeyFromVerificationMethod(`${did}#z6MkOther`), 'BAD_KEY')
    expectCode(() => unmarshalPrivateKey(privateKeyToProtobuf(secp)), 'BAD_KEY')
    expectCode(() => unmarshalPrivateKey(new Uint8Array([1, 2, 3])), 'BAD_KEY')
    const tampered = marshalPrivateKey(key)
    tampered[tampered.length - 1] ^= 1
    expectCode(() => unmarshalPrivateKey(tampered), 'BAD_KEY')
    expectCode(() => generateKey(new Uint8Array(31)), 'BAD_KEY')
    expectCode(() => verify(new Uint8Array(31), new Uint8Array(0), new Uint8Array(64)), 'BAD_KEY')
  })

  it('property: any change to message or signature fails verification, never throws', () => {
    const key = generateKey()
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 1, maxLength: 64 }),
        fc.nat(),
        fc.integer({ min: 1, max: 255 }),
        fc.boolean(),
        (message, position, xor, flipSignature) => {
          const signature = sign(key, message)
          expect(verify(key.publicKey, message, signature)).toBe(true)
          const m = Uint8Array.from(message)
          const s = Uint8Array.from(signature)
          if (flipSignature) s[position % s.length] ^= xor
          else m[position % m.length] ^= xor
          expect(verify(key.publicKey, m, s)).toBe(false)
        },
      ),
      { numRuns: 300 },
    )
    expect(verify(key.publicKey, new Uint8Array(1), new Uint8Array(63))).toBe(false)
  })
})
