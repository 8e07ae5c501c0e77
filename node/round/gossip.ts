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
import type { PayloadAdmission } from './admission.ts'
import type { ContributionRecord } from './records.ts'
import type { Fetcher } from './fetcher.ts'
import type { RoundState } from './state.ts'
import { validateCheckpoint, validateContribution } from './validate.ts'
import type { Verifier } from './verifier.ts'

export interface RoundGossipModules {
  state: RoundState
  consent: ConsentBook
  fetcher: Fetcher
  admission: PayloadAdmission
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
  /** Equivocating checkpoints between their validation and the refusal hook (one entry each, briefly). */
  readonly #equivocating = new Map<string, { verified: VerifiedProvenance; body: Uint8Array }>()
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
    const checkpoints = createCheckpointValidator({
      coopId: state.coopId,
      publishers: state.charter.publishers,
      threshold: state.charter.threshold,
      semantics: (verified, ctx) => {
        try {
          validateCheckpoint(state, verified)
        } catch (err) {
          // Kept for the refusal hook, which records the evidence once validation is over.
          if (isGossipValidationError(err) && err.code === 'EQUIVOCATION')
            this.#equivocating.set(verified.digest, { verified, body: ctx.body })
          throw err
        }
      },
    })
    this.checkpointValidator = Object.assign(
      async (input: GossipInput): Promise<void> => {
        try {
          await checkpoints(input)
        } catch (err) {
          this.#onCheckpointRefused(err, input)
          throw err
        }
      },
      { verified: checkpoints.verified },
    )
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

  /** After validation: a second checkpoint for an adopted round is evidence, kept and reported by the verifier. */
  #onCheckpointRefused(err: unknown, input: GossipInput): void {
    if (!isGossipValidationError(err) || err.code !== 'EQUIVOCATION') return
    const conflicting = err.detail?.conflicting
    const held = conflicting === undefined ? undefined : this.#equivocating.get(conflicting)
    if (conflicting !== undefined) this.#equivocating.delete(conflicting)
    const { state, verifier, log } = this.#modules
    if (held === undefined) return
    const p = held.verified.predicate
    const adopted = state.checkpointAt(p.phase, p.round)
    if (adopted === undefined) return
    const envelope = JSON.parse(new TextDecoder().decode(held.body)) as DsseEnvelope
    verifier
      .recordEquivocation(adopted, { verified: held.verified, envelope, from: input.propagationSource })
      .catch((e: unknown) => log.warn({ err: e }, 'equivocation evidence not recorded'))
  }

  async #onContribution(msg: AcceptedMessage): Promise<void> {
    const { state, admission, log } = this.#modules
    const accepted = this.contributionValidator.verified(msg.data)
    if (accepted === undefined) return
    const verified = accepted.verified as VerifiedContribution
    const envelope = accepted.message as DsseEnvelope
    const p = verified.predicate
    // Re-announcements validated while the first copy was being stored land here too.
    if (state.contribution(p.round, verified.digest) !== undefined || this.#storing.has(verified.digest))
      return
    this.#storing.add(verified.digest)
    let record: ContributionRecord
    try {
      record = await state.persistContribution(verified, envelope)
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
    // Every peer admits the payload (fetch, decode against the model, floor): the publisher
    // counts only admitted ones, and each peer charges a contributor whose payload fails.
    void admission.admit(record)
  }

  async #onCheckpoint(msg: AcceptedMessage): Promise<void> {
    const { state, verifier } = this.#modules
    const accepted = this.checkpointValidator.verified(msg.data)
    if (accepted === undefined) return
    const verified = accepted.verified as VerifiedProvenance
    // A publisher's (re-)announcement tells a restarted node where the cooperative is.
    if (!state.tipKnown) {
      state.tipKnown = true
      state.changed()
    }
    if (state.checkpointById(verified.digest) !== undefined) return
    verifier.enqueue({ verified, envelope: accepted.message as DsseEnvelope, from: msg.from })
  }
}
