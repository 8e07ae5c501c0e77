import { describe, expect, it } from 'vitest'
import {
  assertDigest,
  bytesToDigest,
  createStreamingDigest,
  digestToBytes,
  isDigest,
  sha256Digest,
} from '../../protocol/digest.ts'
import { ProtocolError } from '../../protocol/errors.ts'

describe('digests', () => {
  it('names bytes by sha256:<hex> with the FIPS 180-2 test values', () => {
    expect(sha256Digest(new TextEncoder().encode('abc'))).toBe(
      'sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad',
    )
    expect(sha256Digest(new Uint8Array(0))).toBe(
      'sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
    )
  })

  it('streams to the same digest as one-shot hashing', () => {
    const bytes = new Uint8Array(100_000).map((_, i) => (i * 31) & 0xff)
    const s = createStreamingDigest()
    for (let i = 0; i < bytes.length; i += 4096) s.update(bytes.subarray(i, i + 4096))
    expect(s.digest()).toBe(sha256Digest(bytes))
  })

  it('accepts only the canonical lowercase form', () => {
    const d = sha256Digest(new Uint8Array([1]))
    expect(isDigest(d)).toBe(true)
    expect(isDigest(d.toUpperCase())).toBe(false)
    expect(isDigest(d.replace('sha256:', 'SHA256:'))).toBe(false)
    expect(isDigest(`${d}0`)).toBe(false)
    expect(isDigest(d.slice(0, -1))).toBe(false)
    expect(isDigest(42)).toBe(false)
    expect(bytesToDigest(digestToBytes(d))).toBe(d)
    expect(() => digestToBytes('sha256:xyz')).toThrow(ProtocolError)
  })

  it('assertDigest names the mismatch with DIGEST_MISMATCH', () => {
    const bytes = new Uint8Array([1, 2, 3])
    assertDigest(bytes, sha256Digest(bytes), 'payload')
    try {
      assertDigest(Uint8Array.of(1, 2, 4), sha256Digest(bytes), 'payload')
      throw new Error('accepted')
    } catch (error) {
      expect((error as ProtocolError).code).toBe('DIGEST_MISMATCH')
    }
  })
})
