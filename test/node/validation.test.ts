import { TopicValidatorResult } from '@libp2p/gossipsub'
import { describe, expect, it } from 'vitest'
import {
  GOSSIP_MAX_MESSAGE_BYTES,
  PENALTY_MAX_TRACKED_PEERS,
  PENALTY_RATE_LIMITED,
  PENALTY_REJECT,
} from '../../node/constants.ts'
import { createChainValidator, viaProtocol } from '../../node/validation/chain.ts'
import { ProtocolError } from '../../protocol/errors.ts'
import { GossipValidationError, ignore, reject } from '../../node/p2p/gossip-errors.ts'
import { type GossipInput, runValidator, ValidationCounters } from '../../node/p2p/gossip-validator.ts'
import { checkSize, decodeBody, encodeGossipMessage, GOSSIP_KINDS } from '../../node/validation/messages.ts'
import { PeerPenalties } from '../../node/p2p/penalties.ts'
import { RateLimiter } from '../../node/p2p/rate-limit.ts'

function framed(tag: number, text: string | Uint8Array, padTo = 0): Uint8Array {
  const body = typeof text === 'string' ? new TextEncoder().encode(text) : text
  const out = new Uint8Array(Math.max(1 + body.byteLength, padTo))
  out[0] = tag
  out.set(body, 1)
  // Pad with JSON whitespace so that the body stays valid JSON at any size.
  out.fill(0x20, 1 + body.byteLength)
  return out
}

const filler = JSON.stringify({ note: 'x'.repeat(80) })

describe('size and decode stages', () => {
  it.each([
    ['empty message', 'consent', new Uint8Array(0), 'TOO_SMALL'],
    ['shorter than any signed document', 'consent', framed(1, '{}'), 'TOO_SMALL'],
    ['unknown kind byte', 'consent', framed(99, filler), 'UNKNOWN_KIND'],
    ['zero kind byte', 'contributions', framed(0, filler), 'UNKNOWN_KIND'],
    [
      'manifest on the contributions topic',
      'contributions',
      framed(GOSSIP_KINDS.manifest.tag, filler),
      'WRONG_TOPIC',
    ],
    [
      'checkpoint on the consent topic',
      'consent',
      framed(GOSSIP_KINDS.checkpoint.tag, filler),
      'WRONG_TOPIC',
    ],
    [
      'contribution over its kind limit',
      'contributions',
      framed(GOSSIP_KINDS.contribution.tag, filler, GOSSIP_KINDS.contribution.maxBytes + 1),
      'TOO_LARGE',
    ],
    [
      'anything over the gossip limit',
      'checkpoints',
      framed(GOSSIP_KINDS.checkpoint.tag, filler, GOSSIP_MAX_MESSAGE_BYTES + 1),
      'TOO_LARGE',
    ],
  ] as const)('rejects %s', (_, topic, data, code) => {
    expect(() => checkSize(topic, data)).toThrowError(expect.objectContaining({ action: 'REJECT', code }))
  })

  it('accepts a message inside its kind window and hands back the body', () => {
    const data = encodeGossipMessage('contribution', { note: 'x'.repeat(80) })
    const { kind, body } = checkSize('contributions', data)
    expect(kind).toBe('contribution')
    expect(decodeBody(body).value).toEqual({ note: 'x'.repeat(80) })
  })

  it.each([
    ['invalid UTF-8', Uint8Array.from([0x7b, 0xff, 0xfe, 0x7d])],
    ['truncated JSON', new TextEncoder().encode('{"a": [1, 2')],
    ['a JSON array', new TextEncoder().encode('[1,2,3]')],
    ['a JSON string', new TextEncoder().encode('"manifest"')],
    ['JSON null', new TextEncoder().encode('null')],
    ['trailing garbage', new TextEncoder().encode('{"a":1} x')],
  ])('rejects a body that is %s', (_, body) => {
    expect(() => decodeBody(body)).toThrowError(expect.objectContaining({ action: 'REJECT', code: 'DECODE' }))
  })

  it('refuses to encode a document larger than its kind allows', () => {
    expect(() =>
      encodeGossipMessage('contribution', { blob: 'x'.repeat(GOSSIP_KINDS.contribution.maxBytes) }),
    ).toThrowError(expect.objectContaining({ code: 'TOO_LARGE' }))
  })
})

