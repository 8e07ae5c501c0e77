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
  readonly #refused = new Map<string, RefusedPayloadRecord>()
  /** By `<phase>/<round>`, then the conflicting checkpoint's id. */
  readonly #equivocations = new Map<string, Map<string, EquivocationRecord>>()

  constructor(store: CoopStore) {
    this.#store = store
  }

  async load(): Promise<void> {
    for (const [, value] of await this.#store.rounds.entries({ gte: 'refused/', lt: 'refused0' })) {
      const record = value as RefusedPayloadRecord
      this.#refused.set(record.delta, record)
    }
    for (const [, value] of await this.#store.rounds.entries({ gte: 'equivocation/', lt: 'equivocation0' }))
      this.#remember(value as EquivocationRecord)
  }

  refusal(delta: string): RefusedPayloadRecord | undefined {
    return this.#refused.get(delta)
  }

  /** Every refused payload, oldest first. */
  refusals(): RefusedPayloadRecord[] {
    return [...this.#refused.values()].sort((a, b) => compare(a.refusedAt, b.refusedAt))
  }

  /** Records durably that a payload failed admission. */
  async refuse(record: RefusedPayloadRecord): Promise<void> {
    if (this.#refused.has(record.delta)) return
    await this.#store.rounds.put(refusedKey(record.delta), record)
    this.#refused.set(record.delta, record)
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
