// Feeds the metrics sink and the status page: the round engine's event stream (checkpoints
// adopted, contributions accepted or refused, training steps) as it happens, and once a second
// the status snapshot (round, checkpoints, losses), the host (peers, gossip scores, validation
// counters, accepted gossip) and the traffic counters, turned into deltas so the sink only ever
// sees increments.
import type { CoopPeer } from '../peer.ts'
import { TOPIC_NAMES } from '../p2p/topics.ts'
import type { NodeMetricsSink } from './metrics.ts'

/** How often the collector polls the peer: the page refreshes at the same pace. */
export const COLLECT_INTERVAL_MS = 1000
/** Rounds of losses kept for the page's plot. */
const LOSS_HISTORY = 200

export interface StatusView {
  peerId: string
  coop: string
  publisher: boolean
  state: string
  round: number | null
  phase: string | null
  totalRounds: number
  contributionsThisRound: number
  latestCheckpoint: { id: string; phase: string; round: number; verification: string } | null
  checkpoints: { id: string; phase: string; round: number; contributions: number; verification: string }[]
  peers: { id: string; score: number }[]
  losses: { round: number; phase: string; loss: number | null; evalLoss?: number }[]
  rejections: Record<string, number>
  bandwidth: { inBytes: number; outBytes: number; inBytesPerSecond: number; outBytesPerSecond: number }
  updatedAt: string
}

interface Snapshot {
  peerId: string
  coop: string
  publisher: boolean
  state: string
  round: number | null
  phase: string | null
  totalRounds: number
  contributionsThisRound: number
  latestCheckpoint: StatusView['latestCheckpoint'] & { dir?: string }
  checkpoints: StatusView['checkpoints']
  recentLosses: StatusView['losses']
}

export interface Collector {
  view(): StatusView | undefined
  start(): void
  stop(): void
}

