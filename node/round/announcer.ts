// Every periodic re-announcement this node makes, in one place, so that restarted peers and late
// joiners catch up without a request protocol:
//   - a publisher re-announces its latest checkpoint,
//   - a trainer re-announces its contribution to the open round until the round closes,
//   - every node re-announces its own consent manifests and every revocation it holds (often
//     while peers are still joining, then at a calm pace).
import type { Logger } from 'pino'
import type { DsseEnvelope } from '../../protocol/dsse.ts'
import type { ConsentBook } from '../consent/book.ts'
import type { CoopHost } from '../p2p/host.ts'
import { encodeGossipMessage } from '../validation/messages.ts'
import {
  CHECKPOINT_REANNOUNCE_MS,
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
  #consentTimer: NodeJS.Timeout | undefined
  #consentAnnouncements = 0
  #running = false

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
    this.#scheduleConsent()
  }

  stop(): void {
    this.#running = false
    clearInterval(this.#roundTimer)
    clearTimeout(this.#consentTimer)
    this.#roundTimer = undefined
    this.#consentTimer = undefined
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
        // A round announced closed (we are catching up) takes no more contributions.
        if (local !== undefined && state.mayContribute(local.phase, round)) {
          const bytes = await state.store.getBlob(local.envelope)
          if (bytes !== undefined) await gossip.publishContribution(parseEnvelope(bytes))
        }
      }
    } catch (err) {
      log.debug({ err }, 're-announcement failed')
    }
  }

  // Consent early and often while peers are still joining, then at a calm pace.
  #scheduleConsent(): void {
    if (!this.#running) return
    const delay =
      this.#consentAnnouncements < CONSENT_EARLY_ANNOUNCEMENTS
        ? CONSENT_EARLY_REANNOUNCE_MS
        : MANIFEST_REANNOUNCE_MS
    this.#consentAnnouncements += 1
    this.#consentTimer = setTimeout(() => {
      void this.#announceConsent().finally(() => this.#scheduleConsent())
    }, delay)
    this.#consentTimer.unref()
  }

  async #announceConsent(): Promise<void> {
    const { consent } = this.#modules
    for (const { verified, local } of consent.manifests()) {
      if (!local) continue
      await this.#publishConsent('manifest', verified.manifest, 'manifest announce failed')
    }
    for (const revocation of consent.revocations())
      await this.#publishConsent('revocation', revocation.revocation, 'revocation announce failed')
  }

  /** One document; a failure (no peers yet, or too large for gossip) is logged and the next one goes on. */
  async #publishConsent(kind: 'manifest' | 'revocation', document: unknown, failed: string): Promise<void> {
    try {
      await this.#modules.host.publish('consent', encodeGossipMessage(kind, document))
    } catch (err) {
      this.#modules.log.debug({ err }, failed)
    }
  }
}

/** A stored envelope blob: our own canonical bytes, written when it was signed or adopted. */
function parseEnvelope(bytes: Uint8Array): DsseEnvelope {
  return JSON.parse(new TextDecoder().decode(bytes)) as DsseEnvelope
}
