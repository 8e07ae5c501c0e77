// A hostile peer that speaks the real protocol (libp2p, noise, yamux, gossipsub with StrictSign)
// publishes forged, revoked, foreign, oversized and flooding messages to two honest peers.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { GOSSIP_RATE_BURST, GOSSIP_RATE_PER_SECOND, GRAYLIST_THRESHOLD } from '../../node/constants.ts'
import type { CoopHost } from '../../node/p2p/host.ts'
import { type TopicName, topicString } from '../../node/p2p/topics.ts'
import { createConsentValidator } from '../../node/validation/consent.ts'
import { encodeGossipMessage, GOSSIP_KINDS } from '../../node/validation/messages.ts'
import { createCheckpointValidator, createContributionValidator } from '../../node/validation/statements.ts'
import { type Ed25519PrivateKey, generateKey } from '../../protocol/index.ts'
import {
  contributionBy,
  manifestFor,
  openConsentBook,
  peerOf,
  revocationOf,
  TEST_CONSENT_TERMS,
} from './helpers/consent.ts'
import { connect, startHost, TEST_COOP_ID, waitFor } from './helpers/net.ts'

interface HonestPeer {
  host: CoopHost
  key: Ed25519PrivateKey
  /** The peer's own consent book (real, over LevelDB). */
  consent: Awaited<ReturnType<typeof openConsentBook>>
  /** What the peer's handlers were given, i.e. what it would store. */
  stored: { topic: TopicName; from: string }[]
}

async function honestPeer(publishers: string[]): Promise<HonestPeer> {
  const key = generateKey()
  const host = await startHost({ privateKey: key })
  const consent = await openConsentBook(peerOf(key))
  const stored: HonestPeer['stored'] = []
  host.setValidator(
    'consent',
    createConsentValidator(
      {
        acceptedLicenses: ['CC-BY-4.0'],
        admission: { mode: 'open' },
        intendedUse: TEST_CONSENT_TERMS.intendedUse,
      },
      consent.book,
    ),
  )
  host.setValidator(
    'contributions',
    createContributionValidator({ coopId: TEST_COOP_ID, admission: { mode: 'open' } }),
  )
  host.setValidator(
    'checkpoints',
    createCheckpointValidator({ coopId: TEST_COOP_ID, publishers, threshold: 1 }),
  )
  for (const topic of ['consent', 'contributions', 'checkpoints'] as const)
    host.onMessage(topic, (msg) => void stored.push({ topic, from: msg.from }))
  return { host, key, consent, stored }
}

