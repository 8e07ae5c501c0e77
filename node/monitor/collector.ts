// Feeds the metrics sink and the status page: the round engine's event stream (checkpoints
// adopted or rejected, contributions accepted or refused, training steps, losses) as it happens,
// and once a second the status snapshot (round, checkpoints, losses), the host (peers, gossip
// scores, validation counters) and the peer's traffic counters, turned into deltas so the sink
// only ever sees increments.
import type { CoopPeer } from '../peer.ts'
import type { NodeMetricsSink } from './metrics.ts'

/** How often the collector polls the peer: the page refreshes at the same pace. */
export const COLLECT_INTERVAL_MS = 1000
/** Rounds of losses kept for the page's plot. */
const LOSS_HISTORY = 200
/** Rejections listed one by one on the page (older ones only count). */
const RECENT_REJECTIONS = 20
/** Penalised peers listed on the page (the most penalised). */
const PENALIZED_PEERS_SHOWN = 20

/** Refusals by what was refused (a topic's messages, or checkpoints at verification) and code. */
export interface RejectionCount {
  what: 'consent' | 'contributions' | 'checkpoints'
  stage: 'gossip' | 'verification'
  code: string
  count: number
}

export interface RecentRejection extends RejectionCount {
  at: string
  /** The sender, when the rejection is known one by one (contributions). */
  peer?: string
  /** The refused checkpoint's id (verification failures). */
  checkpoint?: string
}

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
  /** The publisher's latest eval loss (null elsewhere, or before the first). */
  evalLoss: { round: number; phase: string; value: number } | null
  rejections: RejectionCount[]
  recentRejections: RecentRejection[]
  /** Penalties this node charged to peers since it started, by code. */
  penalties: { code: string; count: number }[]
  /** Peers whose penalty has not decayed yet, most penalised first, with their charges by code. */
  penalizedPeers: { id: string; points: number; counts: Record<string, number> }[]
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
  const previousTraffic = { blobIn: 0, blobOut: 0, gossipIn: 0, gossipOut: 0 }
  const losses = new Map<string, StatusView['losses'][number]>()
  const rejections = new Map<string, RejectionCount>()
  /** Charges per `peer code` last seen, and totals by code since the start. */
  const previousPenalties = new Map<string, number>()
  const penalties = new Map<string, number>()
  const recent: RecentRejection[] = []
  let evalLoss: StatusView['evalLoss'] = null
  let view: StatusView | undefined
  let timer: NodeJS.Timeout | undefined
  let lastAt = Date.now()
  let lastTotals = { in: 0, out: 0 }
  const unsubscribe: (() => void)[] = []

  const rejected = (entry: Omit<RecentRejection, 'at'>): void => {
    const key = `${entry.what}/${entry.stage}/${entry.code}`
    const total = rejections.get(key)
    if (total === undefined)
      rejections.set(key, { what: entry.what, stage: entry.stage, code: entry.code, count: entry.count })
    else total.count += entry.count
    recent.push({ at: new Date().toISOString(), ...entry })
    if (recent.length > RECENT_REJECTIONS) recent.shift()
  }

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
        if (outcome !== 'reject' || code === undefined) continue
        if (topic === 'checkpoints') sink.checkpointRejected('gossip', code, delta)
        // Contributions are told one by one by the round engine's events (with their sender).
        if (topic === 'checkpoints' || topic === 'consent')
          rejected({ what: topic, stage: 'gossip', code, count: delta })
      }
    }
    const traffic = peer.traffic
    sink.bytesIn('blob', traffic.blobFetchedBytes - previousTraffic.blobIn)
    sink.bytesOut('blob', traffic.blobServedBytes - previousTraffic.blobOut)
    sink.bytesIn('gossip', traffic.gossipReceivedBytes - previousTraffic.gossipIn)
    sink.bytesOut('gossip', traffic.gossipPublishedBytes - previousTraffic.gossipOut)
    previousTraffic.blobIn = traffic.blobFetchedBytes
    previousTraffic.blobOut = traffic.blobServedBytes
    previousTraffic.gossipIn = traffic.gossipReceivedBytes
    previousTraffic.gossipOut = traffic.gossipPublishedBytes

    const penalized: StatusView['penalizedPeers'] = []
    for (const id of peer.host.penalizedPeers()) {
      const counts = peer.host.penaltyCounts(id)
      for (const [code, total] of Object.entries(counts)) {
        const key = `${id} ${code}`
        const before = previousPenalties.get(key) ?? 0
        // A peer's record forgotten after decay starts again from zero.
        const delta = total >= before ? total - before : total
        previousPenalties.set(key, total)
        if (delta <= 0) continue
        penalties.set(code, (penalties.get(code) ?? 0) + delta)
        sink.penalized(code, delta)
      }
      const points = -peer.host.appScore(id)
      if (points > 0) penalized.push({ id, points, counts })
    }
    penalized.sort((a, b) => b.points - a.points)

    const connected = peer.host.connectedPeers()
    const scores = new Map(connected.map((id) => [id, peer.host.peerScore(id)]))
    sink.peerCount(connected.length)
    sink.peerScores(scores)
    sink.round(snapshot.round, snapshot.latestCheckpoint?.round ?? null)

    for (const l of snapshot.recentLosses) losses.set(`${l.phase}/${l.round}`, l)
    while (losses.size > LOSS_HISTORY) losses.delete(losses.keys().next().value as string)
    const now = Date.now()
    const totals = {
      in: traffic.blobFetchedBytes + traffic.gossipReceivedBytes,
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
      losses: [...losses.values()].sort((a, b) => a.round - b.round),
      evalLoss,
      rejections: [...rejections.values()].map((r) => ({ ...r })),
      recentRejections: [...recent].reverse(),
      penalties: [...penalties].map(([code, count]) => ({ code, count })),
      penalizedPeers: penalized.slice(0, PENALIZED_PEERS_SHOWN),
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
        events.on('checkpointRejected', (e) => {
          const code = e.code ?? 'UNKNOWN'
          sink.checkpointRejected('verification', code)
          rejected({ what: 'checkpoints', stage: 'verification', code, count: 1, checkpoint: e.checkpoint })
        }),
        events.on('contributionAccepted', () => sink.contributionAccepted()),
        events.on('contributionRefused', (e) => {
          if (e.action !== 'REJECT') return
          sink.contributionRejected(e.code)
          rejected({ what: 'contributions', stage: 'gossip', code: e.code, count: 1, peer: e.from })
        }),
        events.on('contributionPublished', (e) =>
          sink.trainingLoss({ round: e.round, phase: e.phase, loss: e.loss }),
        ),
        events.on('evalLoss', (e) => {
          sink.evalLoss(e)
          if (Number.isFinite(e.evalLoss)) evalLoss = { round: e.round, phase: e.phase, value: e.evalLoss }
        }),
        events.on('trainingStep', (e) => {
          const at = performance.now()
          // The time between two steps of the same round is one step (the first step of a round has no predecessor).
          if (lastStep !== undefined && lastStep.round === e.round && lastStep.phase === e.phase)
            sink.stepTime((at - lastStep.at) / 1000)
          lastStep = { round: e.round, phase: e.phase, at }
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
