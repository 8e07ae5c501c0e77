// The round engine's pure parts and its consent book: recomputation is bit-exact and sensitive
// to every input, the schedule maps rounds to phases, and consent checks give the codes the
// gossip chain maps to ACCEPT/IGNORE/REJECT.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { compressDelta } from '../../protocol/compression.ts'
import { sha256Digest } from '../../protocol/digest.ts'
import { generateKey, peerIdString } from '../../protocol/keys.ts'
import { attributionOfManifests, licenseOfManifests } from '../../protocol/license.ts'
import { createManifest, manifestDigest } from '../../protocol/manifest.ts'
import { createRevocation, verifyRevocation } from '../../protocol/revocation.ts'
import { encodeSafetensors } from '../../protocol/safetensors.ts'
import { ConsentBook } from '../../node/consent/book.ts'
import { validateContributionManifest } from '../../node/round/validate.ts'
import { computeCheckpoint, type ContributionPayload } from '../../node/round/recompute.ts'
import { genesisRound, lastRoundOf, phaseOfRound, roundPlan } from '../../node/round/schedule.ts'
import {
  decodeTensors,
  encodeTensors,
  pseudoGradient,
  zerosLike,
  type NamedTensor,
} from '../../node/round/tensors.ts'
import { componentLogger } from '../../node/log.ts'
import { openStore, type CoopStore } from '../../node/store/store.ts'
import { GossipValidationError } from '../../node/p2p/gossip-errors.ts'

function tensors(seed: number): NamedTensor[] {
  let x = seed
  const next = () => {
    x = (x * 1103515245 + 12345) % 2147483648
    return x / 2147483648 - 0.5
  }
  return [
    { name: 'b.bias', shape: [3], data: Float32Array.from({ length: 3 }, next) },
    { name: 'a.weight', shape: [2, 4], data: Float32Array.from({ length: 8 }, next) },
  ].sort((p, q) => (p.name < q.name ? -1 : 1))
}

function payload(delta: NamedTensor[], samples: number): ContributionPayload {
  const bytes = encodeSafetensors(compressDelta(delta, { kind: 'int8' }).entries)
  return { payloadDigest: sha256Digest(bytes), samples, payload: bytes }
}

const OUTER = {
  aggregator: { kind: 'mean' as const },
  outerLr: 0.7,
  outerMomentum: 0.9,
  codec: { kind: 'int8' as const },
  maxSamples: 32,
}

