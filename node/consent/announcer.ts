// Re-announcing consent: every node repeats its own live manifests and the revocations it applied,
// so peers that joined late or restarted learn them without a request protocol. Often while
// peers are still joining, then at a calm pace; never faster than `perSecond` documents, and
// skipping any document a peer announced within the interval (Trickle-style suppression): however
// many documents the book holds, repeating them stays far inside every peer's gossip rate limit,
// and what everyone holds is not repeated by all (each pass goes in a random order, so peers
// holding the same book cover different documents first). Only documents every honest peer accepts are
// repeated (valid, not fully revoked manifests; revocations checked against their manifest),
// never a revocation held for a manifest this node does not have.
import type { Logger } from 'pino'
import type { CoopHost } from '../p2p/host.ts'
import { encodeGossipMessage } from '../validation/messages.ts'
import { type ConsentBook, manifestValidAt } from './book.ts'
import {
  CONSENT_ANNOUNCE_PER_SECOND,
  CONSENT_CALM_REANNOUNCE_MS,
  CONSENT_EARLY_ANNOUNCEMENTS,
  CONSENT_EARLY_REANNOUNCE_MS,
} from './constants.ts'

export interface ConsentAnnouncerOptions {
  /** Passes at the early pace, then the calm one. */
  earlyPasses: number
  earlyMs: number
  calmMs: number
  /** Most documents published per second. */
  perSecond: number
}

export const DEFAULT_CONSENT_ANNOUNCER: ConsentAnnouncerOptions = {
  earlyPasses: CONSENT_EARLY_ANNOUNCEMENTS,
  earlyMs: CONSENT_EARLY_REANNOUNCE_MS,
  calmMs: CONSENT_CALM_REANNOUNCE_MS,
  perSecond: CONSENT_ANNOUNCE_PER_SECOND,
}

export interface ConsentAnnouncerModules {
  consent: ConsentBook
  host: Pick<CoopHost, 'publish'>
  log: Logger
}

export class ConsentAnnouncer {
  readonly #options: ConsentAnnouncerOptions
  readonly #modules: ConsentAnnouncerModules
  #loop: Promise<void> | undefined
  /** Wakes the loop's current pause early (at stop). */
  #wake: (() => void) | undefined
  #running = false
  /** Documents published since start, and those skipped because a peer announced them (tests and benches read them). */
  published = 0
  suppressed = 0

  constructor(options: Partial<ConsentAnnouncerOptions>, modules: ConsentAnnouncerModules) {
    this.#options = { ...DEFAULT_CONSENT_ANNOUNCER, ...options }
    this.#modules = modules
  }

  start(): void {
    if (this.#running) return
    this.#running = true
    this.#loop = this.#announceForever()
  }

  async stop(): Promise<void> {
    this.#running = false
    this.#wake?.()
    await this.#loop
    this.#loop = undefined
  }

  /** Waits `ms`, or less if stop() is called meanwhile. */
  async #pause(ms: number): Promise<void> {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms)
      timer.unref()
      this.#wake = () => {
        clearTimeout(timer)
        resolve()
      }
    })
    this.#wake = undefined
  }

  async #announceForever(): Promise<void> {
    const { earlyPasses, earlyMs, calmMs } = this.#options
    for (let pass = 0; this.#running; pass++) {
      const interval = pass < earlyPasses ? earlyMs : calmMs
      await this.#pause(interval)
      if (!this.#running) return
      await this.#announceOnce(interval)
    }
  }

  /**
   * One pass over the documents to repeat, paced, skipping those a peer announced since `interval`
   * before the pass began: across the mesh, each document goes out about once per interval.
   */
  async #announceOnce(interval: number): Promise<void> {
    const { consent } = this.#modules
    const now = Date.now()
    const documents: { kind: 'manifest' | 'revocation'; digest: string; document: unknown }[] = []
    for (const { verified, local } of consent.manifests()) {
      // Our own consent, while it is live: peers refuse (IGNORE) expired or fully revoked ones.
      if (!local || !manifestValidAt(verified, now) || consent.fullyRevoked(verified)) continue
      documents.push({ kind: 'manifest', digest: verified.digest, document: verified.manifest })
    }
    for (const revocation of consent.revocations())
      documents.push({ kind: 'revocation', digest: revocation.digest, document: revocation.revocation })
    // Each pass in its own random order: peers holding the same book then cover different
    // documents first, and each hears the others' before reaching them (suppression needs that).
    shuffle(documents)
    for (const { kind, digest, document } of documents) {
      if (!this.#running) return
      // Someone announced it since this pass's window opened: our peers have it, repeating it is noise.
      if (consent.heardWithin(digest, Date.now() - now + interval)) {
        this.suppressed += 1
        continue
      }
      await this.#publish(kind, document)
      await this.#pause(1000 / this.#options.perSecond)
    }
  }

  /** One document; a failure (no peers yet, or too large for gossip) is logged and the next one goes on. */
  async #publish(kind: 'manifest' | 'revocation', document: unknown): Promise<void> {
    try {
      await this.#modules.host.publish('consent', encodeGossipMessage(kind, document))
      this.published += 1
    } catch (err) {
      this.#modules.log.debug({ err, kind }, 'consent announce failed')
    }
  }
}

/** Fisher-Yates, in place. */
function shuffle<T>(values: T[]): void {
  for (let i = values.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1))
    ;[values[i], values[j]] = [values[j] as T, values[i] as T]
  }
}
