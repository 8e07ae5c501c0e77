// Application-specific score (gossipsub P5): each misbehaviour we detect ourselves (a REJECTed
// message, a flood, a blob with wrong bytes) costs points that decay with a half-life, so a
// peer that misbehaved once can recover while a persistent one stays graylisted.
import { PENALTY_HALF_LIFE_MS, PENALTY_MAX_TRACKED_PEERS } from '../constants.ts'
import type { GossipErrorCode } from './gossip-errors.ts'

const MAX_TRACKED_PEERS = PENALTY_MAX_TRACKED_PEERS
/** A penalty this small no longer moves a score across any threshold. */
const FORGET_BELOW_POINTS = 0.01

interface PenaltyRecord {
  points: number
  updatedAt: number
  byCode: Map<GossipErrorCode, number>
}

export class PeerPenalties {
  readonly #records = new Map<string, PenaltyRecord>()
  readonly #halfLifeMs: number
  readonly #now: () => number

  constructor(options: { halfLifeMs?: number; now?: () => number } = {}) {
    this.#halfLifeMs = options.halfLifeMs ?? PENALTY_HALF_LIFE_MS
    this.#now = options.now ?? Date.now
  }

  add(peerId: string, code: GossipErrorCode, points: number): void {
    if (!(points > 0) || !Number.isFinite(points))
      throw new RangeError('penalty points must be a positive finite number')
    const record = this.#decayed(peerId) ?? { points: 0, updatedAt: this.#now(), byCode: new Map() }
    record.points += points
    record.byCode.set(code, (record.byCode.get(code) ?? 0) + 1)
    this.#records.set(peerId, record)
    if (this.#records.size > MAX_TRACKED_PEERS) this.#prune()
  }

  /** Forgets peers whose penalty has decayed to nothing, so peer churn cannot grow the map forever. */
  #prune(): void {
    for (const peerId of [...this.#records.keys()]) {
      if ((this.#decayed(peerId)?.points ?? 0) < FORGET_BELOW_POINTS) this.#records.delete(peerId)
    }
  }

  /** Current penalty points (non-negative); the app score is minus this. */
  points(peerId: string): number {
    return this.#decayed(peerId)?.points ?? 0
  }

  /** How many times each code was charged to the peer (not decayed: for status and tests). */
  counts(peerId: string): Record<string, number> {
    return Object.fromEntries(this.#records.get(peerId)?.byCode ?? [])
  }

  peers(): string[] {
    return [...this.#records.keys()]
  }

  #decayed(peerId: string): PenaltyRecord | undefined {
    const record = this.#records.get(peerId)
    if (record === undefined) return undefined
    const now = this.#now()
    const elapsed = now - record.updatedAt
    if (elapsed > 0) {
      record.points *= 0.5 ** (elapsed / this.#halfLifeMs)
      record.updatedAt = now
    }
    return record
  }
}
