// The DiLoCo round engine: composes the round components around one shared state and starts and
// stops them in order (each one's stop() undoes its start(), as js-libp2p's Startable).
//
// One round r (phase p) runs like this on every peer:
//   1. the base is the adopted checkpoint of round r-1 in phase p (a genesis checkpoint for the
//      first round of a phase, signed by the publisher);
//   2. trainer-loop.ts runs H local Adam steps from the base on the consented images, compresses
//      base - local, stores the payload blob, commits and gossips a ContributionStatement;
//   3. every peer's gossip.ts validates it (validate.ts), stores it, and fetcher.ts prefetches
//      its payload; the publisher (publisher.ts) freezes the close set at quorum or deadline
//      (persisted before aggregating, so a crash re-aggregates the same set), aggregates, applies
//      the outer Nesterov step, signs, gossips and adopts the checkpoint;
//   4. every other peer's verifier.ts recomputes the checkpoint bit-exactly from the listed
//      payloads and adopts it (state.ts) only if the file digests agree.
// announcer.ts re-announces what restarted peers and joiners need; status.ts writes the status
// snapshot from the event stream (events.ts). Everything a restart needs is in the store.
import type { CoopCharter } from '../../protocol/charter.ts'
import type { DsseEnvelope } from '../../protocol/dsse.ts'
import type { Ed25519PrivateKey } from '../../protocol/keys.ts'
import type { Logger } from 'pino'
import type { ConsentBook } from '../consent/book.ts'
import type { CoopHost } from '../p2p/host.ts'
import type { CoopStore } from '../store/store.ts'
import { PayloadAdmission } from './admission.ts'
import { Announcer } from './announcer.ts'
import { assertCharterComponent, importComponent, type AutoencoderComponent } from './component.ts'
import { RoundError } from './errors.ts'
import type { RoundEvents } from './events.ts'
import { Fetcher } from './fetcher.ts'
import { RoundGossip } from './gossip.ts'
import { cleanCheckpointTemps } from './layout.ts'
import { Publisher } from './publisher.ts'
import { genesisRound, type RoundPlan } from './schedule.ts'
import { RoundState } from './state.ts'
import { StatusWriter } from './status.ts'
import { TrainerLoop } from './trainer-loop.ts'
import { TrainerPool, type TrainerFactory } from './trainers.ts'
import { Verifier } from './verifier.ts'

export type { RoundTrainer, TrainerFactory } from './trainers.ts'

export interface RoundEngineOptions {
  charter: CoopCharter
  coopId: string
  privateKey: Ed25519PrivateKey
  /** Close rounds and sign checkpoints (the key must be one of the charter's publishers). */
  publisher: boolean
  /** Run local training and contribute. */
  train: boolean
  /** Stop after the checkpoint of this global round is adopted (default: the charter's last round). */
  untilRound?: number
  /** Digests of the consented items the local dataset actually holds (what the trainer can see). */
  datasetItems: ReadonlySet<string>
  /** The signed charter (DSSE envelope), copied into every checkpoint directory. */
  charterEnvelope: DsseEnvelope
  /** The component autoencoder the charter pins, read from a checkpoint directory (imported at start). */
  autoencoderComponent?: AutoencoderComponent
}

export interface RoundEngineModules {
  store: CoopStore
  host: CoopHost
  consent: ConsentBook
  trainers: TrainerFactory
  log: Logger
}

export class RoundEngine {
  readonly #options: RoundEngineOptions
  readonly #log: Logger
  readonly #state: RoundState
  readonly #fetcher: Fetcher
  readonly #admission: PayloadAdmission
  readonly #trainers: TrainerPool
  readonly #verifier: Verifier
  readonly #gossip: RoundGossip
  readonly #trainerLoop: TrainerLoop
  readonly #publisher: Publisher | undefined
  readonly #announcer: Announcer
  readonly #status: StatusWriter

