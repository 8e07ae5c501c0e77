// What happens in the round engine, as a small typed event stream. Components emit; the status
// snapshot (status.ts) subscribes, and so can a metrics endpoint or a live terminal line without
// touching any component. Events carry ids and counts only, never peer-supplied free text.
// The pino log lines stay as they are: they are the `coop start` contract the demo parses.
import type { GossipAction, GossipErrorCode } from '../p2p/gossip-errors.ts'
import type { Verification } from './records.ts'
import type { Phase } from './schedule.ts'

export interface RoundEventMap {
  /** A new round is open here (its base is adopted); `phaseStarted` also fires for a phase's first round. */
  roundOpened: { round: number; phase: Phase }
  phaseStarted: { round: number; phase: Phase }
  /** Local training of a round began from its base. */
  roundStarted: { round: number; phase: Phase; steps: number; base: string }
  trainingStep: { round: number; phase: Phase; step: number; steps: number; loss: number; imgPerSec: number }
  /** This node's contribution is stored and gossiped. */
  contributionPublished: {
    round: number
    phase: Phase
    contribution: string
    samples: number
    loss: number
    bytes: number
  }
  /** A peer's contribution passed validation and is stored. */
  contributionAccepted: {
    round: number
    phase: Phase
    contribution: string
    contributor: string
    from: string
  }
  /** The contributions topic's validator refused a message (any stage). */
  contributionRefused: { action: GossipAction; code: GossipErrorCode; from: string }
  /** A stored contribution's payload failed admission (it never counts toward a quorum). */
  payloadRefused: { round: number; phase: Phase; contribution: string; contributor: string; code: string }
  /** The publisher dropped a member of a frozen close set it could not aggregate (durably recorded). */
  closeMemberDropped: { round: number; phase: Phase; contribution: string; code: string }
  /** A second, different checkpoint signed for a round: kept as evidence, never adopted. */
  equivocation: { round: number; phase: Phase; adopted: string; conflicting: string; signers: string[] }
  /** The publisher froze a round's close set. */
  roundClosing: {
    round: number
    phase: Phase
    contributions: number
    reason: 'quorum' | 'deadline' | 'rollback'
  }
  /** The publisher signed and adopted a round's checkpoint. */
  roundClosed: { round: number; phase: Phase; checkpoint: string; contributions: number; aggregateMs: number }
  evalLoss: { round: number; phase: Phase; evalLoss: number }
  /** A checkpoint record was committed to the store, however it was verified. */
  checkpointAdopted: {
    round: number
    phase: Phase
    checkpoint: string
    contributions: number
    verification: Verification
  }
  /** A checkpoint that passed gossip validation failed verification (recomputation, files). */
  checkpointRejected: { checkpoint: string; code: string | undefined }
  allRoundsDone: { rounds: number; checkpoint: string | undefined }
}

export type RoundEventName = keyof RoundEventMap

type Listener<K extends RoundEventName> = (detail: RoundEventMap[K]) => void
type AnyListener = <K extends RoundEventName>(name: K, detail: RoundEventMap[K]) => void

export class RoundEvents {
  readonly #listeners = new Map<RoundEventName, Set<(detail: never) => void>>()
  readonly #any = new Set<AnyListener>()
  readonly #onListenerError: (err: unknown, name: RoundEventName) => void

  /** `onListenerError` hears a subscriber that threw: a subscriber can never break the component emitting. */
  constructor(onListenerError: (err: unknown, name: RoundEventName) => void = () => undefined) {
    this.#onListenerError = onListenerError
  }

  /** Subscribes to one event; returns the unsubscribe function. */
  on<K extends RoundEventName>(name: K, listener: Listener<K>): () => void {
    let set = this.#listeners.get(name)
    if (set === undefined) {
      set = new Set()
      this.#listeners.set(name, set)
    }
    set.add(listener as (detail: never) => void)
    return () => set.delete(listener as (detail: never) => void)
  }

  /** Subscribes to every event; returns the unsubscribe function. */
  onAny(listener: AnyListener): () => void {
    this.#any.add(listener)
    return () => this.#any.delete(listener)
  }

  /** Calls the listeners synchronously, in subscription order. */
  emit<K extends RoundEventName>(name: K, detail: RoundEventMap[K]): void {
    for (const listener of this.#listeners.get(name) ?? []) {
      try {
        ;(listener as Listener<K>)(detail)
      } catch (err) {
        this.#onListenerError(err, name)
      }
    }
    for (const listener of this.#any) {
      try {
        listener(name, detail)
      } catch (err) {
        this.#onListenerError(err, name)
      }
    }
  }
}