describe('computeCheckpoint', () => {
  const parent = tensors(1)
  const momentum = zerosLike(parent)
  const contributions = [
    payload(pseudoGradient(parent, tensors(2)), 32),
    payload(pseudoGradient(parent, tensors(3)), 16),
  ]

  it('gives the same bytes whatever order the contributions arrive in', () => {
    const a = computeCheckpoint(parent, momentum, contributions, OUTER)
    const b = computeCheckpoint(parent, momentum, [...contributions].reverse(), OUTER)
    expect(a.modelDigest).toBe(b.modelDigest)
    expect(a.momentumDigest).toBe(b.momentumDigest)
    expect(decodeTensors(a.modelBytes)).toEqual(a.weights)
  })

  it('changes when any input changes: a contribution, its weight, the parent momentum, the optimiser', () => {
    const base = computeCheckpoint(parent, momentum, contributions, OUTER).modelDigest
    expect(computeCheckpoint(parent, momentum, contributions.slice(0, 1), OUTER).modelDigest).not.toBe(base)
    expect(
      computeCheckpoint(parent, momentum, [contributions[0]!, { ...contributions[1]!, samples: 17 }], OUTER)
        .modelDigest,
    ).not.toBe(base)
    const moved = momentum.map((t) => ({ ...t, data: t.data.map(() => 0.01) }))
    expect(computeCheckpoint(parent, moved, contributions, OUTER).modelDigest).not.toBe(base)
    expect(
      computeCheckpoint(parent, momentum, contributions, { ...OUTER, outerLr: 0.5 }).modelDigest,
    ).not.toBe(base)
  })

  it('moves the weights against the mean pseudo-gradient on the first round (no momentum yet)', () => {
    const one = [payload(pseudoGradient(parent, tensors(2)), 8)]
    const result = computeCheckpoint(parent, momentum, one, { ...OUTER, outerLr: 1, outerMomentum: 0 })
    // With lr 1 and no momentum, the new weights are the parent minus the (int8-rounded) delta: close to the local weights.
    const local = tensors(2)
    result.weights.forEach((t, i) => t.data.forEach((v, k) => expect(v).toBeCloseTo(local[i]!.data[k]!, 2)))
  })

  it('caps a contribution’s weight at the charter’s samples: claiming more buys nothing', () => {
    const capped = computeCheckpoint(
      parent,
      momentum,
      [contributions[0]!, { ...contributions[1]!, samples: 32 }],
      OUTER,
    )
    const inflated = computeCheckpoint(
      parent,
      momentum,
      [contributions[0]!, { ...contributions[1]!, samples: 1_000_000 }],
      OUTER,
    )
    expect(inflated.modelDigest).toBe(capped.modelDigest)
  })

  it('refuses a payload whose bytes do not match its digest, a duplicate, an empty set, or a foreign layout', () => {
    const [first] = contributions as [ContributionPayload]
    const tampered = new Uint8Array(first.payload)
    tampered[tampered.length - 1] = tampered[tampered.length - 1]! ^ 1
    expect(() => computeCheckpoint(parent, momentum, [{ ...first, payload: tampered }], OUTER)).toThrow(
      expect.objectContaining({ code: 'MISSING_PAYLOAD' }),
    )
    expect(() => computeCheckpoint(parent, momentum, [first, first], OUTER)).toThrow(
      expect.objectContaining({ code: 'BAD_CHECKPOINT' }),
    )
    expect(() => computeCheckpoint(parent, momentum, [], OUTER)).toThrow(
      expect.objectContaining({ code: 'MISSING_CONTRIBUTION' }),
    )
    const foreign = payload([{ name: 'other', shape: [2], data: new Float32Array(2) }], 4)
    expect(() => computeCheckpoint(parent, momentum, [foreign], OUTER)).toThrow(
      expect.objectContaining({ code: 'LAYOUT_MISMATCH' }),
    )
    const otherCodec = encodeSafetensors(
      compressDelta(pseudoGradient(parent, tensors(2)), { kind: 'none' }).entries,
    )
    expect(() =>
      computeCheckpoint(
        parent,
        momentum,
        [{ payloadDigest: sha256Digest(otherCodec), samples: 1, payload: otherCodec }],
        OUTER,
      ),
    ).toThrow(expect.objectContaining({ code: 'LAYOUT_MISMATCH' }))
    const nonFinite = encodeTensors(parent.map((t) => ({ ...t, data: t.data.map(() => Number.NaN) })))
    expect(() =>
      computeCheckpoint(
        parent,
        momentum,
        [{ payloadDigest: sha256Digest(nonFinite), samples: 1, payload: nonFinite }],
        OUTER,
      ),
    ).toThrow()
  })
})

describe('round schedule', () => {
  it('numbers autoencoder rounds first, then U-Net rounds, each phase after its genesis', () => {
    const plan = roundPlan({
      phases: { autoencoder: { mode: 'cooperative', rounds: 2 }, unet: { rounds: 3 } },
    })
    expect([1, 2, 3, 4, 5].map((r) => phaseOfRound(plan, r))).toEqual([
      'autoencoder',
      'autoencoder',
      'unet',
      'unet',
      'unet',
    ])
    expect([genesisRound(plan, 'autoencoder'), genesisRound(plan, 'unet')]).toEqual([0, 2])
    expect([lastRoundOf(plan, 'autoencoder'), lastRoundOf(plan, 'unet')]).toEqual([2, 5])
    expect(() => phaseOfRound(plan, 6)).toThrow(RangeError)
    expect(() => phaseOfRound(plan, 0)).toThrow(RangeError)
  })
})

