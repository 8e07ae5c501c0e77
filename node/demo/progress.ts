// The demo's view of the cooperative, folded from node events: what each peer is doing and
// what each round closed with. Pure state; live-view.ts draws it.
import type { NodeEvent } from './events.ts'

export type PeerActivity = 'starting' | 'training' | 'waiting' | 'stopping' | 'stopped' | 'failed'

export interface PeerProgress {
  name: string
  publisher: boolean
  activity: PeerActivity
  phase?: string
  round?: number
  step?: number
  steps?: number
  loss?: number
  imgPerSec?: number
  /** Training loss the peer reported with its contribution, per round. */
  roundLoss: Map<number, number>
  lastProblem?: string
  /** The tfjs backend the node chose. */
  backend?: string
}

export interface RoundProgress {
  round: number
  phase?: string
  contributions?: number
  digest?: string
  evalLoss?: number
  closedAtMs: number
}

export interface DemoProgress {
  startedAtMs: number
  peers: PeerProgress[]
  rounds: RoundProgress[]
}

export function createProgress(
  peers: { name: string; publisher: boolean }[],
  nowMs = Date.now(),
): DemoProgress {
  return {
    startedAtMs: nowMs,
    peers: peers.map((p) => ({ ...p, activity: 'starting', roundLoss: new Map() })),
    rounds: [],
  }
}

/** What changed, so the plain (non-TTY) view can print one line for the notable ones. */
export type ProgressChange = { notable: false } | { notable: true; line: string }

function upsertRound(progress: DemoProgress, round: number, nowMs: number): RoundProgress {
  let entry = progress.rounds.find((r) => r.round === round)
  if (entry === undefined) {
    entry = { round, closedAtMs: nowMs }
    progress.rounds.push(entry)
    progress.rounds.sort((a, b) => a.round - b.round)
  }
  return entry
}

/** Applies one event from peer `index`; returns a line worth printing when not on a TTY. */
export function applyEvent(
  progress: DemoProgress,
  index: number,
  event: NodeEvent,
  nowMs = Date.now(),
): ProgressChange {
  const peer = progress.peers[index]
  if (peer === undefined) return { notable: false }
  switch (event.kind) {
    case 'listening':
      peer.activity = 'waiting'
      return { notable: true, line: `${peer.name}: listening on ${event.addrs[0] ?? '?'}` }
    case 'dataset':
      if (event.backend !== undefined) peer.backend = event.backend
      return {
        notable: true,
        line: `${peer.name}: ${event.items} consented images loaded${event.backend === undefined ? '' : `, training on ${event.backend}`}`,
      }
    case 'phase':
      peer.phase = event.phase
      return { notable: true, line: `${peer.name}: phase ${event.phase}` }
    case 'round-started':
      peer.activity = 'training'
      peer.round = event.round
      if (event.phase !== undefined) peer.phase = event.phase
      peer.step = 0
      // The previous round's (or phase's) loss would read as this round's.
      delete peer.loss
      if (event.steps !== undefined) peer.steps = event.steps
      return { notable: false }
    case 'step':
      peer.activity = 'training'
      if (event.round !== undefined) peer.round = event.round
      peer.step = event.step
      if (event.steps !== undefined) peer.steps = event.steps
      peer.loss = event.loss
      if (event.imgPerSec !== undefined) peer.imgPerSec = event.imgPerSec
      return { notable: false }
    case 'contributed': {
      peer.activity = 'waiting'
      if (event.loss !== undefined) peer.roundLoss.set(event.round, event.loss)
      const loss = event.loss === undefined ? '' : `, loss ${event.loss.toFixed(4)}`
      return { notable: true, line: `${peer.name}: round ${event.round} contribution published${loss}` }
    }
    case 'round-closed': {
      const round = upsertRound(progress, event.round, nowMs)
      round.closedAtMs = nowMs
      if (event.phase !== undefined) round.phase = event.phase
      if (event.contributions !== undefined) round.contributions = event.contributions
      if (event.digest !== undefined) round.digest = event.digest
      if (event.evalLoss !== undefined) round.evalLoss = event.evalLoss
      const parts = [`round ${event.round} closed`]
      if (event.phase !== undefined) parts.push(`(${event.phase})`)
      if (event.contributions !== undefined) parts.push(`with ${event.contributions} contributions`)
      if (event.evalLoss !== undefined) parts.push(`publisher eval loss ${event.evalLoss.toFixed(4)}`)
      return { notable: true, line: `${peer.name}: ${parts.join(' ')}` }
    }
    case 'checkpoint-adopted':
      peer.activity = 'waiting'
      return { notable: false }
    case 'eval': {
      const round = upsertRound(progress, event.round, nowMs)
      round.evalLoss = event.evalLoss
      return { notable: true, line: `round ${event.round}: publisher eval loss ${event.evalLoss.toFixed(4)}` }
    }
    case 'finished':
      peer.activity = 'stopping'
      return { notable: true, line: `${peer.name}: all rounds done` }
    case 'problem':
      peer.lastProblem = event.message
      return event.level === 'error'
        ? { notable: true, line: `${peer.name}: ${event.message}` }
        : { notable: false }
  }
}

export function markPeer(progress: DemoProgress, index: number, activity: PeerActivity): void {
  const peer = progress.peers[index]
  if (peer !== undefined) peer.activity = activity
}
