// The node's Prometheus metrics, behind a small sink interface: whoever observes an event (the
// collector in collector.ts today, the round engine's event stream later) calls the sink, and
// prom-client renders the text format on /metrics. One registry per node, never the global one,
// so that tests and several nodes in one process do not mix their counters.
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client'

export type Channel = 'blob' | 'gossip'

/** What a node reports. Every method is cheap and never throws. */
export interface NodeMetricsSink {
  /** A round's checkpoint this node published or adopted, with the contributions it aggregates. */
  roundClosed(event: { round: number; phase: string; contributions: number }): void
  /** A checkpoint adopted, by how it was verified (recomputed, signature, component...). */
  checkpointAdopted(event: { round: number; phase: string; verification: string }): void
  /** A peer's contribution passed validation and is stored (this node's own are not counted). */
  contributionAccepted(count?: number): void
  /** A peer's contribution was REJECTed by validation, with the rejection code. */
  contributionRejected(code: string, count?: number): void
  /**
   * A checkpoint refused: at the gossip stage (signature, signer, schema) or, after passing it,
   * by verification (recomputation, files).
   */
  checkpointRejected(stage: 'gossip' | 'verification', code: string, count?: number): void
  /** Penalties this node charged to peers (gossip score points), by code. */
  penalized(code: string, count: number): void
  /** The publisher's eval loss of a checkpoint it published (publishers that train). */
  evalLoss(event: { round: number; phase: string; evalLoss: number }): void
  /** This node's mean training loss over the local steps of its latest contribution. */
  trainingLoss(event: { round: number; phase: string; loss: number }): void
  /** Gossip validation outcomes per topic (accept, ignore, reject) and code. */
  gossipValidated(
    topic: string,
    outcome: 'accept' | 'ignore' | 'reject',
    code: string | undefined,
    count: number,
  ): void
  bytesIn(channel: Channel, bytes: number): void
  bytesOut(channel: Channel, bytes: number): void
  /** Seconds one local training step took. */
  stepTime(seconds: number): void
  peerCount(count: number): void
  /** Gossipsub scores of the peers connected now (peers not listed are dropped from the gauge). */
  peerScores(scores: ReadonlyMap<string, number>): void
  /** The open round (null when every round is done) and the latest checkpoint's round. */
  round(open: number | null, latest: number | null): void
}

export interface NodeMetrics {
  registry: Registry
  sink: NodeMetricsSink
}

/** Training steps take milliseconds (tiny, GPU) to seconds (emoji32 on wasm). */
const STEP_SECONDS_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]