describe('chain order', () => {
  it('runs size, decode, schema, signature, semantics in order and stops at the first failure', async () => {
    const calls: string[] = []
    const validate = createChainValidator('contributions', {
      contribution: {
        schema: (doc) => {
          calls.push('schema')
          if (doc.bad === 'schema') throw reject('SCHEMA')
          return doc
        },
        signature: (doc) => {
          calls.push('signature')
          if (doc.bad === 'signature') throw reject('BAD_SIGNATURE')
          return doc
        },
        semantics: (doc) => {
          calls.push('semantics')
          if (doc.bad === 'semantics') throw ignore('ROUND_OUT_OF_WINDOW')
        },
      },
    })
    const input = (doc: unknown): GossipInput => ({
      from: 'a',
      propagationSource: 'b',
      topic: 'contributions',
      data: encodeGossipMessage('contribution', doc),
    })
    const pad = 'p'.repeat(80)
    await expect(validate(input({ bad: 'schema', pad }))).rejects.toMatchObject({ code: 'SCHEMA' })
    expect(calls).toEqual(['schema'])
    calls.length = 0
    await expect(validate(input({ bad: 'signature', pad }))).rejects.toMatchObject({ code: 'BAD_SIGNATURE' })
    expect(calls).toEqual(['schema', 'signature'])
    calls.length = 0
    await expect(validate(input({ bad: 'semantics', pad }))).rejects.toMatchObject({
      action: 'IGNORE',
      code: 'ROUND_OUT_OF_WINDOW',
    })
    expect(calls).toEqual(['schema', 'signature', 'semantics'])
    calls.length = 0
    await expect(validate(input({ pad }))).resolves.toBeUndefined()
    // A kind without a chain on this node is ignored, never accepted.
    const consentWithoutRevocations = createChainValidator('consent', {
      manifest: { schema: (doc) => doc, signature: (doc) => doc },
    })
    await expect(
      consentWithoutRevocations({
        from: 'a',
        propagationSource: 'b',
        topic: 'consent',
        data: encodeGossipMessage('revocation', { pad }),
      }),
    ).rejects.toMatchObject({ action: 'IGNORE', code: 'UNKNOWN_KIND' })
  })
})

describe('the validator wrapper', () => {
  const deps = () => ({
    counters: new ValidationCounters(),
    penalties: new PeerPenalties(),
    rateLimiter: new RateLimiter(),
  })
  const input: GossipInput = {
    from: 'author',
    propagationSource: 'relay',
    topic: 'consent',
    data: new Uint8Array(100),
  }

  it('maps outcomes to gossipsub results, counts them per code and charges REJECTs to the relaying peer', async () => {
    const d = deps()
    expect((await runValidator(async () => {}, input, d)).result).toBe(TopicValidatorResult.Accept)
    expect(
      (
        await runValidator(
          async () => {
            throw ignore('UNKNOWN_BASE')
          },
          input,
          d,
        )
      ).result,
    ).toBe(TopicValidatorResult.Ignore)
    expect(
      (
        await runValidator(
          async () => {
            throw reject('REVOKED')
          },
          input,
          d,
        )
      ).result,
    ).toBe(TopicValidatorResult.Reject)
    expect(
      (
        await runValidator(
          async () => {
            throw reject('REVOKED')
          },
          input,
          d,
        )
      ).code,
    ).toBe('REVOKED')
    expect(d.counters.snapshot().consent).toEqual({
      accept: 1,
      ignore: { UNKNOWN_BASE: 1 },
      reject: { REVOKED: 2 },
    })
    expect(d.penalties.points('relay')).toBeCloseTo(2 * PENALTY_REJECT, 3)
    expect(d.penalties.points('author')).toBe(0)
    expect(d.penalties.counts('relay')).toEqual({ REVOKED: 2 })
  })

  it('treats an unclassified exception as IGNORE INTERNAL, without charging the peer', async () => {
    const d = deps()
    const outcome = await runValidator(
      async () => {
        throw new TypeError('bug')
      },
      input,
      d,
    )
    expect(outcome).toEqual({ result: TopicValidatorResult.Ignore, code: 'INTERNAL' })
    expect(d.penalties.points('relay')).toBe(0)
  })

  it('lets only classified protocol failures REJECT: a bug inside a verifier is IGNORE INTERNAL', async () => {
    const d = deps()
    const classified = await runValidator(
      () =>
        viaProtocol('BAD_SIGNATURE', () => {
          throw new ProtocolError('THRESHOLD_NOT_MET', 'one signer short')
        }),
      input,
      d,
    )
    expect(classified).toEqual({ result: TopicValidatorResult.Reject, code: 'BAD_SIGNATURE' })
    const unmapped = await runValidator(
      () =>
        viaProtocol('SCHEMA', () => {
          throw new ProtocolError('CUSTODIAN_MISMATCH', 'a code this stage does not map')
        }),
      input,
      d,
    )
    expect(unmapped).toEqual({ result: TopicValidatorResult.Reject, code: 'SCHEMA' })
    const bug = await runValidator(
      () =>
        viaProtocol('BAD_SIGNATURE', () => {
          throw new TypeError("Cannot read properties of undefined (reading 'length')")
        }),
      input,
      d,
    )
    expect(bug).toEqual({ result: TopicValidatorResult.Ignore, code: 'INTERNAL' })
    expect(d.penalties.counts('relay')).toEqual({ BAD_SIGNATURE: 1, SCHEMA: 1 })
  })

  it('throttles a flood per peer and topic and charges the author of every throttled message', async () => {
    let now = 0
    const d = { ...deps(), rateLimiter: new RateLimiter({ ratePerSecond: 10, burst: 5, now: () => now }) }
    const own = { ...input, from: 'relay' }
    const results = []
    for (let i = 0; i < 8; i++)
      results.push(
        (await runValidator(async () => {}, { ...own, data: Uint8Array.of(i) }, d)).code ?? 'accept',
      )
    expect(results).toEqual([
      'accept',
      'accept',
      'accept',
      'accept',
      'accept',
      'RATE_LIMITED',
      'RATE_LIMITED',
      'RATE_LIMITED',
    ])
    expect(d.penalties.counts('relay')).toEqual({ RATE_LIMITED: 3 })
    expect(d.penalties.points('relay')).toBeCloseTo(3 * PENALTY_RATE_LIMITED, 3)
    // Another topic has its own bucket; time refills the first.
    expect(
      (await runValidator(async () => {}, { ...own, topic: 'checkpoints', data: Uint8Array.of(9) }, d)).code,
    ).toBeUndefined()
    now += 200
    expect((await runValidator(async () => {}, { ...own, data: Uint8Array.of(10) }, d)).code).toBeUndefined()
  })

  it("throttles a relay forwarding others' messages too fast, without charging it", async () => {
    const d = { ...deps(), rateLimiter: new RateLimiter({ ratePerSecond: 1, burst: 2, now: () => 0 }) }
    const codes = []
    for (let i = 0; i < 5; i++)
      codes.push(
        (await runValidator(async () => {}, { ...input, data: Uint8Array.of(i) }, d)).code ?? 'accept',
      )
    expect(codes).toEqual(['accept', 'accept', 'RATE_LIMITED', 'RATE_LIMITED', 'RATE_LIMITED'])
    expect(d.penalties.points('relay')).toBe(0)
  })

  it('lets copies of an accepted message through for free: no token, no penalty', async () => {
    const d = { ...deps(), rateLimiter: new RateLimiter({ ratePerSecond: 1, burst: 2, now: () => 0 }) }
    const own = { ...input, from: 'relay' }
    const copy = { ...own, data: Uint8Array.of(42) }
    // Ten re-announcements of one accepted document cost nothing ...
    for (let i = 0; i < 10; i++) expect((await runValidator(async () => {}, copy, d)).code).toBeUndefined()
    // ... so the bucket still holds its tokens for new messages (one was taken by the first copy).
    expect((await runValidator(async () => {}, { ...own, data: Uint8Array.of(1) }, d)).code).toBeUndefined()
    expect((await runValidator(async () => {}, { ...own, data: Uint8Array.of(2) }, d)).code).toBe(
      'RATE_LIMITED',
    )
    // With the bucket empty, a copy of an accepted message still goes through.
    expect((await runValidator(async () => {}, copy, d)).code).toBeUndefined()
    expect(d.penalties.counts('relay')).toEqual({ RATE_LIMITED: 1 })
  })
})

