// The lineage rules behind `coop trace`, on hand-built histories where the right answer is known.
import { describe, expect, it } from 'vitest'
import { LineageIndex, type TraceCheckpoint, type TraceManifest } from '../../node/round/trace.ts'

const X = 'sha256:' + '1'.repeat(64)
const Y = 'sha256:' + '2'.repeat(64)
const Z = 'sha256:' + '3'.repeat(64)

const manifests: TraceManifest[] = [
  {
    id: 'm-alice',
    issuer: 'did:key:alice',
    custodian: 'peer-a',
    items: [X, Y],
    license: 'CC-BY-4.0',
    attribution: { name: 'Alice' },
  },
  {
    id: 'm-bob',
    issuer: 'did:key:bob',
    custodian: 'peer-b',
    items: [Z],
    license: 'CC0-1.0',
    attribution: { name: 'Bob' },
    itemLicenses: {},
  },
]

const contribution = (peer: string, round: number, manifest: string) => ({
  statement: `s-${peer}-${round}`,
  payload: `d-${peer}-${round}`,
  peer,
  round,
  manifests: [manifest],
  samples: 8,
})

// autoencoder: genesis 0 -> 1 (alice, bob); unet: genesis 1 (component ae-1) -> 2 (bob) -> 3 (alice, bob; X revoked here) -> 4 (alice, bob)
const checkpoints: TraceCheckpoint[] = [
  {
    id: 'ae-0',
    phase: 'autoencoder',
    round: 0,
    parent: null,
    components: [],
    contributions: [],
    revokedExcluded: [],
    expiredManifests: [],
  },
  {
    id: 'ae-1',
    phase: 'autoencoder',
    round: 1,
    parent: 'ae-0',
    components: [],
    contributions: [contribution('peer-a', 1, 'm-alice'), contribution('peer-b', 1, 'm-bob')],
    revokedExcluded: [],
    expiredManifests: [],
  },
  {
    id: 'un-1',
    phase: 'unet',
    round: 1,
    parent: null,
    components: ['ae-1'],
    contributions: [],
    revokedExcluded: [],
    expiredManifests: [],
  },
  {
    id: 'un-2',
    phase: 'unet',
    round: 2,
    parent: 'un-1',
    components: ['ae-1'],
    contributions: [contribution('peer-b', 2, 'm-bob')],
    revokedExcluded: [],
    expiredManifests: [],
  },
  {
    id: 'un-3',
    phase: 'unet',
    round: 3,
    parent: 'un-2',
    components: ['ae-1'],
    contributions: [contribution('peer-a', 3, 'm-alice'), contribution('peer-b', 3, 'm-bob')],
    revokedExcluded: [X],
    expiredManifests: [],
  },
  {
    id: 'un-4',
    phase: 'unet',
    round: 4,
    parent: 'un-3',
    components: ['ae-1'],
    contributions: [contribution('peer-a', 4, 'm-alice'), contribution('peer-b', 4, 'm-bob')],
    revokedExcluded: [],
    expiredManifests: [],
  },
]

describe('LineageIndex', () => {
  const index = new LineageIndex(checkpoints, manifests)

  it('traces an image to every checkpoint after its first use, through the autoencoder component', () => {
    expect(index.traceImage(Z).map((e) => e.checkpoint)).toEqual(['ae-1', 'un-1', 'un-2', 'un-3', 'un-4'])
    expect(index.traceImage('sha256:' + '9'.repeat(64))).toEqual([])
  })

  it('counts a revoked image as used up to the round in which the revocation arrived, never after', () => {
    const entries = index.traceImage(X)
    // X is in every checkpoint's lineage from ae-1 on (the lineage keeps what it learned) ...
    expect(entries.map((e) => e.checkpoint)).toEqual(['ae-1', 'un-1', 'un-2', 'un-3', 'un-4'])
    // ... but the round-4 contribution, trained after un-3 recorded the revocation, did not use it.
    const latest = entries.find((e) => e.checkpoint === 'un-4')!
    expect(latest.via.map((v) => v.round)).toEqual([1, 3])
    expect(
      index
        .traceImage(Y)
        .find((e) => e.checkpoint === 'un-4')!
        .via.map((v) => v.round),
    ).toEqual([1, 3, 4])
  })

  it('lists the attribution a checkpoint owes: rights holders, licenses, item counts, contributors', () => {
    const attribution = index.attribution('un-4')
    expect(attribution.contributions).toBe(7)
    expect(attribution.entries).toEqual([
      {
        issuer: 'did:key:alice',
        name: 'Alice',
        license: 'CC-BY-4.0',
        items: 2,
        manifests: ['m-alice'],
        contributors: ['peer-a'],
      },
      {
        issuer: 'did:key:bob',
        name: 'Bob',
        license: 'CC0-1.0',
        items: 1,
        manifests: ['m-bob'],
        contributors: ['peer-b'],
      },
    ])
    expect(index.attribution('ae-0').entries).toEqual([])
    expect(() => index.attribution('nope')).toThrow(RangeError)
  })

  it('stops counting a manifest’s items from the checkpoint that records its consent expired', () => {
    const expiring: TraceCheckpoint[] = [
      ...checkpoints.slice(0, 4),
      { ...checkpoints[4]!, expiredManifests: ['m-bob'] },
      {
        ...checkpoints[5]!,
        // A contribution citing the expired manifest after un-3 recorded the expiry used none of it.
        contributions: [contribution('peer-a', 4, 'm-alice'), contribution('peer-b', 4, 'm-bob')],
      },
    ]
    const entries = new LineageIndex(expiring, manifests).traceImage(Z)
    expect(entries.find((e) => e.checkpoint === 'un-4')!.via.map((v) => v.round)).toEqual([1, 2, 3])
    expect(
      index
        .traceImage(Z)
        .find((e) => e.checkpoint === 'un-4')!
        .via.map((v) => v.round),
    ).toEqual([1, 2, 3, 4])
  })

  it('reports manifests it cannot resolve instead of guessing', () => {
    const partial = new LineageIndex(checkpoints, manifests.slice(0, 1))
    expect(partial.attribution('un-2').unknownManifests).toEqual(['m-bob'])
  })
})
