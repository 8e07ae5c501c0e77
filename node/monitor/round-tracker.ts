// Follows the round engine's event stream for people: what the node is doing now (the live
// line's phase, round, step, loss, img/s) and, when a round's checkpoint is adopted, that
// round's summary (contributions, checkpoint, eval loss, time and bytes since the previous
// checkpoint). It only subscribes: no component knows it exists.
import type { Activity, RoundSummary } from '../console/node-lines.ts'
import type { RoundEvents } from '../round/events.ts'
import { EVAL_LOSS_WAIT_MS } from './constants.ts'

export interface RoundTrackerOptions {
  /** A publisher that trains logs an eval loss after each checkpoint: its summary waits for it. */
  expectEvalLoss: boolean
  /** How long a summary waits for the eval loss (default EVAL_LOSS_WAIT_MS). */
  evalLossWaitMs?: number
}

export interface RoundTrackerModules {
  events: Pick<RoundEvents, 'on'>
  /** Bytes moved so far (blobs and gossip), in and out. */
  traffic: () => { in: number; out: number }
  /** The last round this node runs. */
  totalRounds: () => number
  onSummary: (summary: RoundSummary) => void
  now?: () => number
}

export interface LiveActivity {
  activity: Activity
  phase: string | null
  round: number | null
  step?: number
  steps?: number
  loss?: number
  imgPerSec?: number
}

export interface RoundTracker {
  live(): LiveActivity
  start(): void
  /** Unsubscribes and hands over a summary still waiting for its eval loss. */
  stop(): void
}

export function createRoundTracker(options: RoundTrackerOptions, modules: RoundTrackerModules): RoundTracker {
  const now = modules.now ?? (() => performance.now())
  const waitMs = options.evalLossWaitMs ?? EVAL_LOSS_WAIT_MS
  let live: LiveActivity = { activity: 'starting', phase: null, round: null }
  let since = { at: now(), ...modules.traffic() }
  /** This node's mean training loss per `phase/round` it contributed to (a handful: pruned at adoption). */
  const ownLoss = new Map<string, number>()
  let pending: { summary: RoundSummary; timer: NodeJS.Timeout } | undefined
  const unsubscribe: (() => void)[] = []

  const flush = (): void => {
    if (pending === undefined) return
    clearTimeout(pending.timer)
    const { summary } = pending
    pending = undefined
    modules.onSummary(summary)
  }

  return {
    live: () => ({ ...live }),
    start() {
      const { events } = modules
      unsubscribe.push(
        events.on('roundOpened', (e) => {
          live = { activity: 'waiting', phase: e.phase, round: e.round }
        }),
        events.on('roundStarted', (e) => {
          live = { activity: 'training', phase: e.phase, round: e.round, step: 0, steps: e.steps }
        }),
        events.on('trainingStep', (e) => {
          live = {
            activity: 'training',
            phase: e.phase,
            round: e.round,
            step: e.step,
            steps: e.steps,
            loss: e.loss,
            imgPerSec: e.imgPerSec,
          }
        }),
        events.on('contributionPublished', (e) => {
          ownLoss.set(`${e.phase}/${e.round}`, e.loss)
          if (live.round === e.round) live = { ...live, activity: 'waiting', loss: e.loss }
        }),
        events.on('roundClosing', (e) => {
          if (live.round === e.round) live = { ...live, activity: 'aggregating' }
        }),
        events.on('checkpointAdopted', (e) => {
          flush()
          const at = now()
          const traffic = modules.traffic()
          const key = `${e.phase}/${e.round}`
          const loss = ownLoss.get(key)
          ownLoss.delete(key)
          const summary: RoundSummary = {
            round: e.round,
            phase: e.phase,
            totalRounds: modules.totalRounds(),
            contributions: e.contributions,
            checkpoint: e.checkpoint,
            verification: e.verification,
            ...(loss === undefined ? {} : { loss }),
            seconds: (at - since.at) / 1000,
            bytesIn: Math.max(0, traffic.in - since.in),
            bytesOut: Math.max(0, traffic.out - since.out),
          }
          since = { at, ...traffic }
          if (!options.expectEvalLoss || e.contributions === 0) {
            modules.onSummary(summary)
            return
          }
          const timer = setTimeout(flush, waitMs)
          timer.unref()
          pending = { summary, timer }
        }),
        events.on('evalLoss', (e) => {
          if (pending === undefined || pending.summary.round !== e.round || pending.summary.phase !== e.phase)
            return
          pending.summary.evalLoss = e.evalLoss
          flush()
        }),
        events.on('allRoundsDone', () => {
          live = { ...live, activity: 'done' }
        }),
      )
    },
    stop() {
      for (const off of unsubscribe.splice(0)) off()
      flush()
    },
  }
}
