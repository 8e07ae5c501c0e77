// What this node knows about consent: every verified manifest (its own, from --consent files, and
// others', from the consent topic), the revocations it applied, persisted in the store, and the
// revocations it holds until their manifest arrives. It answers the round engine's questions:
// which local images may the trainer see (and when that changes: a revocation or an expiry),
// is a peer's contribution backed by valid consent, and what must a checkpoint record.
//
// Authority: a revocation applies only when the manifest it names is held here, it is signed by
// that manifest's issuer, and every item it lists is in that manifest. One naming a manifest we
// do not hold is held (bounded, node/consent/held.ts) and checked when the manifest arrives.
import type { Logger } from 'pino'
import type { IntendedUse } from '../../protocol/charter.ts'
import { errorCode } from '../../protocol/coded-error.ts'
import { isProtocolError } from '../../protocol/errors.ts'
import { canonicalBytes } from '../../protocol/jcs.ts'
import { verifyManifest, type VerifiedManifest } from '../../protocol/manifest.ts'
import { verifyRevocation, type VerifiedRevocation } from '../../protocol/revocation.ts'
import type { CoopStore } from '../store/store.ts'
import { MAX_TIMER_MS } from './constants.ts'
import { ConsentError } from './errors.ts'
import { HeldRevocations, type HeldRevocation, type HoldOutcome } from './held.ts'

interface StoredManifest {
  document: unknown
  local: boolean
  receivedAt: string
}

interface StoredRevocation {
  document: unknown
  receivedAt: string
}

const compareStrings = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0)

export interface ConsentBookOptions {
  peerId: string
  acceptedLicenses: readonly string[]
  /** The charter's intended use: manifests whose scope forbids it are refused. */
  intendedUse: IntendedUse
  /** Clock (ms since the epoch); tests pin it. */
  now?: () => number
}

/** What a revocation would do here, decided without writing anything. */
export type RevocationStatus =
  | { kind: 'known' }
  | { kind: 'applies' }
  | { kind: 'unknown-manifest' }
  | { kind: 'refused'; code: 'NOT_ISSUER' | 'UNKNOWN_ITEM'; message: string }

/** Why consent for some local items ended: the trainer stops using them at its next step. */
export type WithdrawalReason = 'revoked' | 'expired'

/** A held revocation that proved forged once its manifest arrived: its sender is charged. */
export interface RefusedRevocation {
  sender: string
  code: 'NOT_ISSUER' | 'UNKNOWN_ITEM'
  revocation: string
}

/** True when `now` (ms since the epoch) is inside the manifest's validity window. */
export function manifestValidAt(verified: VerifiedManifest, now: number): boolean {
  const m = verified.manifest
  return Date.parse(m.validFrom) <= now && (m.validUntil === undefined || Date.parse(m.validUntil) > now)
}

/** validUntil in ms, or undefined for a manifest without an end. */
export function manifestEnd(verified: VerifiedManifest): number | undefined {
  const until = verified.manifest.validUntil
  return until === undefined ? undefined : Date.parse(until)
}

/** The checks a revocation must pass against the manifest it names (held here). */
export function checkRevocationAgainst(
  revocation: VerifiedRevocation,
  manifest: VerifiedManifest,
): RevocationStatus {
  // Only the issuer of a manifest can withdraw its consent.
  if (revocation.issuer !== manifest.issuer)
    return { kind: 'refused', code: 'NOT_ISSUER', message: 'revocation is not signed by the manifest issuer' }
  // A revocation names items of its manifest only: anything else is junk that would grow exclusions.
  if (revocation.items !== 'all') {
    const listed = new Set(manifest.items.map((i) => i.digest))
    const unknown = revocation.items.find((i) => !listed.has(i))
    if (unknown !== undefined)
      return { kind: 'refused', code: 'UNKNOWN_ITEM', message: `item ${unknown} is not in the manifest` }
  }
  return { kind: 'applies' }
}

