// The pool of revocations held until their manifest arrives: every outcome of hold(), the bounds
// per sender, per issuer, in count and in bytes, fair eviction when full, and expiry.
import { describe, expect, it } from 'vitest'
import { HeldRevocations, type HeldLimits } from '../../../node/consent/held.ts'
import {
  createRevocation,
  generateKey,
  verifyRevocation,
  type Ed25519PrivateKey,
} from '../../../protocol/index.ts'
import { randomDigest } from '../helpers/consent.ts'

const revocation = (issuer: Ed25519PrivateKey, manifest = randomDigest()) =>
  verifyRevocation(createRevocation({ issuerKey: issuer, manifest, items: 'all' }))

const limits: HeldLimits = { max: 6, maxBytes: 10_000, perSender: 3, perIssuer: 4, ttlMs: 1000 }

describe('HeldRevocations', () => {
  it('gives each outcome of hold() in its order: duplicate, size, sender share, issuer share', () => {
    const pool = new HeldRevocations({ limits })
    const issuer = generateKey()
    const first = revocation(issuer)
    const rows: [string, () => string, string][] = [
      ['a new one', () => pool.hold(first, 's1', 100), 'held'],
      ['the same digest again', () => pool.hold(first, 's2', 100), 'already-held'],
      ['larger than the byte bound', () => pool.hold(revocation(issuer), 's1', 10_001), 'too-large'],
      ['the sender’s second', () => pool.hold(revocation(issuer), 's1', 100), 'held'],
      ['the sender’s third', () => pool.hold(revocation(issuer), 's1', 100), 'held'],
      ['the sender’s fourth', () => pool.hold(revocation(issuer), 's1', 100), 'sender-full'],
      ['the issuer’s fourth, from another sender', () => pool.hold(revocation(issuer), 's2', 100), 'held'],
      ['the issuer’s fifth', () => pool.hold(revocation(issuer), 's3', 100), 'issuer-full'],
    ]
    for (const [what, run, outcome] of rows) expect(run(), what).toBe(outcome)
    expect(pool.size).toBe(4)
    expect(pool.bytes).toBe(400)
  })

  it('when full, makes room from the sender holding the most, oldest first', () => {
    const pool = new HeldRevocations({ limits })
    const held = [0, 1, 2].map(() => revocation(generateKey()))
    for (const r of held) pool.hold(r, 'greedy', 100)
    for (let i = 0; i < 3; i++) pool.hold(revocation(generateKey()), `s${i}`, 100)
    expect(pool.size).toBe(6)
    expect(pool.hold(revocation(generateKey()), 'newcomer', 100)).toBe('held')
    expect(pool.size).toBe(6)
    expect(pool.has(held[0]!.digest)).toBe(false)
    expect(pool.has(held[1]!.digest)).toBe(true)
    // Bytes are bounded too: a large one evicts as many as it needs.
    expect(pool.hold(revocation(generateKey()), 'big', 9_500)).toBe('held')
    expect(pool.bytes).toBeLessThanOrEqual(limits.maxBytes)
  })

  it('hands over the revocations of an arriving manifest, and forgets what waited past the TTL', () => {
    let now = 0
    const pool = new HeldRevocations({ limits, now: () => now })
    const manifest = randomDigest()
    const a = revocation(generateKey(), manifest)
    const b = revocation(generateKey(), manifest)
    const other = revocation(generateKey())
    pool.hold(a, 's1', 100)
    now = 600
    pool.hold(b, 's2', 100)
    pool.hold(other, 's3', 100)
    expect(pool.peek(manifest).map((h) => h.revocation.digest)).toEqual([a.digest, b.digest])
    now = 1100 // a waited past the TTL
    expect(pool.take(manifest).map((h) => h.sender)).toEqual(['s2'])
    expect(pool.size).toBe(1)
    expect(pool.bytes).toBe(100)
  })
})
