// Class 3, re-announcement without self-harm (docs/THREAT-MODEL.md §3). Every node repeats the
// consent documents it holds so late joiners learn them. A hostile member tries to turn that
// against the cooperative: it makes every honest book hold hundreds of valid revocations (its own
// manifest, revoked one item at a time) and floods revocations naming manifests nobody holds.
// Three honest consent nodes (real libp2p on loopback, real LevelDB) then re-announce at the
// production pace. Nothing of the flood is ever repeated, no honest node throttles or charges
// another, and the mesh repeats each stored document about once per interval, not once per node.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CONSENT_ANNOUNCE_PER_SECOND, HELD_REVOCATIONS_PER_SENDER } from '../../../node/consent/constants.ts'
import { encodeGossipMessage } from '../../../node/validation/messages.ts'
import { createManifest, createRevocation, manifestDigest } from '../../../protocol/index.ts'
import { generateKey, peerOf, randomDigest } from '../helpers/consent.ts'
import { type ConsentPeer, startConsentPeer, startRawPublisher } from '../helpers/consent-peer.ts'
import { connect, waitFor } from '../helpers/net.ts'

const REVOCATIONS = 150

describe('class 3: re-announcement without self-harm', () => {
  let peers: ConsentPeer[]
  let attacker: Awaited<ReturnType<typeof startRawPublisher>>

  beforeAll(async () => {
    // A short calm interval so the test sees several passes; the pace per second is production's.
    peers = await Promise.all(
      [0, 1, 2].map(() => startConsentPeer({ announce: { earlyPasses: 1, earlyMs: 200, calmMs: 5_000 } })),
    )
    attacker = await startRawPublisher()
  })

  afterAll(async () => {
    await Promise.all(peers.map((p) => p.stop()))
    await attacker.host.stop()
  })

  const stat = (peer: ConsentPeer, action: 'ignore' | 'reject', code: string) =>
    peer.host.validationStats().consent?.[action][code as 'SCHEMA'] ?? 0

  it(
    'repeats only what every honest peer accepts, inside every rate limit, about once per interval',
    { timeout: 300_000 },
    async () => {
      const [a, b, c] = peers as [ConsentPeer, ConsentPeer, ConsentPeer]
      // The attacker's own manifest and one valid revocation per item, already in every honest book
      // (as after weeks of running): each node would repeat all of them.
      const attackerRights = generateKey()
      const items = Array.from({ length: REVOCATIONS }, () => ({
        digest: randomDigest(),
        mediaType: 'image/png' as const,
        byteLength: 999,
      }))
      const own = createManifest({
        issuerKey: attackerRights,
        custodian: attacker.host.peerId,
        license: 'CC-BY-4.0',
        attribution: { name: 'Mallory' },
        scope: { commercialUse: false, weightRedistribution: true },
        items,
        validFrom: new Date(Date.now() - 60_000),
      })
      const revocations = items.map((i) =>
        createRevocation({ issuerKey: attackerRights, manifest: manifestDigest(own), items: [i.digest] }),
      )
      for (const peer of peers) {
        await peer.consent.book.addManifest(own, false)
        for (const r of revocations) expect(await peer.consent.book.addRevocation(r)).toBe('applied')
      }
      await connect(a.host, b.host)
      await connect(b.host, c.host)
      await connect(a.host, c.host)
      await connect(attacker.host, a.host)

      // The flood: 300 revocations naming manifests nobody holds, as fast as the attacker can send.
      for (let i = 0; i < 300; i++) {
        const ghost = createManifest({
          issuerKey: generateKey(),
          custodian: peerOf(generateKey()),
          license: 'CC-BY-4.0',
          attribution: { name: 'nobody' },
          scope: { commercialUse: false, weightRedistribution: true },
          items: items.slice(0, 1),
        })
        const notice = createRevocation({
          issuerKey: attackerRights,
          manifest: manifestDigest(ghost),
          items: 'all',
        })
        await attacker.inject('consent', encodeGossipMessage('revocation', notice))
      }
      await waitFor(
        () => a.consent.book.heldRevocations().count === HELD_REVOCATIONS_PER_SENDER,
        'A to hold the attacker’s share',
      )

      // Every honest node re-announces, until each has been through its book twice.
      const started = performance.now()
      for (const peer of peers) peer.announcer!.start()
      // The attacker's manifest is not local to anyone: only the revocations are repeated.
      const documents = REVOCATIONS
      await waitFor(
        () => peers.every((p) => p.announcer!.published + p.announcer!.suppressed >= 2 * documents),
        'two passes at every node',
        180_000,
      )
      const seconds = (performance.now() - started) / 1000
      for (const peer of peers) await peer.announcer!.stop()

      const published = peers.map((p) => p.announcer!.published)
      const total = published.reduce((x, y) => x + y, 0)
      console.info(
        `class 3: ${peers.length} nodes x ${documents} stored revocations, two passes in ${seconds.toFixed(1)} s: ` +
          `published ${published.join('+')} = ${total} (no suppression: ${2 * peers.length * documents}), ` +
          `peak ${CONSENT_ANNOUNCE_PER_SECOND}/s per node`,
      )
      // Suppression: the mesh repeated each document about once per pass, not once per node per pass.
      expect(total).toBeLessThan(1.5 * 2 * documents)
      expect(peers.some((p) => p.announcer!.suppressed > 0)).toBe(true)

      // No honest node throttled, refused or charged another; the flood was never repeated.
      for (const peer of peers) {
        for (const other of peers)
          if (other !== peer) {
            expect(peer.host.penaltyCounts(other.peerId), 'an honest node charged another').toEqual({})
            expect(peer.host.peerScore(other.peerId)).toBeGreaterThanOrEqual(0)
          }
        expect(peer.consent.book.revocations()).toHaveLength(REVOCATIONS)
      }
      // B and C never heard the attacker: anything throttled there would be honest traffic.
      expect(stat(b, 'ignore', 'RATE_LIMITED') + stat(c, 'ignore', 'RATE_LIMITED')).toBe(0)
      expect(b.consent.book.heldRevocations().count).toBe(0)
      expect(c.consent.book.heldRevocations().count).toBe(0)
      expect(stat(b, 'ignore', 'UNKNOWN_MANIFEST') + stat(c, 'ignore', 'UNKNOWN_MANIFEST')).toBe(0)
      // Only the flood's author was throttled and charged.
      expect(a.host.penaltyCounts(attacker.host.peerId).RATE_LIMITED ?? 0).toBeGreaterThan(0)
      expect(a.host.peerScore(attacker.host.peerId)).toBeLessThan(0)
    },
  )
})
