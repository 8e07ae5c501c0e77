// What `coop start` tells people about its rounds. Every round's summary is logged
// (`round summary`, so JSON output and --log-file carry it); when stdout is a terminal, the
// summary is also printed there as a line, under which one live line shows what the node does
// now (phase, round, step, loss, img/s, peers), redrawn in place. Log lines print above it
// (node/log.ts goes through the same screen), and what the live line and the summaries say is
// left out of the terminal's log lines.
import type { Logger } from 'pino'
import {
  formatLiveLine,
  formatRoundSummary,
  type LiveState,
  type RoundSummary,
} from '../console/node-lines.ts'
import type { Screen, ScreenStream } from '../console/screen.ts'
import type { CoopPeer } from '../peer.ts'
import { LIVE_LINE_REDRAW_MS } from './constants.ts'
import { createRoundTracker } from './round-tracker.ts'

export interface NodeViewOptions {
  publisher: boolean
  train: boolean
  /** Where the live line goes: a terminal, or undefined for none (a pipe). */
  terminal?: { out: ScreenStream; err: ScreenStream }
}

export interface NodeView {
  start(): void
  /**
   * Stops redrawing; the last live line stays on the terminal as a finished line (`stopped`:
   * the node was told to stop, whatever the engine still says).
   */
  stop(options?: { stopped?: boolean }): void
}

interface Snapshot {
  state: 'running' | 'done' | 'stopped'
  /** The open round; null before the first checkpoint and after the last round. */
  round: number | null
  phase: string | null
  totalRounds: number
  contributionsThisRound: number
  peers: string[]
}

function clock(): string {
  const d = new Date()
  return [d.getHours(), d.getMinutes(), d.getSeconds()].map((n) => String(n).padStart(2, '0')).join(':')
}

export function createNodeView(
  peer: Pick<CoopPeer, 'engine' | 'traffic' | 'charter'>,
  options: NodeViewOptions,
  modules: { screen: Screen; log: Logger },
): NodeView {
  const { screen, log } = modules
  const snapshot = (): Snapshot => peer.engine.statusSnapshot() as unknown as Snapshot
  const terminal = options.terminal
  const tracker = createRoundTracker(
    { expectEvalLoss: options.publisher && options.train },
    {
      events: peer.engine.events,
      traffic: () => ({
        in: peer.traffic.blobFetchedBytes + peer.traffic.gossipReceivedBytes,
        out: peer.traffic.blobServedBytes + peer.traffic.gossipPublishedBytes,
      }),
      totalRounds: () => snapshot().totalRounds,
      onSummary: (summary: RoundSummary) => {
        log.info({ ...summary }, 'round summary')
        if (terminal !== undefined) screen.print(`${clock()} ${formatRoundSummary(summary)}`)
      },
    },
  )
  let timer: NodeJS.Timeout | undefined

  const liveLine = (stopped = false): string => {
    const s = snapshot()
    // A node told to stop after its last round is still done.
    if (stopped && s.state !== 'done') s.state = 'stopped'
    const now = tracker.live()
    // The engine knows the open round first; the tracker's step figures count only for that round.
    const current = s.round !== null && now.round === s.round
    const state: LiveState = {
      ...(current ? now : {}),
      activity:
        s.state === 'done'
          ? 'done'
          : s.state === 'stopped'
            ? 'stopped'
            : s.round === null
              ? 'starting'
              : current || now.activity === 'starting'
                ? now.activity
                : 'waiting',
      phase: s.phase,
      round: s.round,
      totalRounds: s.totalRounds,
      contributions: s.contributionsThisRound,
      quorum: peer.charter.rounds.quorum,
      peers: s.peers.length,
    }
    return formatLiveLine(state)
  }
  const redraw = (): void => {
    try {
      screen.live(liveLine())
    } catch {
      // A snapshot taken while the engine stops may fail; the next redraw (or stop) tells the truth.
    }
  }

  return {
    start() {
      tracker.start()
      if (terminal === undefined) return
      screen.start(terminal.out, terminal.err)
      redraw()
      timer = setInterval(redraw, LIVE_LINE_REDRAW_MS)
      timer.unref()
    },
    stop(stopOptions) {
      clearInterval(timer)
      timer = undefined
      tracker.stop()
      if (terminal === undefined) return
      let last: string | undefined
      try {
        last = liveLine(stopOptions?.stopped === true)
      } catch {
        last = undefined
      }
      screen.stop(last)
    },
  }
}
