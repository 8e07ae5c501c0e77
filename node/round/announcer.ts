// The round's periodic re-announcements, so that restarted peers and late joiners catch up
// without a request protocol:
//   - a publisher re-announces its latest checkpoint,
//   - a trainer re-announces its contribution to the open round until the round closes.
// Consent documents are re-announced by node/consent/announcer.ts.
import type { Logger } from 'pino'
import type { DsseEnvelope } from '../../protocol/dsse.ts'
import { CHECKPOINT_REANNOUNCE_MS, CONTRIBUTION_REANNOUNCE_MS } from './constants.ts'
import type { RoundGossip } from './gossip.ts'
import { localKey, type LocalRoundRecord } from './records.ts'
import type { RoundState } from './state.ts'

export interface AnnouncerModules {
  state: RoundState
  gossip: RoundGossip
  log: Logger
}

export class Announcer {
  readonly #publisher: boolean
  readonly #modules: AnnouncerModules
  #roundTimer: NodeJS.Timeout | undefined

  constructor(options: { publisher: boolean }, modules: AnnouncerModules) {
    this.#publisher = options.publisher
    this.#modules = modules
  }

  start(): void {
    this.#roundTimer = setInterval(
      () => void this.#announceRound(),
      Math.min(CHECKPOINT_REANNOUNCE_MS, CONTRIBUTION_REANNOUNCE_MS),
    )
    this.#roundTimer.unref()
  }

  stop(): void {
    clearInterval(this.#roundTimer)
    this.#roundTimer = undefined
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
}

/** A stored envelope blob: our own canonical bytes, written when it was signed or adopted. */
function parseEnvelope(bytes: Uint8Array): DsseEnvelope {
  return JSON.parse(new TextDecoder().decode(bytes)) as DsseEnvelope
}
