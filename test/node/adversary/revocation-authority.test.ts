// Class 2, revocation authority (docs/THREAT-MODEL.md §2). A hostile member tries to withdraw
// consent it does not own, against three honest consent nodes (real libp2p on loopback, real
// LevelDB): a revocation of an honest manifest signed by its own key; a revocation of its own
// valid manifest padded with items the manifest does not list (to grow every checkpoint's
// exclusions); 300 revocations naming manifests nobody holds; and a forged revocation racing
// ahead of the honest manifest it names. Only the issuer's revocation, of items in its manifest,
// is ever applied; the rest cost the attacker its score and honest peers nothing.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { HELD_REVOCATIONS_PER_SENDER } from '../../../node/consent/constants.ts'
import { encodeGossipMessage } from '../../../node/validation/messages.ts'
import { createManifest, manifestDigest, verifyRevocation } from '../../../protocol/index.ts'
import { generateKey, manifestFor, peerOf, randomDigest, revocationOf } from '../helpers/consent.ts'
import { type ConsentPeer, startConsentPeer, startRawPublisher } from '../helpers/consent-peer.ts'
import { connect, waitFor } from '../helpers/net.ts'

const itemsOf = (n: number) =>
  Array.from({ length: n }, () => ({
    digest: randomDigest(),
    mediaType: 'image/png' as const,
    byteLength: 999,
  }))

