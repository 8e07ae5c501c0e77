// Real signed documents (manifests, revocations, contributions, provenance) for the node tests.
import { createHash, randomBytes } from 'node:crypto'
import type { ConsentLookup } from '../../../node/validation/consent.ts'
import {
  createContribution,
  createManifest,
  createProvenance,
  createRevocation,
  type ConsentManifest,
  type Ed25519PrivateKey,
  generateKey,
  type VerifiedRevocation,
  verifyManifest,
  manifestDigest,
  peerIdString,
} from '../../../protocol/index.ts'

export const TEST_COOP = 'sha256:' + 'ab'.repeat(32)

export function randomDigest(): string {
  return `sha256:${createHash('sha256').update(randomBytes(16)).digest('hex')}`
}

export function peerOf(key: Ed25519PrivateKey): string {
  return peerIdString(key.publicKey)
}

export function manifestFor(
  issuerKey: Ed25519PrivateKey,
  custodian: string,
  overrides: Partial<Parameters<typeof createManifest>[0]> = {},
): ConsentManifest {
  return createManifest({
    issuerKey,
    custodian,
    license: 'CC-BY-4.0',
    attribution: { name: 'Test rights holder' },
    scope: { commercialUse: false, weightRedistribution: true },
    items: [0, 1, 2].map(() => ({
      digest: randomDigest(),
      mediaType: 'image/png' as const,
      byteLength: 1234,
    })),
    validFrom: new Date(Date.now() - 60_000),
    ...overrides,
  })
}

export function revocationOf(
  issuerKey: Ed25519PrivateKey,
  manifest: ConsentManifest,
  items: string[] | 'all' = 'all',
) {
  return createRevocation({ issuerKey, manifest: manifestDigest(manifest), items })
}

export function contributionBy(
  key: Ed25519PrivateKey,
  overrides: { coop?: string; round?: number; manifests?: string[] } = {},
) {
  return createContribution(
    {
      coop: overrides.coop ?? TEST_COOP,
      round: overrides.round ?? 1,
      phase: 'unet',
      baseCheckpoint: randomDigest(),
      manifests: overrides.manifests ?? [randomDigest()],
      itemsRoot: randomDigest(),
      itemCount: 3,
      samples: 96,
      localSteps: 8,
      loss: 0.25,
      codec: { kind: 'int8' },
      delta: randomDigest(),
    },
    key,
  )
}

export function provenanceBy(signers: Ed25519PrivateKey[], overrides: { coop?: string } = {}) {
  return createProvenance(
    {
      coop: overrides.coop ?? TEST_COOP,
      round: 1,
      phase: 'unet',
      parent: null,
      contributions: [],
      manifests: [],
      revocations: [],
      excludedItems: [],
      components: [],
      license: 'CC-BY-4.0',
      attribution: [],
      files: { 'model.safetensors': randomDigest() },
    },
    signers,
  )
}

export { generateKey }

/** The consent state the chain reads: what the round engine's consent book holds. */
export class MemoryConsent implements ConsentLookup {
  readonly issuers = new Map<string, string>()
  readonly revocations: VerifiedRevocation[] = []
  async revocationsFor(manifest: string) {
    return this.revocations.filter((r) => r.manifest === manifest)
  }
  async manifestIssuer(manifest: string) {
    return this.issuers.get(manifest)
  }
  addManifest(manifest: ConsentManifest) {
    const verified = verifyManifest(manifest, { now: new Date() })
    this.issuers.set(verified.digest, verified.issuer)
  }
}
