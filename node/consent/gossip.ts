// The consent topic: its validator (node/validation/consent.ts, reading the consent book) and the
// handler that records what the validator accepted. The handler takes the validator's verified
// form, so a gossiped manifest or revocation is parsed and verified once.
import type { Logger } from 'pino'
import type { CoopCharter } from '../../protocol/charter.ts'
import type { VerifiedManifest } from '../../protocol/manifest.ts'
import type { VerifiedRevocation } from '../../protocol/revocation.ts'
import type { AcceptedMessage, CoopHost } from '../p2p/host.ts'
import type { ChainValidator } from '../validation/chain.ts'
import { createConsentValidator } from '../validation/consent.ts'
import type { ConsentBook } from './book.ts'

export interface ConsentGossipModules {
  consent: ConsentBook
  host: Pick<CoopHost, 'setValidator' | 'onMessage'>
  log: Logger
}

export class ConsentGossip {
  readonly validator: ChainValidator
  readonly #modules: ConsentGossipModules
  #unsubscribe: (() => void) | undefined

  constructor(
    options: { acceptedLicenses: CoopCharter['acceptedLicenses']; admission: CoopCharter['admission'] },
    modules: ConsentGossipModules,
  ) {
    this.#modules = modules
    this.validator = createConsentValidator(options, modules.consent)
    // Installed at once: until a topic has a validator it accepts nothing.
    modules.host.setValidator('consent', this.validator)
  }

  start(): void {
    this.#unsubscribe = this.#modules.host.onMessage('consent', (msg) => this.#onMessage(msg))
  }

  stop(): void {
    this.#unsubscribe?.()
    this.#unsubscribe = undefined
  }

  async #onMessage(msg: AcceptedMessage): Promise<void> {
    const { consent, log } = this.#modules
    const accepted = this.validator.verified(msg.data)
    if (accepted === undefined) return
    if (accepted.kind === 'manifest') {
      const { added, verified } = await consent.addVerifiedManifest(
        accepted.verified as VerifiedManifest,
        false,
      )
      if (added)
        log.info(
          { manifest: verified.digest, custodian: verified.custodian, items: verified.items.length },
          'manifest received',
        )
    } else if (accepted.kind === 'revocation') {
      const verified = await consent.addVerifiedRevocation(accepted.verified as VerifiedRevocation)
      if (verified !== undefined)
        log.info({ revocation: verified.digest, manifest: verified.manifest }, 'revocation received')
    }
  }
}
