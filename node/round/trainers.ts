// The live trainer sessions (trainer/session.ts), one phase at a time. The training loop trains
// with them and the publisher takes genesis weights and eval losses from them; a revocation or
// an expiry of consent reaches every live session before its next step.
import type { Logger } from 'pino'
import type { ConsentBook } from '../consent/book.ts'
import { RoundError } from './errors.ts'
import type { Fetcher } from './fetcher.ts'
import type { Phase } from './schedule.ts'
import type { RoundState } from './state.ts'
import { decodeTensors, type NamedTensor } from './tensors.ts'

/** The part of trainer/session.ts's TrainerSession the engine drives. */
export interface RoundTrainer {
  getWeights(): Promise<NamedTensor[]>
  setWeights(weights: NamedTensor[]): Promise<void>
  trainSteps(
    n: number,
    onStep?: (s: { step: number; loss: number; imgPerSec: number }) => void,
  ): Promise<{ lossMean: number; samples: number }>
  evalLoss(): Promise<number>
  excludeItems(sha256s: Iterable<string>): void
  dispose(): void
}

/** Builds a trainer for a phase; `autoencoder` is the adopted autoencoder weights for the U-Net phase. */
export type TrainerFactory = (phase: Phase, autoencoder: NamedTensor[] | undefined) => Promise<RoundTrainer>

export interface TrainerPoolModules {
  state: RoundState
  fetcher: Fetcher
  consent: ConsentBook
  factory: TrainerFactory
  log: Logger
}

export class TrainerPool {
  readonly #modules: TrainerPoolModules
  readonly #trainers = new Map<Phase, RoundTrainer>()
  #unsubscribe: (() => void) | undefined

  constructor(modules: TrainerPoolModules) {
    this.#modules = modules
  }

  start(): void {
    const { consent, state, log } = this.#modules
    this.#unsubscribe = consent.onWithdrawn((items, reason) => {
      for (const trainer of this.#trainers.values()) trainer.excludeItems(items)
      log.info({ items: items.length, reason }, 'withdrawn items excluded from training')
      state.changed()
    })
  }

  /** Stops listening for revocations and frees every session's memory. */
  stop(): void {
    this.#unsubscribe?.()
    this.#unsubscribe = undefined
    for (const trainer of this.#trainers.values()) trainer.dispose()
    this.#trainers.clear()
  }

  /** The live session of a phase, if one was built. */
  loaded(phase: Phase): RoundTrainer | undefined {
    return this.#trainers.get(phase)
  }

  /**
   * Frees a phase's session so the next forPhase() builds a fresh one: after a rollback, its
   * optimizer moments and EMA hold what the superseded rounds learned.
   */
  discard(phase: Phase): void {
    this.#trainers.get(phase)?.dispose()
    this.#trainers.delete(phase)
  }

  /** The session of a phase, built (and the other phase's freed) when needed. */
  async forPhase(phase: Phase): Promise<RoundTrainer> {
    const existing = this.#trainers.get(phase)
    if (existing !== undefined) return existing
    let autoencoder: NamedTensor[] | undefined
    if (phase === 'unet') autoencoder = await this.#autoencoderWeights()
    // Only one phase trains at a time: free the other one's memory.
    for (const [other, trainer] of this.#trainers) {
      trainer.dispose()
      this.#trainers.delete(other)
    }
    const trainer = await this.#modules.factory(phase, autoencoder)
    trainer.excludeItems(this.#modules.consent.withdrawnItems())
    this.#trainers.set(phase, trainer)
    return trainer
  }

  /** The autoencoder the U-Net phase depends on: the last cooperative autoencoder checkpoint. */
  async #autoencoderWeights(): Promise<NamedTensor[]> {
    const { state, fetcher } = this.#modules
    const record = state.autoencoderCheckpoint()
    if (record !== undefined) return decodeTensors(await fetcher.requireBlob(record.files.model, []))
    // A peer that joined during the U-Net phase never adopted the autoencoder checkpoint: the
    // adopted U-Net checkpoint names it (model digest, signed by the publisher), fetch it by that.
    const unet = state.latestCheckpoint('unet')
    const component = unet?.predicate.components.find((c) => c.role === 'autoencoder')
    if (unet === undefined || component === undefined)
      throw new RoundError('MISSING_PARENT', 'the U-Net phase needs the final autoencoder checkpoint')
    return decodeTensors(await fetcher.requireBlob(component.checkpoint, unet.signers))
  }
}