describe('a hostile peer speaking the real protocol', () => {
  const rightsHolder = generateKey()
  let a: HonestPeer
  let b: HonestPeer
  let hostile: CoopHost
  let hostileKey: Ed25519PrivateKey
  /** Publishes raw bytes with the hostile peer's own gossipsub, bypassing every local check. */
  let inject: (topic: TopicName, data: Uint8Array) => Promise<void>

  beforeAll(async () => {
    a = await honestPeer([])
    b = await honestPeer([])
    hostileKey = generateKey()
    hostile = await startHost({ privateKey: hostileKey })
    for (const topic of ['consent', 'contributions', 'checkpoints'] as const)
      hostile.setValidator(topic, async () => {})
    await connect(a.host, b.host)
    await connect(hostile, a.host)
    await connect(hostile, b.host)
    const pubsub = hostile.libp2p.services.pubsub as {
      publish(topic: string, data: Uint8Array): Promise<unknown>
    }
    inject = async (topic, data) => {
      await pubsub.publish(topicString(TEST_COOP_ID, topic), data)
    }
  })

  afterAll(async () => {
    await Promise.all([a.host.stop(), b.host.stop(), hostile.stop()])
    await Promise.all([a.consent.close(), b.consent.close()])
  })

  const rejectedAt = (peer: HonestPeer, topic: TopicName, code: string) =>
    peer.host.validationStats()[topic]?.reject[code as 'SCHEMA'] ?? 0

  it('rejects each attack with its code, stores nothing from it, and sinks its score', async () => {
    const hostilePeer = peerOf(hostileKey)
    // 1. A manifest naming the hostile node as custodian, altered after the rights holder signed it.
    const forged = manifestFor(rightsHolder, hostilePeer)
    forged.credentialSubject.attribution = { name: 'Someone else' }
    await inject('consent', encodeGossipMessage('manifest', forged))
    await waitFor(
      () =>
        rejectedAt(a, 'consent', 'BAD_SIGNATURE') === 1 && rejectedAt(b, 'consent', 'BAD_SIGNATURE') === 1,
      'BAD_SIGNATURE at both peers',
    )

    // 2. A revocation of a manifest the honest peers hold, signed by the hostile node's own rights-holder key.
    const held = manifestFor(rightsHolder, a.host.peerId)
    await a.consent.book.addManifest(held, false)
    await b.consent.book.addManifest(held, false)
    await inject('consent', encodeGossipMessage('revocation', revocationOf(generateKey(), held)))
    await waitFor(() => rejectedAt(a, 'consent', 'NOT_ISSUER') === 1, 'NOT_ISSUER')

    // 3. A genuine manifest for another node (a's images), announced by the hostile node.
    await inject('consent', encodeGossipMessage('manifest', manifestFor(rightsHolder, a.host.peerId)))
    await waitFor(() => rejectedAt(a, 'consent', 'FOREIGN_CUSTODIAN') === 1, 'FOREIGN_CUSTODIAN')

    // 4. A contribution padded past the gossip limit (go-libp2p's 1 MiB).
    const oversized = new Uint8Array(1_500_000).fill(0x20)
    oversized[0] = GOSSIP_KINDS.contribution.tag
    await inject('contributions', oversized)
    await waitFor(() => rejectedAt(a, 'contributions', 'TOO_LARGE') === 1, 'TOO_LARGE')

    // 5. A contribution signed by the hostile node but claiming an honest author's place: another signer.
    await inject('contributions', encodeGossipMessage('contribution', contributionBy(a.key)))
    await waitFor(() => rejectedAt(a, 'contributions', 'SENDER_MISMATCH') === 1, 'SENDER_MISMATCH')

    expect(a.host.penaltyCounts(hostile.peerId)).toEqual({
      BAD_SIGNATURE: 1,
      NOT_ISSUER: 1,
      FOREIGN_CUSTODIAN: 1,
      TOO_LARGE: 1,
      SENDER_MISMATCH: 1,
    })
    await waitFor(
      () => a.host.peerScore(hostile.peerId) < 0 && b.host.peerScore(hostile.peerId) < 0,
      'the hostile score to go negative at both peers',
    )
    // Nothing the hostile peer sent reached a handler, at either peer.
    expect([...a.stored, ...b.stored].filter((m) => m.from === hostile.peerId)).toEqual([])
  })

  it('throttles a flood and graylists the flooder, while honest peers keep working', async () => {
    const started = performance.now()
    for (let i = 0; i < 400; i++)
      await inject('checkpoints', encodeGossipMessage('checkpoint', { flood: i, pad: 'x'.repeat(80) }))
    await waitFor(() => a.host.peerScore(hostile.peerId) < GRAYLIST_THRESHOLD, 'the flooder to be graylisted')
    const elapsedSeconds = (performance.now() - started) / 1000
    const stats = a.host.validationStats().checkpoints
    expect(stats?.ignore.RATE_LIMITED ?? 0).toBeGreaterThan(0)
    // Only the burst allowance plus the refill was ever validated (and rejected); the rest cost a bucket lookup.
    const validated = (stats?.reject.SCHEMA ?? 0) + (stats?.reject.NOT_PUBLISHER ?? 0)
    expect(validated).toBeLessThanOrEqual(
      GOSSIP_RATE_BURST + Math.ceil(GOSSIP_RATE_PER_SECOND * elapsedSeconds),
    )
    expect(validated + (stats?.ignore.RATE_LIMITED ?? 0)).toBeLessThanOrEqual(400)
    expect(a.host.penaltyCounts(hostile.peerId).RATE_LIMITED).toBeGreaterThan(0)

    // The honest peers still exchange consent and contributions, and still score each other well.
    const before = b.stored.length
    await a.host.publish('consent', encodeGossipMessage('manifest', manifestFor(rightsHolder, a.host.peerId)))
    await b.host.publish('contributions', encodeGossipMessage('contribution', contributionBy(b.key)))
    await waitFor(
      () =>
        b.stored.length === before + 1 &&
        a.stored.some((m) => m.topic === 'contributions' && m.from === b.host.peerId),
      'honest messages to flow',
    )
    expect(a.host.peerScore(b.host.peerId)).toBeGreaterThanOrEqual(0)
    expect(b.host.peerScore(a.host.peerId)).toBeGreaterThanOrEqual(0)
    expect([...a.stored, ...b.stored].filter((m) => m.from === hostile.peerId)).toEqual([])
  })
})
