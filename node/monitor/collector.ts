// Feeds the metrics sink and the status page from what a running peer exposes today: its status
// snapshot (round, checkpoints, losses), the host (peers, gossip scores, validation counters,
// accepted gossip) and the traffic counters. Polled once a second; counters are turned into
// deltas so the sink only ever sees increments. Events the round engine will stream (step times,
// contributions as they arrive) plug into the same sink.
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
  const seenCheckpoints = new Set<string>()
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
    for (const c of snapshot.checkpoints) {
      if (seenCheckpoints.has(c.id)) continue
      seenCheckpoints.add(c.id)
      sink.checkpointAdopted({ round: c.round, phase: c.phase, verification: c.verification })
      if (c.contributions > 0) {
        sink.roundClosed({ round: c.round, phase: c.phase, contributions: c.contributions })
        sink.contributionAccepted(c.contributions)
      }
    }
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
          if (topic === 'contributions') sink.contributionRejected(code, delta)
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