export function createCollector(peer: CoopPeer, sink: NodeMetricsSink): Collector {
  const previousValidation = new Map<string, number>()
  const previousTraffic = { blobIn: 0, blobOut: 0, gossipOut: 0 }
  let gossipIn = 0
  let gossipInReported = 0
  const losses = new Map<string, StatusView['losses'][number]>()
  const rejections: Record<string, number> = {}
  let view: StatusView | undefined
  let timer: NodeJS.Timeout | undefined
  let lastAt = Date.now()
  let lastTotals = { in: 0, out: 0 }
  const unsubscribe: (() => void)[] = []

  const collect = (): void => {
    const snapshot = peer.engine.statusSnapshot() as unknown as Snapshot
    for (const [topic, stats] of Object.entries(peer.host.validationStats())) {
      const counts: [string, 'accept' | 'ignore' | 'reject', string | undefined, number][] = [
        [`${topic}/accept`, 'accept', undefined, stats.accept],
        ...Object.entries(stats.ignore).map(
          ([code, n]) =>
            [`${topic}/ignore/${code}`, 'ignore', code, n ?? 0] as [string, 'ignore', string, number],
        ),
        ...Object.entries(stats.reject).map(
          ([code, n]) =>
            [`${topic}/reject/${code}`, 'reject', code, n ?? 0] as [string, 'reject', string, number],
        ),
      ]
      for (const [key, outcome, code, total] of counts) {
        const delta = total - (previousValidation.get(key) ?? 0)
        previousValidation.set(key, total)
        if (delta <= 0) continue
        sink.gossipValidated(topic, outcome, code, delta)
        if (outcome === 'reject' && code !== undefined) {
          rejections[code] = (rejections[code] ?? 0) + delta
        }
      }
    }
    const traffic = peer.traffic
    sink.bytesIn('blob', traffic.blobFetchedBytes - previousTraffic.blobIn)
    sink.bytesOut('blob', traffic.blobServedBytes - previousTraffic.blobOut)
    sink.bytesOut('gossip', traffic.gossipPublishedBytes - previousTraffic.gossipOut)
    sink.bytesIn('gossip', gossipIn - gossipInReported)
    previousTraffic.blobIn = traffic.blobFetchedBytes
    previousTraffic.blobOut = traffic.blobServedBytes
    previousTraffic.gossipOut = traffic.gossipPublishedBytes
    gossipInReported = gossipIn

    const connected = peer.host.connectedPeers()
    const scores = new Map(connected.map((id) => [id, peer.host.peerScore(id)]))
    sink.peerCount(connected.length)
    sink.peerScores(scores)
    sink.round(snapshot.round, snapshot.latestCheckpoint?.round ?? null)

    for (const l of snapshot.recentLosses) losses.set(`${l.phase}/${l.round}`, l)
    while (losses.size > LOSS_HISTORY) losses.delete(losses.keys().next().value as string)
    const now = Date.now()
    const totals = {
      in: traffic.blobFetchedBytes + gossipIn,
      out: traffic.blobServedBytes + traffic.gossipPublishedBytes,
    }
    const seconds = Math.max((now - lastAt) / 1000, 1e-3)
    view = {
      peerId: snapshot.peerId,
      coop: snapshot.coop,
      publisher: snapshot.publisher,
      state: snapshot.state,
      round: snapshot.round,
      phase: snapshot.phase,
      totalRounds: snapshot.totalRounds,
      contributionsThisRound: snapshot.contributionsThisRound,
      latestCheckpoint:
        snapshot.latestCheckpoint === null
          ? null
          : {
              id: snapshot.latestCheckpoint.id,
              phase: snapshot.latestCheckpoint.phase,
              round: snapshot.latestCheckpoint.round,
              verification: snapshot.latestCheckpoint.verification,
            },
      checkpoints: snapshot.checkpoints.slice(-50),
      peers: [...scores].map(([id, score]) => ({ id, score: Number.isFinite(score) ? score : 0 })),
      losses: [...losses.values()],
      rejections: { ...rejections },
      bandwidth: {
        inBytes: totals.in,
        outBytes: totals.out,
        inBytesPerSecond: (totals.in - lastTotals.in) / seconds,
        outBytesPerSecond: (totals.out - lastTotals.out) / seconds,
      },
      updatedAt: new Date(now).toISOString(),
    }
    lastAt = now
    lastTotals = totals
  }

  return {
    view: () => view,
    start() {
      // The round engine's events, as they happen (counters count from this process's start).
      const events = peer.engine.events
      let lastStep: { round: number; phase: string; at: number } | undefined
      unsubscribe.push(
        events.on('checkpointAdopted', (e) => {
          sink.checkpointAdopted({ round: e.round, phase: e.phase, verification: e.verification })
          if (e.contributions > 0)
            sink.roundClosed({ round: e.round, phase: e.phase, contributions: e.contributions })
        }),
        events.on('contributionAccepted', () => sink.contributionAccepted()),
        events.on('contributionRefused', (e) => {
          if (e.action === 'REJECT') sink.contributionRejected(e.code)
        }),
        events.on('trainingStep', (e) => {
          const at = performance.now()
          // The time between two steps of the same round is one step (the first step of a round has no predecessor).
          if (lastStep !== undefined && lastStep.round === e.round && lastStep.phase === e.phase)
            sink.stepTime((at - lastStep.at) / 1000)
          lastStep = { round: e.round, phase: e.phase, at }
        }),
      )
      for (const topic of TOPIC_NAMES)
        unsubscribe.push(
          peer.host.onMessage(topic, (msg) => {
            gossipIn += msg.data.byteLength
          }),
        )
      const safely = (): void => {
        try {
          collect()
        } catch {
          // A snapshot taken mid-shutdown may fail; the next tick (or none) tells the truth.
        }
      }
      safely()
      timer = setInterval(safely, COLLECT_INTERVAL_MS)
      timer.unref()
    },
    stop() {
      clearInterval(timer)
      for (const off of unsubscribe.splice(0)) off()
    },
  }
}