export class ConsentBook {
  readonly #store: CoopStore
  readonly #log: Logger
  readonly #options: ConsentBookOptions
  readonly #now: () => number
  /** Manifest documents by digest, verified once (signature, schema, licenses, scope); expired ones stay. */
  readonly #manifests = new Map<string, { verified: VerifiedManifest; local: boolean }>()
  /** Applied revocations: issuer and items checked against a manifest held here. */
  readonly #revocations = new Map<string, VerifiedRevocation>()
  readonly #held = new HeldRevocations()
  readonly #withdrawnListeners = new Set<(items: string[], reason: WithdrawalReason) => void>()
  readonly #refusedListeners = new Set<(refused: RefusedRevocation) => void>()
  /** When this node last heard each consent document on gossip (re-announcements skip fresh ones). */
  readonly #heardAt = new Map<string, number>()
  readonly #expiryTimers = new Map<string, NodeJS.Timeout>()
  #started = false

  constructor(options: ConsentBookOptions, modules: { store: CoopStore; log: Logger }) {
    this.#options = options
    this.#now = options.now ?? Date.now
    this.#store = modules.store
    this.#log = modules.log
  }

  /**
   * Loads the stored manifests (an expired one still names the license and attribution of the
   * checkpoints trained on it, so only its signature, schema, licenses and scope are checked),
   * then the stored revocations that still apply; others (from an older version that kept
   * revocations of unknown manifests) are deleted.
   */
  async load(): Promise<void> {
    for (const [key, value] of await this.#store.manifests.entries()) {
      const stored = value as StoredManifest
      try {
        const verified = verifyManifest(stored.document as object, {
          now: new Date(this.#now()),
          validityWindow: 'skip',
          acceptedLicenses: this.#options.acceptedLicenses,
          intendedUse: this.#options.intendedUse,
        })
        this.#manifests.set(verified.digest, { verified, local: stored.local })
      } catch (err) {
        this.#log.warn({ manifest: key, code: errorCode(err) }, 'stored manifest no longer verifies; ignored')
      }
    }
    for (const [key, value] of await this.#store.revocations.entries()) {
      try {
        const verified = verifyRevocation((value as StoredRevocation).document as object)
        const manifest = this.#manifests.get(verified.manifest)?.verified
        const status = manifest === undefined ? undefined : checkRevocationAgainst(verified, manifest)
        if (status?.kind === 'applies') this.#revocations.set(verified.digest, verified)
        else {
          await this.#store.revocations.del(key)
          this.#log.warn(
            { revocation: key, code: status?.kind === 'refused' ? status.code : 'UNKNOWN_MANIFEST' },
            'stored revocation does not apply; deleted',
          )
        }
      } catch (err) {
        this.#log.warn(
          { revocation: key, code: errorCode(err) },
          'stored revocation no longer verifies; ignored',
        )
      }
    }
  }

  /** Arms the expiry of every local manifest: the trainer stops using its items at that moment. */
  start(): void {
    this.#started = true
    for (const { verified, local } of this.#manifests.values()) if (local) this.#armExpiry(verified)
  }

  stop(): void {
    this.#started = false
    for (const timer of this.#expiryTimers.values()) clearTimeout(timer)
    this.#expiryTimers.clear()
  }

  // ---------------------------------------------------------------- manifests

  /**
   * Verifies and records a manifest. `local` manifests come from this node's --consent files
   * and must name it as custodian. `added` is false for one already known. A manifest fetched
   * by digest because a contribution or a checkpoint names it is recorded with its validity
   * window unchecked (`validityWindow: 'skip'`): whoever cites it judges its window.
   */
  async addManifest(
    document: object,
    local: boolean,
    options: { validityWindow?: 'check' | 'skip' } = {},
  ): Promise<{ verified: VerifiedManifest; added: boolean }> {
    const verified = verifyManifest(document, {
      now: new Date(this.#now()),
      ...(options.validityWindow === undefined ? {} : { validityWindow: options.validityWindow }),
      acceptedLicenses: this.#options.acceptedLicenses,
      intendedUse: this.#options.intendedUse,
      ...(local ? { custodian: this.#options.peerId } : {}),
    })
    return await this.addVerifiedManifest(verified, local)
  }

  /**
   * Records a manifest the caller already verified as addManifest does (the consent topic's
   * validator), then applies the revocations held for it, or refuses them.
   */
  async addVerifiedManifest(
    verified: VerifiedManifest,
    local: boolean,
  ): Promise<{ verified: VerifiedManifest; added: boolean }> {
    const known = this.#manifests.get(verified.digest)
    if (known !== undefined && (known.local || !local)) return { verified: known.verified, added: false }
    const document = verified.manifest
    await this.#store.putBlob(canonicalBytes(document))
    const stored: StoredManifest = { document, local, receivedAt: new Date(this.#now()).toISOString() }
    await this.#store.manifests.put(verified.digest, stored)
    this.#manifests.set(verified.digest, { verified, local })
    if (local && this.#started) this.#armExpiry(verified)
    for (const held of this.#held.take(verified.digest)) await this.#releaseHeld(held, verified)
    return { verified, added: true }
  }

  async #releaseHeld(held: HeldRevocation, manifest: VerifiedManifest): Promise<void> {
    const status = checkRevocationAgainst(held.revocation, manifest)
    if (status.kind === 'applies') {
      await this.#apply(held.revocation)
      this.#log.info(
        { revocation: held.revocation.digest, manifest: manifest.digest },
        'held revocation applied',
      )
      return
    }
    if (status.kind !== 'refused') return
    this.#log.warn(
      { revocation: held.revocation.digest, manifest: manifest.digest, code: status.code },
      'held revocation refused',
    )
    const refused: RefusedRevocation = {
      sender: held.sender,
      code: status.code,
      revocation: held.revocation.digest,
    }
    for (const listener of this.#refusedListeners) listener(refused)
  }

  manifest(id: string): VerifiedManifest | undefined {
    return this.#manifests.get(id)?.verified
  }

  manifests(): { verified: VerifiedManifest; local: boolean }[] {
    return [...this.#manifests.values()]
  }

  /** Loads this node's own manifests from --consent files; each must verify, name this node and allow the coop's use. */
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
        if (isProtocolError(err) && err.code === 'SCOPE_NOT_ALLOWED')
          throw new ConsentError('SCOPE_NOT_ALLOWED', `${path}: ${err.message}`, { cause: err })
        if (isProtocolError(err))
          throw new ConsentError('MANIFEST_INVALID', `${path}: ${err.code}: ${err.message}`, { cause: err })
        throw err
      }
    }
    return out
  }

  // ---------------------------------------------------------------- revocations

  /** What a verified revocation would do here (the consent topic's validator asks before anything is written). */
  revocationStatus(revocation: VerifiedRevocation): RevocationStatus {
    if (this.#revocations.has(revocation.digest)) return { kind: 'known' }
    const manifest = this.#manifests.get(revocation.manifest)?.verified
    if (manifest === undefined) return { kind: 'unknown-manifest' }
    return checkRevocationAgainst(revocation, manifest)
  }

  /** Holds a revocation whose manifest is not here yet (bounded; memory only: nothing is trusted from it). */
  holdRevocation(revocation: VerifiedRevocation, sender: string): HoldOutcome {
    return this.#held.hold(revocation, sender, canonicalBytes(revocation.revocation).byteLength)
  }

  /** Held revocations (count and bytes), for status and tests. */
  heldRevocations(): { count: number; bytes: number } {
    return { count: this.#held.size, bytes: this.#held.bytes }
  }

  /** Verifies a revocation document and records it as addVerifiedRevocation does. */
  async addRevocation(document: object, sender = 'local'): Promise<'applied' | 'known' | 'held'> {
    return await this.addVerifiedRevocation(verifyRevocation(document), sender)
  }

  /**
   * Applies a verified revocation (tells listeners which local items it withdraws), or holds it
   * until its manifest arrives. Throws NOT_ISSUER / UNKNOWN_ITEM for one that can never apply,
   * and HOLD_REFUSED when the held pool is at its bound for this sender or issuer.
   */
  async addVerifiedRevocation(
    revocation: VerifiedRevocation,
    sender = 'local',
  ): Promise<'applied' | 'known' | 'held'> {
    const status = this.revocationStatus(revocation)
    switch (status.kind) {
      case 'known':
        return 'known'
      case 'refused':
        throw new ConsentError(status.code, status.message)
      case 'unknown-manifest': {
        const outcome = this.holdRevocation(revocation, sender)
        if (outcome === 'held' || outcome === 'already-held') return 'held'
        throw new ConsentError('HOLD_REFUSED', `revocation for an unknown manifest not held: ${outcome}`)
      }
      case 'applies':
        await this.#apply(revocation)
        return 'applied'
    }
  }

  async #apply(revocation: VerifiedRevocation): Promise<void> {
    if (this.#revocations.has(revocation.digest)) return
    const document = revocation.revocation
    await this.#store.putBlob(canonicalBytes(document))
    await this.#store.revocations.put(revocation.digest, {
      document,
      receivedAt: new Date(this.#now()).toISOString(),
    } satisfies StoredRevocation)
    this.#revocations.set(revocation.digest, revocation)
    const items = this.#itemsOf(revocation)
    if (items.length > 0) this.#notifyWithdrawn(items, 'revoked')
  }

  /** Applied revocations (each checked against its manifest). */
  revocations(): VerifiedRevocation[] {
    return [...this.#revocations.values()]
  }

  #itemsOf(revocation: VerifiedRevocation): string[] {
    const manifest = this.#manifests.get(revocation.manifest)
    if (manifest === undefined) return []
    return revocation.items === 'all' ? manifest.verified.items.map((i) => i.digest) : [...revocation.items]
  }

  /** Every item an applied revocation withdraws (the trainer excludes them everywhere). */
  revokedItems(): Set<string> {
    const out = new Set<string>()
    for (const r of this.#revocations.values()) for (const item of this.#itemsOf(r)) out.add(item)
    return out
  }

  /** True when the manifest is withdrawn entirely by the given applied revocations. */
  fullyRevokedBy(manifestId: string, revocationIds: ReadonlySet<string>): boolean {
    const manifest = this.#manifests.get(manifestId)
    if (manifest === undefined) return false
    const revoked = new Set<string>()
    for (const id of revocationIds) {
      const r = this.#revocations.get(id)
      if (r === undefined || r.manifest !== manifestId) continue
      for (const item of this.#itemsOf(r)) revoked.add(item)
    }
    return manifest.verified.items.every((i) => revoked.has(i.digest))
  }

  /**
   * True when the manifest's issuer has withdrawn every item, by revocations applied here or held
   * for it (a manifest arriving after its full revocation is never admitted as live consent).
   */
  fullyRevoked(manifest: VerifiedManifest): boolean {
    const revoked = new Set<string>()
    const candidates = [
      ...[...this.#revocations.values()].filter((r) => r.manifest === manifest.digest),
      ...this.#held.peek(manifest.digest).map((h) => h.revocation),
    ]
    for (const r of candidates) {
      if (checkRevocationAgainst(r, manifest).kind !== 'applies') continue
      for (const item of r.items === 'all' ? manifest.items.map((i) => i.digest) : r.items) revoked.add(item)
    }
    return candidates.length > 0 && manifest.items.every((i) => revoked.has(i.digest))
  }

  // ---------------------------------------------------------------- listeners and gossip memory

  /** Called with the local items a revocation or an expiry withdraws; returns the unsubscribe. */
  onWithdrawn(listener: (items: string[], reason: WithdrawalReason) => void): () => void {
    this.#withdrawnListeners.add(listener)
    return () => this.#withdrawnListeners.delete(listener)
  }

  /** Called when a held revocation proves forged (its sender is to be charged). */
  onRefusedRevocation(listener: (refused: RefusedRevocation) => void): () => void {
    this.#refusedListeners.add(listener)
    return () => this.#refusedListeners.delete(listener)
  }

  #notifyWithdrawn(items: string[], reason: WithdrawalReason): void {
    for (const listener of this.#withdrawnListeners) listener(items, reason)
  }

  /** Notes that a consent document (by digest) was just heard on gossip. */
  heard(digest: string): void {
    this.#heardAt.set(digest, this.#now())
  }

  /** True when the document was heard on gossip within the last `ms` (peers have it: no need to repeat it). */
  heardWithin(digest: string, ms: number): boolean {
    const at = this.#heardAt.get(digest)
    return at !== undefined && this.#now() - at < ms
  }

  // ---------------------------------------------------------------- consent over time

  #armExpiry(verified: VerifiedManifest): void {
    const end = manifestEnd(verified)
    if (end === undefined || this.#expiryTimers.has(verified.digest)) return
    const wait = end - this.#now()
    if (wait <= 0) return
    const timer = setTimeout(
      () => {
        this.#expiryTimers.delete(verified.digest)
        // Later than a timer can wait: re-arm from here.
        if (end > this.#now()) return this.#armExpiry(verified)
        this.#expired(verified)
      },
      Math.min(wait, MAX_TIMER_MS),
    )
    timer.unref()
    this.#expiryTimers.set(verified.digest, timer)
  }

  /** A local manifest's validity ended: its items that no other valid manifest allows are withdrawn now. */
  #expired(verified: VerifiedManifest): void {
    const allowed = this.allowlist()
    const items = verified.items.map((i) => i.digest).filter((d) => !allowed.has(d))
    this.#log.info({ manifest: verified.digest, items: items.length }, 'consent expired')
    if (items.length > 0) this.#notifyWithdrawn(items, 'expired')
  }

  /**
   * The loader allowlist: items of this node's valid manifests (it is their custodian), minus
   * every revoked item.
   */
  allowlist(): Set<string> {
    const revoked = this.revokedItems()
    const now = this.#now()
    const out = new Set<string>()
    for (const { verified, local } of this.#manifests.values()) {
      if (!local || verified.custodian !== this.#options.peerId || !manifestValidAt(verified, now)) continue
      for (const item of verified.items) if (!revoked.has(item.digest)) out.add(item.digest)
    }
    return out
  }

  /** Local items the trainer must not use now: revoked ones, and those whose every manifest expired. */
  withdrawnItems(): Set<string> {
    const allowed = this.allowlist()
    const out = this.revokedItems()
    for (const { verified, local } of this.#manifests.values()) {
      if (!local) continue
      for (const item of verified.items) if (!allowed.has(item.digest)) out.add(item.digest)
    }
    return out
  }

  /** The manifests and items a local contribution may train on now: allowlisted items the dataset holds. */
  localItemsInUse(datasetItems: ReadonlySet<string>): { manifests: string[]; items: string[] } {
    const revoked = this.revokedItems()
    const now = this.#now()
    const manifests = new Set<string>()
    const items = new Set<string>()
    for (const { verified, local } of this.#manifests.values()) {
      if (!local || verified.custodian !== this.#options.peerId || !manifestValidAt(verified, now)) continue
      for (const item of verified.items) {
        if (revoked.has(item.digest) || !datasetItems.has(item.digest)) continue
        items.add(item.digest)
        manifests.add(verified.digest)
      }
    }
    return { manifests: [...manifests].sort(compareStrings), items: [...items].sort(compareStrings) }
  }

  /**
   * What a checkpoint closing at `at` records beyond what its lineage recorded: every applied
   * revocation and the items it withdraws, and the manifests among `lineageManifests` whose
   * validity ended by `at`.
   */
  exclusionsSince(
    recorded: {
      revocations: ReadonlySet<string>
      expiredManifests: ReadonlySet<string>
      items: ReadonlySet<string>
    },
    lineageManifests: Iterable<string>,
    at: number,
  ): { revocations: string[]; expiredManifests: string[]; items: string[] } {
    const revocations = [...this.#revocations.keys()].filter((r) => !recorded.revocations.has(r))
    const items = new Set<string>()
    for (const id of revocations)
      for (const item of this.#itemsOf(this.#revocations.get(id) as VerifiedRevocation))
        if (!recorded.items.has(item)) items.add(item)
    const expiredManifests: string[] = []
    for (const id of new Set(lineageManifests)) {
      if (recorded.expiredManifests.has(id)) continue
      const manifest = this.#manifests.get(id)?.verified
      const end = manifest === undefined ? undefined : manifestEnd(manifest)
      if (end !== undefined && end <= at) expiredManifests.push(id)
    }
    return {
      revocations: revocations.sort(compareStrings),
      expiredManifests: expiredManifests.sort(compareStrings),
      items: [...items].sort(compareStrings),
    }
  }
}
