// What this node knows about consent: every verified manifest and revocation it has seen
// (its own, from --consent files, and others', from the consent topic), persisted in the store.
// It answers the round engine's questions: which local images may the trainer see, is a
// peer's contribution backed by valid consent, and what must a checkpoint record and attribute.
import { verifyManifest, type VerifiedManifest } from '../../protocol/manifest.ts'
import { verifyRevocation, type VerifiedRevocation } from '../../protocol/revocation.ts'
import { isProtocolError } from '../../protocol/errors.ts'
import { canonicalBytes } from '../../protocol/jcs.ts'
import type { Logger } from 'pino'
import type { CoopStore } from '../store/store.ts'
import { ConsentError } from './errors.ts'
import { errorCode } from '../../protocol/coded-error.ts'

interface StoredManifest {
  document: unknown
  local: boolean
  receivedAt: string
}

interface StoredRevocation {
  document: unknown
  receivedAt: string
}

export interface Attribution {
  name: string
  uri?: string
  text?: string
}

const compareStrings = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0)

export interface ConsentBookOptions {
  peerId: string
  acceptedLicenses: readonly string[]
}

/** True when `now` (ms since the epoch) is inside the manifest's validity window. */
export function manifestValidAt(verified: VerifiedManifest, now: number): boolean {
  const m = verified.manifest
  return Date.parse(m.validFrom) <= now && (m.validUntil === undefined || Date.parse(m.validUntil) > now)
}

export class ConsentBook {
  readonly #store: CoopStore
  readonly #log: Logger
  readonly #options: ConsentBookOptions
  /** Manifest documents by digest, verified once without revocations (signature, schema, license). */
  readonly #manifests = new Map<string, { verified: VerifiedManifest; local: boolean }>()
  readonly #revocations = new Map<string, VerifiedRevocation>()
  readonly #listeners = new Set<(items: string[]) => void>()

  constructor(options: ConsentBookOptions, modules: { store: CoopStore; log: Logger }) {
    this.#options = options
    this.#store = modules.store
    this.#log = modules.log
  }

  async load(): Promise<void> {
    for (const [, value] of await this.#store.revocations.entries()) {
      try {
        const verified = verifyRevocation((value as StoredRevocation).document as object)
        this.#revocations.set(verified.digest, verified)
      } catch (err) {
        this.#log.warn({ err }, 'stored revocation no longer verifies; ignored')
      }
    }
    for (const [, value] of await this.#store.manifests.entries()) {
      const stored = value as StoredManifest
      try {
        const verified = verifyManifest(stored.document as object, {
          now: new Date(),
          acceptedLicenses: this.#options.acceptedLicenses,
        })
        this.#manifests.set(verified.digest, { verified, local: stored.local })
      } catch (err) {
        this.#log.warn({ code: errorCode(err) }, 'stored manifest no longer verifies; ignored')
      }
    }
  }

