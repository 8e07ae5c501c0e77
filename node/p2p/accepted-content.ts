// Content digests of the gossip messages we accepted, so a copy of one (a peer re-announcing a
// document it holds, relayed by another) costs nothing: no rate-limit token and no penalty.
// Bounded: the oldest entries go first; a forgotten one is simply validated and charged again.
import { createHash } from 'node:crypto'
import { ACCEPTED_CONTENT_MAX_ENTRIES } from '../constants.ts'
import type { TopicName } from './topics.ts'

export class AcceptedContent {
  readonly #entries = new Set<string>()
  readonly #max: number

  constructor(options: { maxEntries?: number } = {}) {
    this.#max = options.maxEntries ?? ACCEPTED_CONTENT_MAX_ENTRIES
  }

  /** The key of a message's content on a topic (the author and sequence number do not matter). */
  static key(topic: TopicName, data: Uint8Array): string {
    return `${topic}|${createHash('sha256').update(data).digest('base64')}`
  }

  has(key: string): boolean {
    return this.#entries.has(key)
  }

  add(key: string): void {
    // Re-inserting moves the key to the young end, so documents re-announced often stay known.
    this.#entries.delete(key)
    this.#entries.add(key)
    if (this.#entries.size > this.#max) {
      const oldest = this.#entries.values().next().value
      if (oldest !== undefined) this.#entries.delete(oldest)
    }
  }

  get size(): number {
    return this.#entries.size
  }
}
