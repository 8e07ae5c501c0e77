// <store>/snapshots/status.json, which `coop status` reads: rewritten atomically about once a
// second when the round state changed. It learns of changes from the round event stream.
import type { Logger } from 'pino'
import type { CoopHost } from '../p2p/host.ts'
import { writeSnapshot } from '../store/store.ts'
import { STATUS_RECENT_LOSSES, STATUS_WRITE_MS } from './constants.ts'
import { phaseOfRound, type Phase } from './schedule.ts'
import type { RoundState } from './state.ts'

interface RecentLoss {
  round: number
  phase: Phase
  loss: number
  evalLoss?: number
}

export interface StatusWriterModules {
  state: RoundState
  host: Pick<CoopHost, 'connectedPeers' | 'peerScore' | 'appScore' | 'penaltyCounts'>
  log: Logger
}

export class StatusWriter {
  readonly #publisher: boolean
  readonly #modules: StatusWriterModules
  readonly #recentLosses: RecentLoss[] = []
  readonly #unsubscribe: (() => void)[] = []
  #timer: NodeJS.Timeout | undefined
  #dirty = true
  #writing = false

  constructor(options: { publisher: boolean }, modules: StatusWriterModules) {
    this.#publisher = options.publisher
    this.#modules = modules
  }

  start(): void {
    const { events } = this.#modules.state
    this.#unsubscribe.push(
      events.onAny(() => {
        this.#dirty = true
      }),
      events.on('contributionPublished', (e) => this.#recordLoss(e.round, e.phase, e.loss)),
      events.on('evalLoss', (e) => this.#recordLoss(e.round, e.phase, Number.NaN, e.evalLoss)),
    )
    this.#timer = setInterval(() => void this.#write(), STATUS_WRITE_MS)
    this.#timer.unref()
  }

  /** Stops listening and writes the final snapshot (state 'stopped' once the engine is stopping). */
  async stop(): Promise<void> {
    clearInterval(this.#timer)
    this.#timer = undefined
    for (const unsubscribe of this.#unsubscribe.splice(0)) unsubscribe()
    this.#dirty = true
    await this.#write()
  }

  snapshot(): Record<string, unknown> {
    const { state, host } = this.#modules
    const latest = state.latestCheckpoint()
    const round = state.openRound()
    return {
      peerId: state.peerId,
      coop: state.coopId,
      pid: process.pid,
      updatedAt: new Date().toISOString(),
      publisher: this.#publisher,
      state: state.stopping ? 'stopped' : state.done ? 'done' : 'running',
      round: round ?? null,
      phase: round === undefined ? null : phaseOfRound(state.plan, round),
      totalRounds: state.untilRound,
      contributionsThisRound: round === undefined ? 0 : state.contributionsFor(round).length,
      latestCheckpoint:
        latest === undefined
          ? null
          : {
              id: latest.id,
              phase: latest.phase,
              round: latest.round,
              verification: latest.verification,
              dir: latest.dir,
            },
      checkpoints: state.checkpoints().map((c) => ({
        id: c.id,
        phase: c.phase,
        round: c.round,
        contributions: c.predicate.contributions.length,
        verification: c.verification,
      })),
      peers: host.connectedPeers(),
      recentLosses: [...this.#recentLosses],
      // Evidence against peers (docs/THREAT-MODEL.md §1, §10): what `coop status` reports.
      equivocations: state.evidence.equivocations().map((e) => ({
        phase: e.phase,
        round: e.round,
        adopted: e.adopted,
        conflicting: e.conflicting,
        signers: e.signers,
        seenAt: e.seenAt,
      })),
      refusedPayloads: state.evidence.refusals().map((r) => ({
        round: r.round,
        contribution: r.contribution,
        contributor: r.contributor,
        code: r.code,
        refusedAt: r.refusedAt,
      })),
      penalized: this.#penalized(),
    }
  }

  /** Peers charged with a penalty here (connected ones and those named by evidence), with their scores. */
  #penalized(): Record<string, { score: number; appScore: number; penalties: Record<string, number> }> {
    const { state, host } = this.#modules
    const peers = new Set([
      ...host.connectedPeers(),
      ...state.evidence.refusals().map((r) => r.contributor),
      ...state.evidence.equivocations().flatMap((e) => e.signers),
    ])
    const out: Record<string, { score: number; appScore: number; penalties: Record<string, number> }> = {}
    for (const peer of [...peers].sort()) {
      const penalties = host.penaltyCounts(peer) as Record<string, number>
      if (Object.keys(penalties).length === 0) continue
      out[peer] = { score: host.peerScore(peer), appScore: host.appScore(peer), penalties }
    }
    return out
  }

  /** A local contribution's training loss, or (from the publisher) the eval loss of the round's checkpoint. */
  #recordLoss(round: number, phase: Phase, loss: number, evalLoss?: number): void {
    const existing = this.#recentLosses.find((l) => l.round === round && l.phase === phase)
    if (existing !== undefined) {
      if (evalLoss !== undefined) existing.evalLoss = evalLoss
      return
    }
    this.#recentLosses.push({ round, phase, loss, ...(evalLoss === undefined ? {} : { evalLoss }) })
    if (this.#recentLosses.length > STATUS_RECENT_LOSSES) this.#recentLosses.shift()
  }

  async #write(): Promise<void> {
    if (!this.#dirty || this.#writing) return
    this.#dirty = false
    this.#writing = true
    try {
      await writeSnapshot(this.#modules.state.store.dir, 'status', this.snapshot())
    } catch (err) {
      this.#modules.log.debug({ err }, 'status snapshot failed')
    } finally {
      this.#writing = false
    }
  }
}
