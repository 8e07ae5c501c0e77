// Warns the publisher when the charter's quorum exceeds the trainers it can see: every round
// then waits for its deadline and closes with what it has (closeDecision in
// node/round/publisher.ts), which looks like a hang to whoever watches. Trainers it can see are
// its connected peers and the contributors of recent rounds (some reach it through relays), plus
// itself when it trains. A publisher that does not train may be counted among another
// publisher's peers: the count errs high, so the warning never fires without reason.
import type { Logger } from 'pino'
import type { RoundEvents } from '../round/events.ts'
import { QUORUM_CHECK_MS, QUORUM_WARN_AFTER_MS } from './constants.ts'

export interface QuorumWatchOptions {
  quorum: number
  deadlineSeconds: number
  /** The node trains: it is one of the trainers. */
  selfTrains: boolean
  self: string
  warnAfterMs?: number
  checkMs?: number
}

export interface QuorumWatchModules {
  events: Pick<RoundEvents, 'on'>
  connectedPeers: () => string[]
  /** Whether rounds remain (nothing to warn about once they are done). */
  running: () => boolean
  log: Logger
  now?: () => number
}

export interface QuorumWatch {
  /** Trainers visible now (for tests and the status page). */
  trainers(): number
  start(): void
  stop(): void
}

export function createQuorumWatch(options: QuorumWatchOptions, modules: QuorumWatchModules): QuorumWatch {
  const now = modules.now ?? (() => Date.now())
  const warnAfter = options.warnAfterMs ?? QUORUM_WARN_AFTER_MS
  /** Contributors by the latest round they contributed to; kept for the current and previous round. */
  const contributors = new Map<string, number>()
  let latestRound = 0
  let shortSince: number | undefined
  let warnedCount: number | undefined
  let timer: NodeJS.Timeout | undefined
  let off: (() => void)[] = []

  const trainers = (): number => {
    const seen = new Set(modules.connectedPeers())
    for (const [peer, round] of contributors) if (round >= latestRound - 1) seen.add(peer)
    seen.delete(options.self)
    return seen.size + (options.selfTrains ? 1 : 0)
  }

  const check = (): void => {
    const visible = trainers()
    if (!modules.running() || visible >= options.quorum) {
      shortSince = undefined
      warnedCount = undefined
      return
    }
    const at = now()
    shortSince ??= at
    if (at - shortSince < warnAfter) return
    // Once per shortage, then again only if the count changed.
    if (warnedCount === visible) return
    warnedCount = visible
    modules.log.warn(
      { quorum: options.quorum, trainers: visible, deadlineSeconds: options.deadlineSeconds },
      'quorum above visible trainers',
    )
  }

  return {
    trainers,
    start() {
      off = [
        modules.events.on('contributionAccepted', (e) => {
          latestRound = Math.max(latestRound, e.round)
          contributors.set(e.contributor, e.round)
          for (const [peer, round] of contributors) if (round < latestRound - 1) contributors.delete(peer)
        }),
      ]
      timer = setInterval(check, options.checkMs ?? QUORUM_CHECK_MS)
      timer.unref()
    },
    stop() {
      clearInterval(timer)
      for (const o of off) o()
      off = []
    },
  }
}
