// The contributions and checkpoints topics (as Lodestar's gossipHandlers.ts): their validators
// (node/validation/statements.ts's generic stages plus validate.ts's semantic stage), the
// handlers that act on what the validators accepted, reusing the verified form instead of
// parsing and verifying again, and publishing this node's own statements.
import type { Logger } from 'pino'
import type { VerifiedContribution } from '../../protocol/contribution.ts'
import type { DsseEnvelope } from '../../protocol/dsse.ts'
import type { VerifiedProvenance } from '../../protocol/provenance.ts'
import type { ConsentBook } from '../consent/book.ts'
import { isGossipValidationError } from '../p2p/gossip-errors.ts'
import type { GossipInput } from '../p2p/gossip-validator.ts'
import type { AcceptedMessage, CoopHost } from '../p2p/host.ts'
import type { ChainValidator } from '../validation/chain.ts'
import { encodeGossipMessage } from '../validation/messages.ts'
import { createCheckpointValidator, createContributionValidator } from '../validation/statements.ts'
import type { Fetcher } from './fetcher.ts'
import type { RoundState } from './state.ts'
import { validateCheckpoint, validateContribution } from './validate.ts'
import type { Verifier } from './verifier.ts'

export interface RoundGossipModules {
  state: RoundState
  consent: ConsentBook
  fetcher: Fetcher
  verifier: Verifier
  host: Pick<CoopHost, 'setValidator' | 'onMessage' | 'publish'>
  log: Logger
}

export class RoundGossip {
  readonly contributionValidator: ChainValidator
  readonly checkpointValidator: ChainValidator
  readonly #modules: RoundGossipModules
  /** Contributions whose handler is storing them right now. */
  readonly #storing = new Set<string>()
  readonly #unsubscribe: (() => void)[] = []

  constructor(modules: RoundGossipModules) {
    this.#modules = modules
    const { state, consent, host } = modules
    const contributions = createContributionValidator({
      coopId: state.coopId,
      admission: state.charter.admission,
      semantics: (verified) => validateContribution(state, consent, verified),
    })
    this.contributionValidator = Object.assign(
      async (input: GossipInput): Promise<void> => {
        try {
          await contributions(input)
        } catch (err) {
          this.#onContributionRefused(err, input)
          throw err
        }
      },
      { verified: contributions.verified },
    )
    this.checkpointValidator = createCheckpointValidator({
      coopId: state.coopId,
      publishers: state.charter.publishers,
      threshold: state.charter.threshold,
      semantics: (verified) => validateCheckpoint(state, verified),
    })
    // Installed at once: until a topic has a validator it accepts nothing.
    host.setValidator('contributions', this.contributionValidator)
    host.setValidator('checkpoints', this.checkpointValidator)
  }

  start(): void {
    const { host } = this.#modules
    this.#unsubscribe.push(
      host.onMessage('contributions', (msg) => this.#onContribution(msg)),
      host.onMessage('checkpoints', (msg) => this.#onCheckpoint(msg)),
    )
  }

  stop(): void {
    for (const unsubscribe of this.#unsubscribe.splice(0)) unsubscribe()
  }

  async publishContribution(envelope: DsseEnvelope): Promise<void> {
    try {
      await this.#modules.host.publish('contributions', encodeGossipMessage('contribution', envelope))
    } catch (err) {
      this.#modules.log.warn({ err }, 'contribution publish failed; will retry')
    }
  }

  async publishCheckpoint(envelope: DsseEnvelope): Promise<void> {
    try {
      await this.#modules.host.publish('checkpoints', encodeGossipMessage('checkpoint', envelope))
    } catch (err) {
      this.#modules.log.warn({ err }, 'checkpoint publish failed; will retry')
    }
  }

  /** After validation, never inside it: reports the refusal and fetches a manifest the sender named but we lack. */
  #onContributionRefused(err: unknown, input: GossipInput): void {
    if (!isGossipValidationError(err)) return
    this.#modules.state.events.emit('contributionRefused', {
      action: err.action,
      code: err.code,
      from: input.from,
    })
    const { manifest, custodian } = err.detail ?? {}
    if (err.code === 'UNKNOWN_MANIFEST' && manifest !== undefined && custodian !== undefined)
      void this.#modules.fetcher.fetchManifest(manifest, custodian)
  }

  async #onContribution(msg: AcceptedMessage): Promise<void> {
    const { state, fetcher, log } = this.#modules
    const accepted = this.contributionValidator.verified(msg.data)
    if (accepted === undefined) return
    const verified = accepted.verified as VerifiedContribution
    const envelope = accepted.message as DsseEnvelope
    const p = verified.predicate
    // Re-announcements validated while the first copy was being stored land here too.
    if (state.contribution(p.round, verified.digest) !== undefined || this.#storing.has(verified.digest))
      return
    this.#storing.add(verified.digest)
    try {
      await state.persistContribution(verified, envelope)
    } finally {
      this.#storing.delete(verified.digest)
    }
    log.info({ round: p.round, peer: msg.from, contribution: verified.digest }, 'contribution accepted')
    state.events.emit('contributionAccepted', {
      round: p.round,
      phase: p.phase,
      contribution: verified.digest,
      contributor: verified.contributor,
      from: msg.from,
    })
    state.changed()
    void fetcher.ensurePayload(verified.delta, [verified.contributor])
  }

  async #onCheckpoint(msg: AcceptedMessage): Promise<void> {
    const { state, verifier } = this.#modules
    const accepted = this.checkpointValidator.verified(msg.data)
    if (accepted === undefined) return
    const verified = accepted.verified as VerifiedProvenance
    if (state.checkpointById(verified.digest) !== undefined) return
    verifier.enqueue({ verified, envelope: accepted.message as DsseEnvelope, from: msg.from })
  }
}
