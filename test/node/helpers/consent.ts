// Real signed documents (manifests, revocations, contributions, provenance) for the node tests.
import { createHash, randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ConsentBook, type ConsentBookOptions } from '../../../node/consent/book.ts'
import { componentLogger } from '../../../node/log.ts'
import { openStore, type CoopStore } from '../../../node/store/store.ts'
import { summarizeExclusions } from '../../../protocol/exclusions.ts'
import {
  createContribution,
  createManifest,
  createProvenance,
  createRevocation,
  type ConsentManifest,
  type Ed25519PrivateKey,
  generateKey,
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
      exclusions: summarizeExclusions({ revocations: [], expiredManifests: [], items: [] }).summary,
      components: [],
      license: 'CC-BY-4.0',
      attribution: [],
      files: { 'model.safetensors': randomDigest() },
    },
    signers,
  )
}

export { generateKey }

/** The charter terms most tests run under: CC-BY and CC0 accepted, non-commercial, weights kept in the coop. */
export const TEST_CONSENT_TERMS = {
  acceptedLicenses: ['CC-BY-4.0', 'CC0-1.0'],
  intendedUse: { commercialUse: false, weightRedistribution: false },
}

/** A real ConsentBook over its own LevelDB in a temp dir (close() removes it). */
export async function openConsentBook(
  peerId: string,
  options: Partial<ConsentBookOptions> = {},
): Promise<{ book: ConsentBook; store: CoopStore; dir: string; close(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'coop-consent-'))
  const store = await openStore(dir)
  const book = new ConsentBook(
    { peerId, ...TEST_CONSENT_TERMS, ...options },
    { store, log: componentLogger('consent-test') },
  )
  await book.load()
  return {
    book,
    store,
    dir,
    async close() {
      book.stop()
      await store.close()
      await rm(dir, { recursive: true, force: true })
    },
  }
}