export function createNodeMetrics(labels: { coop: string; peer: string }): NodeMetrics {
  const registry = new Registry()
  // Which node and coop the series belong to, once (an "info" metric), rather than on every series.
  new Gauge({
    name: 'coop_node_info',
    help: 'The node (PeerId) and cooperative (coop id) this endpoint reports on; always 1',
    labelNames: ['coop', 'node'],
    registers: [registry],
  }).set({ coop: labels.coop, node: labels.peer }, 1)
  collectDefaultMetrics({ register: registry, prefix: 'coop_process_' })
  const roundsClosed = new Counter({
    name: 'coop_rounds_closed_total',
    help: 'Rounds whose checkpoint this node published or adopted, by phase',
    labelNames: ['phase'],
    registers: [registry],
  })
  const checkpoints = new Counter({
    name: 'coop_checkpoints_adopted_total',
    help: 'Checkpoints adopted, by phase and how they were verified',
    labelNames: ['phase', 'verification'],
    registers: [registry],
  })
  const contributions = new Counter({
    name: 'coop_contributions_total',
    help: "Peers' contributions accepted by validation (and stored) or rejected, by rejection code",
    labelNames: ['outcome', 'code'],
    registers: [registry],
  })
  const checkpointsRejected = new Counter({
    name: 'coop_checkpoints_rejected_total',
    help: 'Checkpoints refused, by stage (gossip: signature, signer, schema; verification: recomputation, files) and code',
    labelNames: ['stage', 'code'],
    registers: [registry],
  })
  const penalties = new Counter({
    name: 'coop_penalties_total',
    help: 'Penalties this node charged to peers (lowering their gossip score), by code',
    labelNames: ['code'],
    registers: [registry],
  })
  const evalLoss = new Gauge({
    name: 'coop_eval_loss',
    help: "The publisher's eval loss of its latest checkpoint, by phase (on its own images; publishers that train)",
    labelNames: ['phase'],
    registers: [registry],
  })
  const evalLossRound = new Gauge({
    name: 'coop_eval_loss_round',
    help: 'The round whose checkpoint coop_eval_loss measured, by phase',
    labelNames: ['phase'],
    registers: [registry],
  })
  const trainingLoss = new Gauge({
    name: 'coop_training_loss',
    help: "Mean training loss of this node's latest contribution, by phase",
    labelNames: ['phase'],
    registers: [registry],
  })
  const gossip = new Counter({
    name: 'coop_gossip_messages_total',
    help: 'Gossip messages validated, by topic, outcome and code',
    labelNames: ['topic', 'outcome', 'code'],
    registers: [registry],
  })
  const bytes = new Counter({
    name: 'coop_bytes_total',
    help: 'Bytes moved: blobs fetched and served, gossip received and published',
    labelNames: ['direction', 'channel'],
    registers: [registry],
  })
  const stepSeconds = new Histogram({
    name: 'coop_step_seconds',
    help: 'Duration of one local training step',
    buckets: STEP_SECONDS_BUCKETS,
    registers: [registry],
  })
  const peers = new Gauge({ name: 'coop_peers', help: 'Peers connected now', registers: [registry] })
  const peerScore = new Gauge({
    name: 'coop_peer_gossip_score',
    help: "This node's gossipsub score of each connected peer",
    labelNames: ['peer'],
    registers: [registry],
  })
  const openRound = new Gauge({
    name: 'coop_open_round',
    help: 'The round being trained (-1 when every round is done)',
    registers: [registry],
  })
  const latestRound = new Gauge({
    name: 'coop_latest_checkpoint_round',
    help: 'Round of the latest adopted checkpoint (-1 before the first)',
    registers: [registry],
  })
  openRound.set(-1)
  latestRound.set(-1)
  let scored = new Set<string>()

  const sink: NodeMetricsSink = {
    roundClosed({ phase }) {
      roundsClosed.inc({ phase })
    },
    checkpointAdopted({ phase, verification }) {
      checkpoints.inc({ phase, verification })
    },
    contributionAccepted(count = 1) {
      contributions.inc({ outcome: 'accepted', code: '' }, count)
    },
    contributionRejected(code, count = 1) {
      contributions.inc({ outcome: 'rejected', code }, count)
    },
    checkpointRejected(stage, code, count = 1) {
      if (count > 0) checkpointsRejected.inc({ stage, code }, count)
    },
    penalized(code, count) {
      if (count > 0) penalties.inc({ code }, count)
    },
    evalLoss({ round, phase, evalLoss: value }) {
      if (!Number.isFinite(value)) return
      evalLoss.set({ phase }, value)
      evalLossRound.set({ phase }, round)
    },
    trainingLoss({ phase, loss }) {
      if (Number.isFinite(loss)) trainingLoss.set({ phase }, loss)
    },
    gossipValidated(topic, outcome, code, count) {
      if (count > 0) gossip.inc({ topic, outcome, code: code ?? '' }, count)
    },
    bytesIn(channel, n) {
      if (n > 0) bytes.inc({ direction: 'in', channel }, n)
    },
    bytesOut(channel, n) {
      if (n > 0) bytes.inc({ direction: 'out', channel }, n)
    },
    stepTime(seconds) {
      stepSeconds.observe(seconds)
    },
    peerCount(count) {
      peers.set(count)
    },
    peerScores(scores) {
      // Only connected peers keep a series: label cardinality is bounded by the connection limit.
      for (const peer of scored) if (!scores.has(peer)) peerScore.remove({ peer })
      for (const [peer, score] of scores) peerScore.set({ peer }, Number.isFinite(score) ? score : 0)
      scored = new Set(scores.keys())
    },
    round(open, latest) {
      openRound.set(open ?? -1)
      latestRound.set(latest ?? -1)
    },
  }
  return { registry, sink }
}
