// Token buckets keyed by (peer, topic): a peer that relays more messages than any honest
// round could produce gets its surplus IGNOREd and charged, instead of costing us validation work.
import { GOSSIP_RATE_BURST, GOSSIP_RATE_PER_SECOND } from '../constants.ts'

interface Bucket {
  tokens: number
  updatedAt: number
}

export class RateLimiter {
  readonly #buckets = new Map<string, Bucket>()
  readonly #ratePerSecond: number
  readonly #burst: number
  readonly #now: () => number

  constructor(options: { ratePerSecond?: number; burst?: number; now?: () => number } = {}) {
    this.#ratePerSecond = options.ratePerSecond ?? GOSSIP_RATE_PER_SECOND
    this.#burst = options.burst ?? GOSSIP_RATE_BURST
    this.#now = options.now ?? Date.now
  }

  /** Takes one token for the key; false when the bucket is empty. */
  take(key: string): boolean {
    const now = this.#now()
    const bucket = this.#buckets.get(key) ?? { tokens: this.#burst, updatedAt: now }
    bucket.tokens = Math.min(
      this.#burst,
      bucket.tokens + ((now - bucket.updatedAt) / 1000) * this.#ratePerSecond,
    )
    bucket.updatedAt = now
    this.#buckets.set(key, bucket)
    if (bucket.tokens < 1) return false
    bucket.tokens -= 1
    return true
  }

  forget(keyPrefix: string): void {
    for (const key of this.#buckets.keys()) if (key.startsWith(keyPrefix)) this.#buckets.delete(key)
  }
}
