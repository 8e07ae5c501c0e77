// Rejections, told to a person: the round engine and the gossip validators only count them
// (metrics, the status page), which a person on a terminal never sees.
// - Contributions (known one by one, with their sender, from the round engine's events): the
//   first rejection of each code is logged at once with its sender; later ones are counted and
//   logged once per window, so a peer flooding bad contributions costs a few log lines.
// - Checkpoints and consent documents refused at gossip validation (forged, foreign, revoked):
//   the validators count them by code; new ones are logged once per check, with their count.
// Each line carries the code and a fixed reason (node/console/rejection-reasons.ts). IGNOREs
// (stale rounds, duplicates, unknown manifests being fetched) are normal traffic and not told.
// Checkpoints that pass gossip but fail verification are logged by the verifier itself.
import type { Logger } from 'pino'
import { rejectionReason } from '../console/rejection-reasons.ts'
import type { TopicValidationStats } from '../p2p/gossip-validator.ts'
import type { TopicName } from '../p2p/topics.ts'
import type { RoundEvents } from '../round/events.ts'
import { REJECTION_CHECK_MS, REJECTION_NOTICE_WINDOW_MS } from './constants.ts'

export interface RejectionNotices {
  start(): void
  stop(): void
}

export interface RejectionNoticesModules {
  events: Pick<RoundEvents, 'on'>
  /** The host's validation counters (checkpoints and consent refusals are read from them). */
  validationStats: () => Partial<Record<TopicName, TopicValidationStats>>
  log: Logger
}

/** Topics whose refusals are only counted by the validators, with what a message of each is. */
const COUNTED_TOPICS = [
  ['checkpoints', 'checkpoint'],
  ['consent', 'consent document'],
] as const

export function createRejectionNotices(
  options: { windowMs?: number; checkMs?: number },
  modules: RejectionNoticesModules,
): RejectionNotices {
  const windowMs = options.windowMs ?? REJECTION_NOTICE_WINDOW_MS
  const { log } = modules
  /** Contribution codes told in the current window, with the rejections counted since. */
  const told = new Map<string, number>()
  /** Validator reject counts already told, by `topic/code`. */
  const counted = new Map<string, number>()
  let windowTimer: NodeJS.Timeout | undefined
  let checkTimer: NodeJS.Timeout | undefined
  let off: (() => void) | undefined

  const endWindow = (): void => {
    for (const [code, count] of told)
      if (count > 0)
        log.warn(
          { code, reason: rejectionReason(code), count, seconds: Math.round(windowMs / 1000) },
          'contribution rejected',
        )
    told.clear()
  }

  const checkCounted = (): void => {
    let stats: ReturnType<typeof modules.validationStats>
    try {
      stats = modules.validationStats()
    } catch {
      return
    }
    for (const [topic, what] of COUNTED_TOPICS)
      for (const [code, total] of Object.entries(stats[topic]?.reject ?? {})) {
        const key = `${topic}/${code}`
        const count = (total ?? 0) - (counted.get(key) ?? 0)
        if (count <= 0) continue
        counted.set(key, total ?? 0)
        log.warn({ what, code, reason: rejectionReason(code), count }, 'gossip rejected')
      }
  }

  return {
    start() {
      off = modules.events.on('contributionRefused', (e) => {
        if (e.action !== 'REJECT') return
        const count = told.get(e.code)
        if (count === undefined) {
          told.set(e.code, 0)
          log.warn({ code: e.code, reason: rejectionReason(e.code), peer: e.from }, 'contribution rejected')
        } else told.set(e.code, count + 1)
      })
      windowTimer = setInterval(endWindow, windowMs)
      windowTimer.unref()
      checkTimer = setInterval(checkCounted, options.checkMs ?? REJECTION_CHECK_MS)
      checkTimer.unref()
    },
    stop() {
      off?.()
      off = undefined
      clearInterval(windowTimer)
      clearInterval(checkTimer)
      endWindow()
      checkCounted()
    },
  }
}
