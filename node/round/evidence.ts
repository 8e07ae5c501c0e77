// What the round engine keeps as evidence against peers, durably: payloads that failed
// admission (they never count toward a quorum again, also after a restart) and checkpoints that
// equivocate (a second one signed for a round that has one). `coop status`, the event stream and
// the logs report them; nothing here is ever deleted.
import type { CoopStore } from '../store/store.ts'
import { equivocationKey, refusedKey, type EquivocationRecord, type RefusedPayloadRecord } from './records.ts'
import type { Phase } from './schedule.ts'

const compare = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0)

export class RoundEvidence {
  readonly #store: CoopStore
  /** By contribution id: each statement that named a refused payload is evidence against its signer. */
  readonly #refused = new Map<string, RefusedPayloadRecord>()
  /** Refused payloads by delta digest, with why: the same bytes named again are refused at once. */
  readonly #refusedDeltas = new Map<string, string>()
  /** By `<phase>/<round>`, then the conflicting checkpoint's id. */
  readonly #equivocations = new Map<string, Map<string, EquivocationRecord>>()

  constructor(store: CoopStore) {
    this.#store = store
  }

  async load(): Promise<void> {
    for (const [, value] of await this.#store.rounds.entries({ gte: 'refused/', lt: 'refused0' })) {
      this.#rememberRefusal(value as RefusedPayloadRecord)
    }
    for (const [, value] of await this.#store.rounds.entries({ gte: 'equivocation/', lt: 'equivocation0' }))
      this.#remember(value as EquivocationRecord)
  }

  /** Why a payload was refused (its code), if it was. */
  refusedPayload(delta: string): string | undefined {
    return this.#refusedDeltas.get(delta)
  }

  /** The refusal recorded for a contribution, if any. */
  refusal(contribution: string): RefusedPayloadRecord | undefined {
    return this.#refused.get(contribution)
  }

  /** Every refused payload, oldest first. */
  refusals(): RefusedPayloadRecord[] {
    return [...this.#refused.values()].sort((a, b) => compare(a.refusedAt, b.refusedAt))
  }

  /** Records durably that a payload failed admission. */
  async refuse(record: RefusedPayloadRecord): Promise<void> {
    if (this.#refused.has(record.contribution)) return
    await this.#store.rounds.put(refusedKey(record.contribution), record)
    this.#rememberRefusal(record)
  }

  #rememberRefusal(record: RefusedPayloadRecord): void {
    this.#refused.set(record.contribution, record)
    if (!this.#refusedDeltas.has(record.delta)) this.#refusedDeltas.set(record.delta, record.code)
  }

  /** Every piece of equivocation evidence, by round, in the order seen. */
  equivocations(): EquivocationRecord[] {
    return [...this.#equivocations.values()]
      .flatMap((m) => [...m.values()])
      .sort((a, b) => a.round - b.round || compare(a.seenAt, b.seenAt))
  }

  hasEquivocation(phase: Phase, round: number, id: string): boolean {
    return this.#equivocations.get(`${phase}/${round}`)?.has(id) ?? false
  }

  /** Conflicting checkpoints kept for a round (the caller bounds it). */
  equivocationCount(phase: Phase, round: number): number {
    return this.#equivocations.get(`${phase}/${round}`)?.size ?? 0
  }

  /** Keeps the evidence durably; the conflicting envelope's blob is written by the caller first. */
  async recordEquivocation(record: EquivocationRecord): Promise<void> {
    await this.#store.rounds.put(equivocationKey(record.phase, record.round, record.conflicting), record)
    this.#remember(record)
  }

  #remember(record: EquivocationRecord): void {
    const key = `${record.phase}/${record.round}`
    let round = this.#equivocations.get(key)
    if (round === undefined) {
      round = new Map()
      this.#equivocations.set(key, round)
    }
    round.set(record.conflicting, record)
  }
}
