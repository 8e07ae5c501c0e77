// The consent topic: its validator (node/validation/consent.ts, reading the consent book) and the
// handler that records what the validator accepted. The handler takes the validator's verified
// form, so a gossiped manifest or revocation is parsed and verified once. A revocation held for a
// manifest that arrives later and proves forged charges the peer that sent it.
import type { Logger } from 'pino'
import { errorCode } from '../../protocol/coded-error.ts'
import type { CoopCharter } from '../../protocol/charter.ts'
import type { VerifiedManifest } from '../../protocol/manifest.ts'
import type { VerifiedRevocation } from '../../protocol/revocation.ts'
import { PENALTY_REJECT } from '../constants.ts'
import type { AcceptedMessage, CoopHost } from '../p2p/host.ts'
import type { ChainValidator } from '../validation/chain.ts'
import { createConsentValidator } from '../validation/consent.ts'
import type { ConsentBook } from './book.ts'

export interface ConsentGossipModules {
  consent: ConsentBook
  host: Pick<CoopHost, 'setValidator' | 'onMessage' | 'penalize'>
  log: Logger
}

export class ConsentGossip {
  readonly validator: ChainValidator
  readonly #modules: ConsentGossipModules
  readonly #unsubscribe: (() => void)[] = []

  constructor(
    options: Pick<CoopCharter, 'acceptedLicenses' | 'admission' | 'intendedUse'>,
    modules: ConsentGossipModules,
  ) {
    this.#modules = modules
    this.validator = createConsentValidator(options, modules.consent)
    // Installed at once: until a topic has a validator it accepts nothing.
    modules.host.setValidator('consent', this.validator)
  }

  start(): void {
    const { consent, host, log } = this.#modules
    this.#unsubscribe.push(
      host.onMessage('consent', (msg) => this.#onMessage(msg)),
      consent.onRefusedRevocation(({ sender, code, revocation }) => {
        // Only a gossip author is charged; 'local' is this node's own inbox.
        if (sender === 'local') return
        host.penalize(sender, code, PENALTY_REJECT)
        log.warn({ peer: sender, code, revocation }, 'sender of a forged revocation penalised')
      }),
    )
  }

  stop(): void {
    for (const unsubscribe of this.#unsubscribe.splice(0)) unsubscribe()
  }

  async #onMessage(msg: AcceptedMessage): Promise<void> {
    const { consent, log } = this.#modules
    const accepted = this.validator.verified(msg.data)
    if (accepted === undefined) return
    if (accepted.kind === 'manifest') {
      const manifest = accepted.verified as VerifiedManifest
      consent.heard(manifest.digest)
      const { added, verified } = await consent.addVerifiedManifest(manifest, false)
      if (added)
        log.info(
          { manifest: verified.digest, custodian: verified.custodian, items: verified.items.length },
          'manifest received',
        )
    } else if (accepted.kind === 'revocation') {
      const revocation = accepted.verified as VerifiedRevocation
      consent.heard(revocation.digest)
      try {
        if ((await consent.addVerifiedRevocation(revocation, msg.from)) === 'applied')
          log.info({ revocation: revocation.digest, manifest: revocation.manifest }, 'revocation received')
      } catch (err) {
        // The book changed between validation and here (another copy was handled first): nothing to do.
        log.debug({ revocation: revocation.digest, code: errorCode(err) }, 'revocation not recorded')
      }
    }
  }
}
