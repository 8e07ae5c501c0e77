// Revocations for manifests this node does not hold yet. A revocation can race ahead of its
// manifest through the mesh, so it is kept until the manifest arrives, and applied only then,
// after the issuer and item checks. Nothing here is trusted or re-announced, and the pool is
// bounded in count and bytes, per sender, per issuer and in total, so revocations naming
// manifests nobody holds cannot grow a node's memory or crowd out honest ones.
import type { VerifiedRevocation } from '../../protocol/revocation.ts'
import {
  HELD_REVOCATION_TTL_MS,
  HELD_REVOCATIONS_MAX,
  HELD_REVOCATIONS_MAX_BYTES,
  HELD_REVOCATIONS_PER_ISSUER,
  HELD_REVOCATIONS_PER_SENDER,
} from './constants.ts'

export interface HeldRevocation {
  revocation: VerifiedRevocation
  /** The gossip author it came from ('local' for this node's inbox): charged if it proves forged. */
  sender: string
  bytes: number
  heldAt: number
}

export type HoldOutcome = 'held' | 'already-held' | 'sender-full' | 'issuer-full' | 'too-large'

export interface HeldLimits {
  max: number
  maxBytes: number
  perSender: number
  perIssuer: number
  ttlMs: number
}

export const DEFAULT_HELD_LIMITS: HeldLimits = {
  max: HELD_REVOCATIONS_MAX,
  maxBytes: HELD_REVOCATIONS_MAX_BYTES,
  perSender: HELD_REVOCATIONS_PER_SENDER,
  perIssuer: HELD_REVOCATIONS_PER_ISSUER,
  ttlMs: HELD_REVOCATION_TTL_MS,
}

export class HeldRevocations {
  readonly #limits: HeldLimits
  readonly #now: () => number
  /** By revocation digest, oldest first (Map keeps insertion order). */
  readonly #held = new Map<string, HeldRevocation>()
  #bytes = 0

  constructor(options: { limits?: Partial<HeldLimits>; now?: () => number } = {}) {
    this.#limits = { ...DEFAULT_HELD_LIMITS, ...options.limits }
    this.#now = options.now ?? Date.now
  }

  get size(): number {
    return this.#held.size
  }

  get bytes(): number {
    return this.#bytes
  }

  has(digest: string): boolean {
    return this.#held.has(digest)
  }

  /**
   * Holds a revocation until its manifest arrives. A sender or issuer at its share is refused
   * (its own oldest are not dropped for it: an attacker could otherwise flush what it sent
   * earlier and keep the pool churning); when the whole pool is full, the oldest entry of the
   * sender holding the most makes room, so many senders share it fairly.
   */
  hold(revocation: VerifiedRevocation, sender: string, bytes: number): HoldOutcome {
    this.#expire()
    if (this.#held.has(revocation.digest)) return 'already-held'
    if (bytes > this.#limits.maxBytes) return 'too-large'
    let fromSender = 0
    let fromIssuer = 0
    for (const entry of this.#held.values()) {
      if (entry.sender === sender) fromSender += 1
      if (entry.revocation.issuer === revocation.issuer) fromIssuer += 1
    }
    if (fromSender >= this.#limits.perSender) return 'sender-full'
    if (fromIssuer >= this.#limits.perIssuer) return 'issuer-full'
    while (this.#held.size >= this.#limits.max || this.#bytes + bytes > this.#limits.maxBytes) {
      const victim = this.#oldestOfLargestSender()
      if (victim === undefined) break
      this.#remove(victim)
    }
    this.#held.set(revocation.digest, { revocation, sender, bytes, heldAt: this.#now() })
    this.#bytes += bytes
    return 'held'
  }

  /** Removes and returns every held revocation naming the manifest (it has arrived). */
  take(manifestDigest: string): HeldRevocation[] {
    this.#expire()
    const out: HeldRevocation[] = []
    for (const [digest, entry] of this.#held)
      if (entry.revocation.manifest === manifestDigest) {
        out.push(entry)
        this.#remove(digest)
      }
    return out
  }

  /** Held revocations naming the manifest, left in place (validators read them). */
  peek(manifestDigest: string): HeldRevocation[] {
    return [...this.#held.values()].filter((e) => e.revocation.manifest === manifestDigest)
  }

  #oldestOfLargestSender(): string | undefined {
    const counts = new Map<string, number>()
    for (const entry of this.#held.values()) counts.set(entry.sender, (counts.get(entry.sender) ?? 0) + 1)
    let largest: string | undefined
    for (const [sender, count] of counts)
      if (largest === undefined || count > (counts.get(largest) ?? 0)) largest = sender
    for (const [digest, entry] of this.#held) if (entry.sender === largest) return digest
    return undefined
  }

  /** A manifest that has not arrived within the TTL is not racing its revocation. */
  #expire(): void {
    const cutoff = this.#now() - this.#limits.ttlMs
    for (const [digest, entry] of this.#held) {
      if (entry.heldAt > cutoff) break
      this.#remove(digest)
    }
  }

  #remove(digest: string): void {
    const entry = this.#held.get(digest)
    if (entry === undefined) return
    this.#held.delete(digest)
    this.#bytes -= entry.bytes
  }
}