  constructor(options: RoundEngineOptions, modules: RoundEngineModules) {
    const { store, host, consent, log } = modules
    const peerId = host.peerId
    if (options.publisher && !options.charter.publishers.includes(peerId))
      throw new RoundError('NOT_A_PUBLISHER', `this node (${peerId}) is not a publisher of the charter`)
    if (options.publisher && options.charter.threshold > 1)
      throw new RoundError(
        'UNSUPPORTED',
        'publishing with a signing threshold above 1 needs co-signing, which this node does not implement',
      )
    this.#options = options
    this.#log = log
    const state = new RoundState(
      {
        charter: options.charter,
        coopId: options.coopId,
        charterEnvelope: options.charterEnvelope,
        peerId,
        ...(options.untilRound === undefined ? {} : { untilRound: options.untilRound }),
      },
      { store, log },
    )
    this.#state = state
    this.#fetcher = new Fetcher({ state, host, consent, log })
    const fetcher = this.#fetcher
    this.#admission = new PayloadAdmission({ state, fetcher, host, log })
    const admission = this.#admission
    this.#trainers = new TrainerPool({ state, fetcher, consent, factory: modules.trainers, log })
    this.#verifier = new Verifier({ state, fetcher, host, consent, log })
    // Installs the contributions and checkpoints validators on the host.
    this.#gossip = new RoundGossip({
      state,
      consent,
      fetcher,
      admission,
      verifier: this.#verifier,
      host,
      log,
    })
    const components = { state, fetcher, trainers: this.#trainers, gossip: this.#gossip, consent, log }
    this.#trainerLoop = new TrainerLoop(
      { privateKey: options.privateKey, train: options.train, datasetItems: options.datasetItems },
      components,
    )
    this.#publisher = options.publisher
      ? new Publisher({ ...components, admission, host, privateKey: options.privateKey })
      : undefined
    this.#announcer = new Announcer({ publisher: options.publisher }, { state, gossip: this.#gossip, log })
    this.#status = new StatusWriter({ publisher: options.publisher }, { state, host, log })
  }

  get plan(): RoundPlan {
    return this.#state.plan
  }

  /** What happens in the rounds, for status, metrics and live views. */
  get events(): RoundEvents {
    return this.#state.events
  }

  /** Resolves when the node has adopted the checkpoint of its last round (or stop() was called). */
  get finished(): Promise<void> {
    return this.#trainerLoop.finished
  }

  async start(): Promise<void> {
    const state = this.#state
    await cleanCheckpointTemps(state.store.dir)
    await state.load()
    const component = this.#options.autoencoderComponent
    if (component !== undefined) {
      assertCharterComponent(state.charter, component)
      await importComponent(state, component, this.#log)
    }
    if (
      this.#options.publisher &&
      state.charter.phases.autoencoder.mode === 'component' &&
      state.autoencoderCheckpoint() === undefined &&
      state.checkpointAt('unet', genesisRound(state.plan, 'unet')) === undefined
    )
      throw new RoundError(
        'MISSING_PARENT',
        'the charter pins a component autoencoder: start the publisher with --autoencoder <checkpoint dir>',
      )
    this.#fetcher.start()
    this.#trainers.start()
    this.#verifier.start()
    this.#gossip.start()
    this.#announcer.start()
    this.#status.start()
    this.#trainerLoop.start()
    this.#publisher?.start()
  }

  /** Stops in reverse order: no new work, wait for the work in flight, free the trainers, write the last status. */
  async stop(): Promise<void> {
    this.#state.stopping = true
    this.#announcer.stop()
    this.#state.changed()
    await Promise.allSettled([this.#trainerLoop.stop(), this.#publisher?.stop(), this.#verifier.stop()])
    this.#gossip.stop()
    this.#trainers.stop()
    this.#fetcher.stop()
    await this.#status.stop()
  }

  /** The DSSE envelope of an adopted checkpoint or an accepted contribution, by statement digest (served to peers catching up). */
  async envelopeOf(statementDigest: string): Promise<Uint8Array | undefined> {
    return await this.#state.envelopeOf(statementDigest)
  }

  statusSnapshot(): Record<string, unknown> {
    return this.#status.snapshot()
  }
}
