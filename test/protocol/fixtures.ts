// Deterministic documents for protocol tests, built from fixed TEST-ONLY seeds.
import { createCharter, type CoopCharter } from '../../protocol/charter.ts'
import { createContribution } from '../../protocol/contribution.ts'
import { sha256Digest } from '../../protocol/digest.ts'
import { generateKey, peerIdString } from '../../protocol/keys.ts'
import { summarizeExclusions } from '../../protocol/exclusions.ts'
import { createProvenance } from '../../protocol/provenance.ts'

export const seed = (n: number) => new Uint8Array(32).fill(n)
export const publisherA = generateKey(seed(1))
export const publisherB = generateKey(seed(2))
export const nodeKey = generateKey(seed(3))
export const outsider = generateKey(seed(4))
export const rightsHolder = generateKey(seed(5))

export const digestOf = (text: string) => sha256Digest(new TextEncoder().encode(text))

export function charterContent(overrides: Partial<CoopCharter> = {}): CoopCharter {
  const publishers = [peerIdString(publisherA.publicKey), peerIdString(publisherB.publicKey)].sort()
  return {
    name: 'emoji coop',
    model: { name: 'tiny', image: { size: 32, channels: 3 }, unet: { channels: [32, 64] } },
    rounds: {
      innerSteps: 50,
      outerLr: 0.7,
      outerMomentum: 0.9,
      aggregator: { kind: 'trimmed', fraction: 0.2 },
      compression: { kind: 'int8' },
      quorum: 2,
      deadlineSeconds: 120,
    },
    publishers,
    threshold: 2,
    admission: { mode: 'open' },
    acceptedLicenses: ['CC-BY-4.0', 'CC0-1.0'],
    intendedUse: { commercialUse: false, weightRedistribution: true },
    phases: { autoencoder: { mode: 'cooperative', rounds: 3 }, unet: { rounds: 10 } },
    createdAt: '2026-11-23T20:00:00Z',
    ...overrides,
  }
}

export function makeCharter() {
  return createCharter(charterContent(), [publisherA, publisherB])
}

export function makeContribution(coop: string) {
  return createContribution(
    {
      delta: digestOf('delta bytes'),
      coop,
      round: 3,
      phase: 'unet',
      baseCheckpoint: digestOf('base'),
      manifests: [digestOf('m2'), digestOf('m1')],
      itemsRoot: digestOf('root'),
      itemCount: 120,
      samples: 3200,
      localSteps: 50,
      loss: 0.0734,
      codec: { kind: 'int8' },
    },
    nodeKey,
  )
}

export function makeProvenance(coop: string, contributionDigest: string) {
  const manifests = [digestOf('m1'), digestOf('m2')].sort()
  return createProvenance(
    {
      files: { 'model.safetensors': digestOf('model'), 'config.json': digestOf('config') },
      coop,
      round: 3,
      phase: 'unet',
      parent: { checkpoint: digestOf('base'), provenance: digestOf('base provenance') },
      contributions: [
        {
          statement: contributionDigest,
          contributor: peerIdString(nodeKey.publicKey),
          delta: digestOf('delta bytes'),
          manifests,
        },
      ],
      manifests,
      exclusions: summarizeExclusions({
        revocations: [digestOf('revocation')],
        expiredManifests: [],
        items: [digestOf('item 7')],
      }).summary,
      components: [
        { role: 'autoencoder', checkpoint: digestOf('ae'), provenance: digestOf('ae provenance') },
      ],
      license: 'CC-BY-4.0 AND CC0-1.0',
      attribution: [
        {
          name: 'Twemoji',
          uri: 'https://github.com/twitter/twemoji',
          text: 'Twemoji graphics by Twitter, Inc and other contributors, licensed under CC-BY 4.0',
        },
      ],
    },
    [publisherA, publisherB],
  )
}

import { createManifest, type ManifestItem } from '../../protocol/manifest.ts'
import { createRevocation } from '../../protocol/revocation.ts'

export const custodianKey = nodeKey
export const manifestItems: ManifestItem[] = Array.from({ length: 5 }, (_, i) => ({
  digest: digestOf(`image ${i}`),
  mediaType: 'image/png' as const,
  byteLength: 1000 + i,
}))

export function makeManifest(overrides: Partial<Parameters<typeof createManifest>[0]> = {}) {
  return createManifest({
    issuerKey: rightsHolder,
    custodian: peerIdString(custodianKey.publicKey),
    license: 'CC-BY-4.0',
    attribution: {
      name: 'Ada Artist',
      uri: 'https://example.org/ada',
      text: 'Images by Ada Artist, CC-BY 4.0',
    },
    scope: { commercialUse: false, weightRedistribution: true },
    items: manifestItems,
    validFrom: new Date('2026-01-01T00:00:00Z'),
    validUntil: new Date('2027-01-01T00:00:00Z'),
    ...overrides,
  })
}

export function makeRevocation(manifest: string, items: string[] | 'all') {
  return createRevocation({
    issuerKey: rightsHolder,
    manifest,
    items,
    revokedAt: new Date('2026-06-01T00:00:00Z'),
    reason: 'changed my mind',
  })
}
