// Token buckets keyed by (peer, topic): a peer that relays more messages than any honest
// round could produce gets its surplus IGNOREd and charged, instead of costing us validation work.
// The blob server uses the same buckets with bytes as tokens: a per-peer upload budget.
import { GOSSIP_RATE_BURST, GOSSIP_RATE_MAX_BUCKETS, GOSSIP_RATE_PER_SECOND } from '../constants.ts'

interface Bucket {
  tokens: number
  updatedAt: number
}

export class RateLimiter {
  readonly #buckets = new Map<string, Bucket>()
  readonly #ratePerSecond: number
  readonly #burst: number
  readonly #now: () => number
  readonly #maxBuckets: number

  constructor(
    options: { ratePerSecond?: number; burst?: number; maxBuckets?: number; now?: () => number } = {},
  ) {
    this.#maxBuckets = options.maxBuckets ?? GOSSIP_RATE_MAX_BUCKETS
    this.#ratePerSecond = options.ratePerSecond ?? GOSSIP_RATE_PER_SECOND
    this.#burst = options.burst ?? GOSSIP_RATE_BURST
    this.#now = options.now ?? Date.now
  }

  /** Takes `cost` tokens (default one) for the key; false, taking nothing, when fewer are left. */
  take(key: string, cost = 1): boolean {
    const now = this.#now()
    const bucket = this.#buckets.get(key) ?? { tokens: this.#burst, updatedAt: now }
    bucket.tokens = Math.min(
      this.#burst,
      bucket.tokens + ((now - bucket.updatedAt) / 1000) * this.#ratePerSecond,
    )
    bucket.updatedAt = now
    this.#buckets.set(key, bucket)
    const allowed = bucket.tokens >= cost
    if (allowed) bucket.tokens -= cost
    if (this.#buckets.size > this.#maxBuckets) this.#prune(now)
    return allowed
  }

  /** Gives back a token taken for a message that turned out to cost nothing (a copy of one we hold). */
  refund(key: string): void {
    const bucket = this.#buckets.get(key)
    if (bucket !== undefined) bucket.tokens = Math.min(this.#burst, bucket.tokens + 1)
  }

  /** Number of buckets held (for tests and status). */
  get size(): number {
    return this.#buckets.size
  }

  // Buckets are kept across disconnects, so reconnecting does not refill a flooder's bucket;
  // the map stays bounded because a refilled bucket carries no information and can go.
  #prune(now: number): void {
    for (const [key, bucket] of this.#buckets) {
      if (bucket.tokens + ((now - bucket.updatedAt) / 1000) * this.#ratePerSecond >= this.#burst)
        this.#buckets.delete(key)
    }
  }
}
