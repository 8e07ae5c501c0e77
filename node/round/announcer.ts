// Every periodic re-announcement this node makes, in one place, so that restarted peers and late
// joiners catch up without a request protocol:
//   - a publisher re-announces its latest checkpoint,
//   - a trainer re-announces its contribution to the open round until the round closes,
//   - every node re-announces its own consent manifests and the revocations it applied (often
//     while peers are still joining, then at a calm pace), never faster than
//     CONSENT_ANNOUNCE_PER_SECOND and skipping any document a peer announced within the interval
//     (Trickle-style suppression): however many documents the book holds, re-announcing them
//     stays far inside every peer's rate limit, and what everyone holds is not repeated by all.
//     Only documents every honest peer accepts are repeated: valid, not fully revoked manifests
//     and revocations checked against their manifest; never a revocation held for an unknown one.
import type { Logger } from 'pino'
import type { DsseEnvelope } from '../../protocol/dsse.ts'
import type { ConsentBook } from '../consent/book.ts'
import type { CoopHost } from '../p2p/host.ts'
import { encodeGossipMessage } from '../validation/messages.ts'
import { manifestValidAt } from '../consent/book.ts'
import {
  CHECKPOINT_REANNOUNCE_MS,
  CONSENT_ANNOUNCE_PER_SECOND,
  CONSENT_EARLY_ANNOUNCEMENTS,
  CONSENT_EARLY_REANNOUNCE_MS,
  CONTRIBUTION_REANNOUNCE_MS,
  MANIFEST_REANNOUNCE_MS,
} from './constants.ts'
import type { RoundGossip } from './gossip.ts'
import { localKey, type LocalRoundRecord } from './records.ts'
import type { RoundState } from './state.ts'

export interface AnnouncerModules {
  state: RoundState
  gossip: RoundGossip
  consent: ConsentBook
  host: Pick<CoopHost, 'publish'>
  log: Logger
}

export class Announcer {
  readonly #publisher: boolean
  readonly #modules: AnnouncerModules
  #roundTimer: NodeJS.Timeout | undefined
  #consentLoop: Promise<void> | undefined
  /** Wakes the consent loop's current pause early (at stop). */
  #wake: (() => void) | undefined
  #running = false
  /** Consent documents published since start (tests and status read it). */
  consentPublished = 0

  constructor(options: { publisher: boolean }, modules: AnnouncerModules) {
    this.#publisher = options.publisher
    this.#modules = modules
  }

  start(): void {
    this.#running = true
    this.#roundTimer = setInterval(
      () => void this.#announceRound(),
      Math.min(CHECKPOINT_REANNOUNCE_MS, CONTRIBUTION_REANNOUNCE_MS),
    )
    this.#roundTimer.unref()
    this.#consentLoop = this.#announceConsentForever()
  }

  async stop(): Promise<void> {
    this.#running = false
    clearInterval(this.#roundTimer)
    this.#roundTimer = undefined
    this.#wake?.()
    await this.#consentLoop
    this.#consentLoop = undefined
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

  async #announceRound(): Promise<void> {
    const { state, gossip, log } = this.#modules
    if (state.stopping) return
    try {
      // Publishers re-announce the newest checkpoint so restarted peers and joiners catch up.
      if (this.#publisher) {
        const latest = state.latestCheckpoint()
        // A component's provenance is another cooperative's: our peers' validators would refuse it.
        if (latest !== undefined && latest.verification !== 'component') {
          const bytes = await state.store.getBlob(latest.envelope)
          if (bytes !== undefined) await gossip.publishCheckpoint(parseEnvelope(bytes))
        }
      }
      // Trainers re-announce their contribution to the open round until it closes, so a
      // publisher that restarted (and never stored it) still receives it.
      const round = state.openRound()
      if (round !== undefined) {
        const local = (await state.store.rounds.get(localKey(round))) as LocalRoundRecord | undefined
        if (local !== undefined) {
          const bytes = await state.store.getBlob(local.envelope)
          if (bytes !== undefined) await gossip.publishContribution(parseEnvelope(bytes))
        }
      }
    } catch (err) {
      log.debug({ err }, 're-announcement failed')
    }
  }

  // Consent early and often while peers are still joining, then at a calm pace.
  async #announceConsentForever(): Promise<void> {
    for (let cycle = 0; this.#running; cycle++) {
      const interval =
        cycle < CONSENT_EARLY_ANNOUNCEMENTS ? CONSENT_EARLY_REANNOUNCE_MS : MANIFEST_REANNOUNCE_MS
      await this.#pause(interval)
      if (!this.#running) return
      await this.#announceConsent(interval)
    }
  }

  /** One pass over the documents to repeat, paced, skipping those a peer announced within `interval`. */
  async #announceConsent(interval: number): Promise<void> {
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
    for (const { kind, digest, document } of documents) {
      if (!this.#running) return
      // Someone announced it within the interval: our peers have it, repeating it is noise.
      if (consent.heardWithin(digest, interval)) continue
      await this.#publishConsent(kind, document, `${kind} announce failed`)
      await this.#pause(1000 / CONSENT_ANNOUNCE_PER_SECOND)
    }
  }

  /** One document; a failure (no peers yet, or too large for gossip) is logged and the next one goes on. */
  async #publishConsent(kind: 'manifest' | 'revocation', document: unknown, failed: string): Promise<void> {
    try {
      await this.#modules.host.publish('consent', encodeGossipMessage(kind, document))
      this.consentPublished += 1
    } catch (err) {
      this.#modules.log.debug({ err }, failed)
    }
  }
}

/** A stored envelope blob: our own canonical bytes, written when it was signed or adopted. */
function parseEnvelope(bytes: Uint8Array): DsseEnvelope {
  return JSON.parse(new TextDecoder().decode(bytes)) as DsseEnvelope
}