describe('class 2: revocation authority', () => {
  const rightsHolder = generateKey()
  let a: ConsentPeer
  let b: ConsentPeer
  let c: ConsentPeer
  let attacker: Awaited<ReturnType<typeof startRawPublisher>>

  beforeAll(async () => {
    ;[a, b, c] = await Promise.all([startConsentPeer(), startConsentPeer(), startConsentPeer()])
    attacker = await startRawPublisher()
    await connect(a.host, b.host)
    await connect(b.host, c.host)
    await connect(a.host, c.host)
    await connect(attacker.host, a.host)
    await connect(attacker.host, c.host)
  })

  afterAll(async () => {
    await Promise.all([a, b, c].map((p) => p.stop()))
    await attacker.host.stop()
  })

  const rejectedAt = (peer: ConsentPeer, code: string) =>
    peer.host.validationStats().consent?.reject[code as 'SCHEMA'] ?? 0
  const ignoredAt = (peer: ConsentPeer, code: string) =>
    peer.host.validationStats().consent?.ignore[code as 'SCHEMA'] ?? 0

  it(
    'applies only the issuer’s revocations of its own items; the attacker pays, honest peers do not',
    { timeout: 300_000 },
    async () => {
      // The honest custodian A holds two manifests of one rights holder; only the first is announced yet.
      const first = manifestFor(rightsHolder, a.peerId, { items: itemsOf(8) })
      const second = manifestFor(rightsHolder, a.peerId, { items: itemsOf(4) })
      await a.consent.book.addLocalManifests([
        { path: 'first.json', document: first },
        { path: 'second.json', document: second },
      ])
      await a.host.publish('consent', encodeGossipMessage('manifest', first))
      await waitFor(
        () => [b, c].every((p) => p.consent.book.manifest(manifestDigest(first)) !== undefined),
        'the first manifest to reach B and C',
      )

      // 1. A revocation of A's manifest signed by a key that is not its issuer.
      await attacker.inject('consent', encodeGossipMessage('revocation', revocationOf(generateKey(), first)))
      await waitFor(
        () => rejectedAt(a, 'NOT_ISSUER') === 1 && rejectedAt(c, 'NOT_ISSUER') === 1,
        'NOT_ISSUER',
      )

      // 2. The attacker's own valid manifest, then its "revocation" of 1 real and 2,000 invented items.
      const attackerRights = generateKey()
      const own = createManifest({
        issuerKey: attackerRights,
        custodian: attacker.host.peerId,
        license: 'CC-BY-4.0',
        attribution: { name: 'Mallory' },
        scope: { commercialUse: false, weightRedistribution: true },
        items: itemsOf(3),
        validFrom: new Date(Date.now() - 60_000),
      })
      await attacker.inject('consent', encodeGossipMessage('manifest', own))
      await waitFor(
        () => [a, b, c].every((p) => p.consent.book.manifest(manifestDigest(own)) !== undefined),
        'the attacker manifest to be admitted everywhere',
      )
      const padded = revocationOf(attackerRights, own, [
        own.credentialSubject.items[0]!.digest,
        ...Array.from({ length: 2000 }, randomDigest),
      ])
      await attacker.inject('consent', encodeGossipMessage('revocation', padded))
      await waitFor(
        () => rejectedAt(a, 'UNKNOWN_ITEM') === 1 && rejectedAt(c, 'UNKNOWN_ITEM') === 1,
        'UNKNOWN_ITEM',
      )

      // 3. A forged revocation of A's second manifest, racing ahead of it (C does not hold it yet),
      // and the rights holder's genuine one of a single item, relayed by honest B.
      const forged = revocationOf(generateKey(), second)
      const genuine = revocationOf(rightsHolder, second, [second.credentialSubject.items[0]!.digest])
      await attacker.inject('consent', encodeGossipMessage('revocation', forged))
      await waitFor(() => rejectedAt(a, 'NOT_ISSUER') === 2, 'A (holding the manifest) to reject the forgery')
      await b.host.publish('consent', encodeGossipMessage('revocation', genuine))
      await waitFor(
        () => a.consent.book.revocations().some((r) => r.digest === verifyRevocation(genuine).digest),
        'A to apply the genuine revocation',
      )
      await a.host.publish('consent', encodeGossipMessage('manifest', second))
      await waitFor(
        () => c.consent.book.revocations().some((r) => r.digest === verifyRevocation(genuine).digest),
        'C to apply the held genuine revocation once the manifest arrived',
      )
      await waitFor(
        () => (c.host.penaltyCounts(attacker.host.peerId).NOT_ISSUER ?? 0) === 2,
        'C to charge the sender of the held forgery',
      )

      // 4. 300 revocations naming manifests nobody holds, as fast as it can (past its rate limit).
      for (let i = 0; i < 300; i++) {
        const ghost = createManifest({
          issuerKey: generateKey(),
          custodian: peerOf(generateKey()),
          license: 'CC-BY-4.0',
          attribution: { name: 'nobody' },
          scope: { commercialUse: false, weightRedistribution: true },
          items: itemsOf(1),
        })
        const notice = revocationOf(attackerRights, ghost)
        await attacker.inject('consent', encodeGossipMessage('revocation', notice))
      }
      // Each peer holds the attacker's share and refuses the rest; past its rate limit it is dropped unread.
      await waitFor(
        () => [a, c].every((p) => p.consent.book.heldRevocations().count === HELD_REVOCATIONS_PER_SENDER),
        'the held pool to fill to the per-sender share',
        60_000,
      )

      // No honest item was withdrawn but the one its issuer revoked.
      const honestItems = [...first.credentialSubject.items, ...second.credentialSubject.items].map(
        (i) => i.digest,
      )
      expect([...a.consent.book.allowlist()].sort()).toEqual(
        honestItems.filter((d) => d !== second.credentialSubject.items[0]!.digest).sort(),
      )
      for (const peer of [a, c])
        expect(peer.consent.book.revocations().map((r) => r.digest)).toEqual([
          verifyRevocation(genuine).digest,
        ])
      // Held revocations stayed within the per-sender share, and were never relayed to B.
      for (const peer of [a, c]) {
        expect(peer.consent.book.heldRevocations().count).toBe(HELD_REVOCATIONS_PER_SENDER)
        expect(ignoredAt(peer, 'UNKNOWN_MANIFEST')).toBeGreaterThan(HELD_REVOCATIONS_PER_SENDER)
      }
      expect(b.consent.book.heldRevocations().count).toBe(0)
      expect(ignoredAt(b, 'UNKNOWN_MANIFEST')).toBe(0)
      // Nothing was stored from the rejected or held documents.
      expect(await a.consent.store.revocations.entries()).toHaveLength(1)

      // The attacker pays at every peer it spoke to; no honest peer charged another.
      for (const peer of [a, c]) {
        expect(peer.host.penaltyCounts(attacker.host.peerId)).toMatchObject({
          NOT_ISSUER: 2,
          UNKNOWN_ITEM: 1,
        })
        expect(peer.host.peerScore(attacker.host.peerId)).toBeLessThan(0)
      }
      for (const peer of [a, b, c])
        for (const other of [a, b, c])
          if (other !== peer) {
            expect(peer.host.penaltyCounts(other.peerId), `${peer.peerId} charged ${other.peerId}`).toEqual(
              {},
            )
            expect(peer.host.peerScore(other.peerId)).toBeGreaterThanOrEqual(0)
          }
    },
  )
})