  /**
   * Verifies and records a manifest. `local` manifests come from this node's --consent files
   * and must name it as custodian. `added` is false for one already known.
   */
  async addManifest(
    document: object,
    local: boolean,
  ): Promise<{ verified: VerifiedManifest; added: boolean }> {
    const verified = verifyManifest(document, {
      now: new Date(),
      acceptedLicenses: this.#options.acceptedLicenses,
      ...(local ? { custodian: this.#options.peerId } : {}),
    })
    return await this.addVerifiedManifest(verified, local)
  }

  /**
   * Records a manifest the caller already verified as addManifest does (the consent topic's
   * validator: signature, schema, validity window, usage and the charter's licenses), so a
   * gossiped manifest is parsed and verified once.
   */
  async addVerifiedManifest(
    verified: VerifiedManifest,
    local: boolean,
  ): Promise<{ verified: VerifiedManifest; added: boolean }> {
    const known = this.#manifests.get(verified.digest)
    if (known !== undefined && (known.local || !local)) return { verified: known.verified, added: false }
    const document = verified.manifest
    await this.#store.putBlob(canonicalBytes(document))
    const stored: StoredManifest = { document, local, receivedAt: new Date().toISOString() }
    await this.#store.manifests.put(verified.digest, stored)
    this.#manifests.set(verified.digest, { verified, local })
    return { verified, added: true }
  }

  /** Records a revocation; tells listeners which local items it withdraws. Undefined when already known. */
  async addRevocation(document: object): Promise<VerifiedRevocation | undefined> {
    return await this.addVerifiedRevocation(verifyRevocation(document))
  }

  /** Records a revocation the caller already verified (the consent topic's validator), as addRevocation does. */
  async addVerifiedRevocation(verified: VerifiedRevocation): Promise<VerifiedRevocation | undefined> {
    if (this.#revocations.has(verified.digest)) return undefined
    const manifest = this.#manifests.get(verified.manifest)
    // A revocation only counts when its issuer issued the manifest.
    if (manifest !== undefined && manifest.verified.issuer !== verified.issuer)
      throw new ConsentError('NOT_ISSUER', 'revocation signed by someone other than the manifest issuer')
    const document = verified.revocation
    await this.#store.putBlob(canonicalBytes(document))
    await this.#store.revocations.put(verified.digest, {
      document,
      receivedAt: new Date().toISOString(),
    } satisfies StoredRevocation)
    this.#revocations.set(verified.digest, verified)
    const items = this.#itemsOf(verified)
    if (items.length > 0) for (const listener of this.#listeners) listener(items)
    return verified
  }

  onRevocation(listener: (items: string[]) => void): () => void {
    this.#listeners.add(listener)
    return () => this.#listeners.delete(listener)
  }

  #itemsOf(revocation: VerifiedRevocation): string[] {
    const manifest = this.#manifests.get(revocation.manifest)
    if (revocation.items === 'all')
      return manifest === undefined ? [] : manifest.verified.items.map((i) => i.digest)
    if (manifest === undefined) return [...revocation.items]
    const listed = new Set(manifest.verified.items.map((i) => i.digest))
    return revocation.items.filter((i) => listed.has(i))
  }

  // ConsentLookup (node/validation/consent.ts): what the consent topic's chain asks.
  async revocationsFor(manifestDigest: string): Promise<VerifiedRevocation[]> {
    return [...this.#revocations.values()].filter((r) => r.manifest === manifestDigest)
  }

  async manifestIssuer(manifestDigest: string): Promise<string | undefined> {
    return this.#manifests.get(manifestDigest)?.verified.issuer
  }

  manifest(id: string): VerifiedManifest | undefined {
    return this.#manifests.get(id)?.verified
  }

  manifests(): { verified: VerifiedManifest; local: boolean }[] {
    return [...this.#manifests.values()]
  }

  revocations(): VerifiedRevocation[] {
    return [...this.#revocations.values()]
  }

  /** Every item any known revocation withdraws (the trainer excludes them; extra digests are harmless). */
  revokedItems(): Set<string> {
    const out = new Set<string>()
    for (const r of this.#revocations.values()) for (const item of this.#itemsOf(r)) out.add(item)
    return out
  }

  /** What a checkpoint records as excluded: revocation digests and the items they withdraw. */
  revocationSummary(): { revocations: string[]; items: string[] } {
    return {
      revocations: [...this.#revocations.keys()].sort(compareStrings),
      items: [...this.revokedItems()].sort(compareStrings),
    }
  }

  /** True when the manifest is withdrawn entirely by the given revocations (those of its issuer count). */
  fullyRevokedBy(manifestId: string, revocationIds: ReadonlySet<string>): boolean {
    const manifest = this.#manifests.get(manifestId)
    if (manifest === undefined) return false
    const revoked = new Set<string>()
    for (const id of revocationIds) {
      const r = this.#revocations.get(id)
      if (r === undefined || r.manifest !== manifestId || r.issuer !== manifest.verified.issuer) continue
      for (const item of this.#itemsOf(r)) revoked.add(item)
    }
    return manifest.verified.items.every((i) => revoked.has(i.digest))
  }

  /**
   * The loader allowlist: items of this node's valid manifests (it is their custodian), minus
   * every revoked item. Throws NO_CONSENT when nothing is left.
   */
  allowlist(): Set<string> {
    const revoked = this.revokedItems()
    const out = new Set<string>()
    for (const { verified, local } of this.#manifests.values()) {
      if (!local || verified.custodian !== this.#options.peerId || !this.#stillValid(verified)) continue
      for (const item of verified.items) if (!revoked.has(item.digest)) out.add(item.digest)
    }
    return out
  }

  #stillValid(verified: VerifiedManifest): boolean {
    return manifestValidAt(verified, Date.now())
  }

  /** The manifests and items a local contribution trained on: allowlisted items the dataset holds. */
  localItemsInUse(datasetItems: ReadonlySet<string>): { manifests: string[]; items: string[] } {
    const revoked = this.revokedItems()
    const manifests = new Set<string>()
    const items = new Set<string>()
    for (const { verified, local } of this.#manifests.values()) {
      if (!local || verified.custodian !== this.#options.peerId || !this.#stillValid(verified)) continue
      for (const item of verified.items) {
        if (revoked.has(item.digest) || !datasetItems.has(item.digest)) continue
        items.add(item.digest)
        manifests.add(verified.digest)
      }
    }
    return { manifests: [...manifests].sort(compareStrings), items: [...items].sort(compareStrings) }
  }

  /** The SPDX expression covering a set of manifests: the conjunction of their (and their items') licenses. */
  licenseOf(manifestIds: readonly string[]): string {
    const terms = new Set<string>()
    for (const id of manifestIds) {
      const m = this.#manifests.get(id)?.verified
      if (m === undefined) continue
      terms.add(m.manifest.credentialSubject.license)
      for (const item of m.items) if (item.license !== undefined) terms.add(item.license)
    }
    // Random initial weights carry no one's rights: CC0 states that plainly.
    if (terms.size === 0) return 'CC0-1.0'
    const sorted = [...terms].sort(compareStrings)
    return sorted.length === 1
      ? (sorted[0] as string)
      : sorted.map((t) => (/\s/.test(t) ? `(${t})` : t)).join(' AND ')
  }

  /** The attribution list the licenses of these manifests require, one entry per distinct attribution. */
  attributionOf(manifestIds: readonly string[]): Attribution[] {
    const out = new Map<string, Attribution>()
    for (const id of manifestIds) {
      const m = this.#manifests.get(id)?.verified
      if (m === undefined) continue
      const candidates: Attribution[] = [
        m.manifest.credentialSubject.attribution,
        ...m.items.flatMap((i) => (i.attribution === undefined ? [] : [i.attribution])),
      ]
      for (const a of candidates) {
        const entry: Attribution = {
          name: a.name,
          ...(a.uri === undefined ? {} : { uri: a.uri }),
          ...(a.text === undefined ? {} : { text: a.text }),
        }
        out.set(JSON.stringify(entry), entry)
      }
    }
    return [...out.entries()].sort((a, b) => compareStrings(a[0], b[0])).map(([, v]) => v)
  }

  /** Loads this node's own manifests from --consent files; each must verify and name this node. */
  async addLocalManifests(documents: { path: string; document: object }[]): Promise<VerifiedManifest[]> {
    const out: VerifiedManifest[] = []
    for (const { path, document } of documents) {
      try {
        out.push((await this.addManifest(document, true)).verified)
      } catch (err) {
        if (isProtocolError(err) && err.code === 'CUSTODIAN_MISMATCH')
          throw new ConsentError(
            'FOREIGN_CUSTODIAN',
            `${path}: the manifest names another node as custodian`,
            {
              cause: err,
            },
          )
        if (isProtocolError(err))
          throw new ConsentError('MANIFEST_INVALID', `${path}: ${err.code}: ${err.message}`, { cause: err })
        throw err
      }
    }
    return out
  }
}