describe('rate limiter', () => {
  it('keeps a drained bucket across reconnects but drops refilled ones when it holds too many', () => {
    let now = 0
    const limiter = new RateLimiter({ ratePerSecond: 1, burst: 2, maxBuckets: 3, now: () => now })
    expect([limiter.take('flooder'), limiter.take('flooder'), limiter.take('flooder')]).toEqual([
      true,
      true,
      false,
    ])
    for (const peer of ['a', 'b', 'c']) limiter.take(peer)
    // Over the bound, but every bucket is below full (a, b, c hold one token): none is dropped.
    expect(limiter.size).toBe(4)
    now = 1500
    limiter.take('d')
    // 1.5 s refilled a, b and c to full, so they go; the flooder (1.5 tokens) and d (1) stay.
    expect(limiter.size).toBe(2)
    expect(limiter.take('flooder')).toBe(true)
    expect(limiter.take('flooder')).toBe(false)
  })
})

describe('penalties', () => {
  it('halve every half-life and count per code', () => {
    let now = 0
    const penalties = new PeerPenalties({ halfLifeMs: 1000, now: () => now })
    penalties.add('p', 'BAD_SIGNATURE', 8)
    now = 1000
    expect(penalties.points('p')).toBeCloseTo(4, 6)
    penalties.add('p', 'REVOKED', 4)
    now = 2000
    expect(penalties.points('p')).toBeCloseTo(4, 6)
    expect(penalties.counts('p')).toEqual({ BAD_SIGNATURE: 1, REVOKED: 1 })
    expect(() => penalties.add('p', 'REVOKED', -1)).toThrow(RangeError)
  })

  it('forget fully decayed peers once many are tracked', () => {
    let now = 0
    const penalties = new PeerPenalties({ halfLifeMs: 1000, now: () => now })
    for (let i = 0; i <= PENALTY_MAX_TRACKED_PEERS; i++) penalties.add(`old-${i}`, 'RATE_LIMITED', 1)
    now = 60_000
    penalties.add('recent', 'BAD_SIGNATURE', 10)
    expect(penalties.peers()).toEqual(['recent'])
    expect(penalties.points('recent')).toBe(10)
  })

  it('error type carries action and code', () => {
    const err = reject('FOREIGN_CUSTODIAN', 'custodian is someone else')
    expect(err).toBeInstanceOf(GossipValidationError)
    expect([err.action, err.code, err.message]).toEqual([
      'REJECT',
      'FOREIGN_CUSTODIAN',
      'custodian is someone else',
    ])
  })
})