describe('ConsentBook', () => {
  let dir: string
  let store: CoopStore
  const node = generateKey()
  const nodeId = peerIdString(node.publicKey)
  const otherNode = peerIdString(generateKey().publicKey)
  const holder = generateKey()
  const items = ['a', 'b', 'c', 'd'].map((s) => sha256Digest(new TextEncoder().encode(s))).sort()

  const manifestFor = (
    custodian: string,
    license = 'CC-BY-4.0',
    extra: { validUntil?: Date; commercialUse?: boolean; issuerKey?: ReturnType<typeof generateKey> } = {},
  ) =>
    createManifest({
      issuerKey: extra.issuerKey ?? holder,
      custodian,
      license,
      attribution: { name: 'Ada' },
      scope: { commercialUse: extra.commercialUse ?? false, weightRedistribution: true },
      items: items.map((digest) => ({ digest, mediaType: 'image/png', byteLength: 100 })),
      validFrom: new Date(Date.now() - 60_000),
      ...(extra.validUntil === undefined ? {} : { validUntil: extra.validUntil }),
    })

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'coop-consent-'))
    store = await openStore(dir)
  })
  afterEach(async () => {
    await store.close()
    await rm(dir, { recursive: true, force: true })
  })

  const noChain = () => ({ revocations: new Set<string>(), expiredManifests: new Set<string>() })
  const book = (intendedUse = { commercialUse: false, weightRedistribution: false }) =>
    new ConsentBook(
      { peerId: nodeId, acceptedLicenses: ['CC-BY-4.0'], intendedUse },
      { store, log: componentLogger('test') },
    )

  it('allowlists this node’s items minus revoked ones, survives a reopen, and tells listeners', async () => {
    const consent = book()
    const manifest = manifestFor(nodeId)
    await consent.addLocalManifests([{ path: 'consent.json', document: manifest }])
    expect([...consent.allowlist()].sort()).toEqual(items)
    const heard: [string[], string][] = []
    consent.onWithdrawn((withdrawn, reason) => heard.push([withdrawn, reason]))
    await consent.addRevocation(
      createRevocation({ issuerKey: holder, manifest: manifestDigest(manifest), items: [items[0]!] }),
    )
    expect(heard).toEqual([[[items[0]], 'revoked']])
    expect([...consent.allowlist()].sort()).toEqual(items.slice(1))
    const reopened = book()
    await reopened.load()
    expect([...reopened.allowlist()].sort()).toEqual(items.slice(1))
    expect(reopened.localItemsInUse(new Set(items.slice(0, 3)))).toEqual({
      manifests: [manifestDigest(manifest)],
      items: items.slice(1, 3),
    })
  })

  it('refuses local manifests naming another custodian, an unaccepted license or a scope the charter’s use exceeds', async () => {
    await expect(
      book().addLocalManifests([{ path: 'x.json', document: manifestFor(otherNode) }]),
    ).rejects.toMatchObject({ code: 'FOREIGN_CUSTODIAN' })
    await expect(
      book().addLocalManifests([{ path: 'y.json', document: manifestFor(nodeId, 'CC-BY-NC-4.0') }]),
    ).rejects.toMatchObject({ code: 'MANIFEST_INVALID' })
    const commercial = book({ commercialUse: true, weightRedistribution: false })
    await expect(
      commercial.addLocalManifests([{ path: 'z.json', document: manifestFor(nodeId) }]),
    ).rejects.toMatchObject({ code: 'SCOPE_NOT_ALLOWED' })
    // The same manifest allowing commercial use is admitted by the same charter.
    await commercial.addLocalManifests([
      { path: 'w.json', document: manifestFor(nodeId, 'CC-BY-4.0', { commercialUse: true }) },
    ])
  })

  it('judges a contribution’s manifests: unknown IGNORE, foreign custodian REJECT, revoked or expired before the round REJECT', async () => {
    const consent = book()
    const manifest = manifestFor(otherNode)
    const id = manifestDigest(manifest)
    const expectCode = (fn: () => void, action: string, code: string) => {
      try {
        fn()
        expect.unreachable('accepted')
      } catch (err) {
        expect(err).toBeInstanceOf(GossipValidationError)
        expect(err).toMatchObject({ action, code })
      }
    }
    expectCode(
      () => validateContributionManifest(consent, id, otherNode, noChain()),
      'IGNORE',
      'UNKNOWN_MANIFEST',
    )
    await consent.addManifest(manifest, false)
    validateContributionManifest(consent, id, otherNode, noChain())
    expectCode(
      () => validateContributionManifest(consent, id, nodeId, noChain()),
      'REJECT',
      'FOREIGN_CUSTODIAN',
    )
    const all = createRevocation({ issuerKey: holder, manifest: id, items: 'all' })
    await consent.addRevocation(all)
    const allId = verifyRevocation(all).digest
    // Revoked during the round (not yet recorded by the chain): that round's contribution stands.
    validateContributionManifest(consent, id, otherNode, noChain())
    // Recorded by the base's chain: revoked before the round started.
    expectCode(
      () =>
        validateContributionManifest(consent, id, otherNode, { ...noChain(), revocations: new Set([allId]) }),
      'REJECT',
      'REVOKED',
    )
    expectCode(
      () =>
        validateContributionManifest(consent, id, otherNode, {
          ...noChain(),
          expiredManifests: new Set([id]),
        }),
      'REJECT',
      'EXPIRED',
    )
    expect(
      consent.exclusionsSince(
        { revocations: new Set(), expiredManifests: new Set(), items: new Set() },
        [],
        Date.now(),
      ),
    ).toEqual({
      revocations: [allId],
      expiredManifests: [],
      items,
    })
  })

  it('refuses a revocation by anyone but the manifest’s issuer, or naming items the manifest does not list', async () => {
    const consent = book()
    const manifest = manifestFor(otherNode)
    await consent.addManifest(manifest, false)
    await expect(
      consent.addRevocation(
        createRevocation({ issuerKey: generateKey(), manifest: manifestDigest(manifest), items: 'all' }),
      ),
    ).rejects.toMatchObject({ code: 'NOT_ISSUER' })
    const junk = sha256Digest(new TextEncoder().encode('not in the manifest'))
    await expect(
      consent.addRevocation(
        createRevocation({ issuerKey: holder, manifest: manifestDigest(manifest), items: [items[0]!, junk] }),
      ),
    ).rejects.toMatchObject({ code: 'UNKNOWN_ITEM' })
    expect(consent.revocations()).toEqual([])
    expect(await store.revocations.entries()).toEqual([])
  })

  it('holds a revocation for a manifest it lacks, applies it on arrival only from the issuer, and names the forger', async () => {
    const consent = book()
    const manifest = manifestFor(nodeId)
    const id = manifestDigest(manifest)
    const refused: { sender: string; code: string }[] = []
    consent.onRefusedRevocation((r) => refused.push({ sender: r.sender, code: r.code }))
    const forged = createRevocation({ issuerKey: generateKey(), manifest: id, items: 'all' })
    const honest = createRevocation({ issuerKey: holder, manifest: id, items: [items[1]!] })
    expect(await consent.addRevocation(forged, 'attacker')).toBe('held')
    expect(await consent.addRevocation(honest, 'relay')).toBe('held')
    expect(consent.heldRevocations().count).toBe(2)
    // Nothing is applied or stored while the manifest is unknown.
    expect(consent.revocations()).toEqual([])
    expect(await store.revocations.entries()).toEqual([])
    await consent.addLocalManifests([{ path: 'consent.json', document: manifest }])
    expect(refused).toEqual([{ sender: 'attacker', code: 'NOT_ISSUER' }])
    expect(consent.revocations().map((r) => r.digest)).toEqual([verifyRevocation(honest).digest])
    expect([...consent.allowlist()].sort()).toEqual(items.filter((i) => i !== items[1]))
    expect(consent.heldRevocations()).toEqual({ count: 0, bytes: 0 })
  })

  it('withdraws a local manifest’s items live when its consent expires, and keeps its terms for the record', async () => {
    const consent = book()
    const manifest = manifestFor(nodeId, 'CC-BY-4.0', { validUntil: new Date(Date.now() + 1500) })
    await consent.addLocalManifests([{ path: 'consent.json', document: manifest }])
    const withdrawn = new Promise<[string[], string]>((resolve) =>
      consent.onWithdrawn((ids, reason) => resolve([ids, reason])),
    )
    consent.start()
    try {
      expect([...consent.allowlist()].sort()).toEqual(items)
      expect(await withdrawn).toEqual([items, 'expired'])
      expect(consent.allowlist().size).toBe(0)
      expect([...consent.withdrawnItems()].sort()).toEqual(items)
      // Reloaded after expiry, it is still held (checkpoints trained on it name its terms).
      const reopened = book()
      await reopened.load()
      expect(reopened.manifest(manifestDigest(manifest))?.manifest.credentialSubject.license).toBe(
        'CC-BY-4.0',
      )
      expect(reopened.allowlist().size).toBe(0)
    } finally {
      consent.stop()
    }
  })
})

describe('checkpoint license and attribution', () => {
  const terms = (license: string, name: string, itemLicense?: string) => ({
    license,
    attribution: { name },
    items: itemLicense === undefined ? [] : [{ license: itemLicense, attribution: { name: `${name} item` } }],
  })

  it('depend only on the signed manifests: order and repeats do not matter, random weights are CC0', () => {
    expect(licenseOfManifests([])).toBe('CC0-1.0')
    const a = terms('CC-BY-4.0', 'Ada')
    const b = terms('CC0-1.0', 'Bo', 'CC-BY-SA-4.0 OR CC-BY-4.0')
    expect(licenseOfManifests([a, b])).toBe('CC-BY-4.0 AND (CC-BY-SA-4.0 OR CC-BY-4.0) AND CC0-1.0')
    expect(licenseOfManifests([b, a, b])).toBe(licenseOfManifests([a, b]))
    expect(attributionOfManifests([b, a, a])).toEqual([{ name: 'Ada' }, { name: 'Bo item' }, { name: 'Bo' }])
  })
})
