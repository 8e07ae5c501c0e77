// Class 7, cost of rejection (docs/THREAT-MODEL.md §7). A hostile member sends the most expensive
// forgery the consent topic admits to its cheap checks: ~1 MiB manifests (8,200 items, the
// gossip limit) whose every field is well formed and whose signature does not verify. The honest
// node refuses each once, at the signature, stores nothing, charges the sender, and keeps
// admitting an honest peer's consent; its heap does not grow with the flood. The CPU per
// rejection is measured by bench/rejection.bench.ts (the test never asserts timings).
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { GOSSIP_MAX_MESSAGE_BYTES, GRAYLIST_THRESHOLD } from '../../../node/constants.ts'
import { encodeGossipMessage } from '../../../node/validation/messages.ts'
import { createManifest, manifestDigest } from '../../../protocol/index.ts'
import { generateKey, manifestFor, randomDigest } from '../helpers/consent.ts'
import { type ConsentPeer, startConsentPeer, startRawPublisher } from '../helpers/consent-peer.ts'
import { connect, waitFor } from '../helpers/net.ts'

const FORGERIES = 40

describe('class 7: cost of rejection', () => {
  let a: ConsentPeer
  let b: ConsentPeer
  let attacker: Awaited<ReturnType<typeof startRawPublisher>>

  beforeAll(async () => {
    ;[a, b] = await Promise.all([startConsentPeer(), startConsentPeer()])
    attacker = await startRawPublisher()
    await connect(a.host, b.host)
    await connect(attacker.host, a.host)
  })

  afterAll(async () => {
    await Promise.all([a.stop(), b.stop(), attacker.host.stop()])
  })

  it(
    'refuses forged 1 MiB manifests at the signature, charges only their author and keeps working',
    { timeout: 300_000 },
    async () => {
      // One well-formed manifest at the gossip limit, its proof broken; each forgery differs in its
      // attribution (distinct content: nothing is answered from a cache).
      const manifest = createManifest({
        issuerKey: generateKey(),
        custodian: attacker.host.peerId,
        license: 'CC-BY-4.0',
        attribution: { name: 'forger' },
        scope: { commercialUse: false, weightRedistribution: true },
        items: Array.from({ length: 8200 }, (_, i) => ({
          digest: randomDigest(),
          mediaType: 'image/png' as const,
          byteLength: 1000 + i,
        })),
      })
      const forgeries = Array.from({ length: FORGERIES }, (_, n) =>
        encodeGossipMessage('manifest', {
          ...manifest,
          credentialSubject: { ...manifest.credentialSubject, attribution: { name: `forger ${n}` } },
        }),
      )
      expect(forgeries[0]!.byteLength).toBeGreaterThan(1_000_000)
      expect(forgeries[0]!.byteLength).toBeLessThanOrEqual(GOSSIP_MAX_MESSAGE_BYTES)

      globalThis.gc?.()
      const heapBefore = process.memoryUsage().heapUsed
      for (const forged of forgeries) await attacker.inject('consent', forged)
      const rejected = () => a.host.validationStats().consent?.reject.BAD_SIGNATURE ?? 0
      // Each forgery is rejected at the signature until the forger's score falls below the graylist
      // threshold; from then on gossipsub drops its messages unread.
      await waitFor(
        () => rejected() === FORGERIES || a.host.peerScore(attacker.host.peerId) < GRAYLIST_THRESHOLD,
        'every forgery to be rejected or the forger graylisted',
        120_000,
      )
      console.info(
        `class 7: ${rejected()} of ${FORGERIES} forgeries validated and rejected before graylisting`,
      )
      expect(rejected()).toBeGreaterThan(0)

      // Nothing stored or relayed; the author alone is charged, once per forgery.
      expect(a.consent.book.manifests()).toEqual([])
      expect(await a.consent.store.manifests.entries()).toEqual([])
      expect(b.host.validationStats().consent?.reject.BAD_SIGNATURE ?? 0).toBe(0)
      expect(a.host.penaltyCounts(attacker.host.peerId)).toEqual({ BAD_SIGNATURE: rejected() })
      await waitFor(() => a.host.peerScore(attacker.host.peerId) < 0, 'the forger’s score to go negative')

      // The honest peer's consent still goes through, and neither honest peer charged the other.
      const honest = manifestFor(generateKey(), b.peerId)
      await b.host.publish('consent', encodeGossipMessage('manifest', honest))
      await waitFor(
        () => a.consent.book.manifest(manifestDigest(honest)) !== undefined,
        'the honest manifest',
      )
      expect(a.host.penaltyCounts(b.peerId)).toEqual({})
      expect(b.host.penaltyCounts(a.peerId)).toEqual({})

      // The forgeries left no trace in the heap beyond a few of them in flight.
      globalThis.gc?.()
      const grownMiB = (process.memoryUsage().heapUsed - heapBefore) / 2 ** 20
      console.info(`class 7: ${FORGERIES} forged 1 MiB manifests sent; heap grew ${grownMiB.toFixed(1)} MiB`)
      expect(grownMiB).toBeLessThan(64)
    },
  )
})
