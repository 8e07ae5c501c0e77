// Class 9, catching up (docs/THREAT-MODEL.md §9), with real `coop start` processes: a trainer is
// SIGKILLed in the middle of the local training of the first round it trains (usually the
// autoencoder round 1; on a loaded machine the deadline may close a round before a slow trainer
// starts it) and kept down while the cooperative closes that round and the next without it;
// then it restarts, and a fourth peer joins for the first time. Each
// must walk the chain back to what it holds (nothing, for the joiner), fetch and recompute every
// missing checkpoint in order (the autoencoder chain too), never publish a contribution for a
// closed round, contribute to the rounds still open, end on the publisher's final checkpoint and
// exit by itself.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { listCheckpointDirs } from '../../../node/round/layout.ts'
import {
  bootstrapAddr,
  createCluster,
  exitsWithin,
  runCoop,
  startNode,
  stopAll,
  type Cluster,
  type NodeProcess,
} from '../cluster-helpers/cluster.ts'
import { mapLimit } from '../helpers/map-limit.ts'
import { expectHonestOutcome, provenanceAt, type StatusSnapshot } from '../helpers/cooperative-outcome.ts'

/** Rounds 1 (autoencoder) and 2..6 (U-Net, genesis at 1): at least two left open after the restart. */
const LAST_ROUND = 6
/** The latest round the trainer may be killed in, so that two rounds close while it is down and two stay open. */
const LAST_KILL_ROUND = LAST_ROUND - 3
/** `coop checkpoint verify` processes run side by side (16 checkpoints to check, 2 cores). */
const VERIFY_PROCESSES = 3

/**
 * Flags of every node: linger briefly after the last round, and train on one thread. The default
 * (min(2, cores)) gives each node a second wasm worker; with three or four nodes on two cores that
 * buys no speed and costs each training session ~1.7 CPU-s to start (coop train, tiny, 8+8 steps:
 * 5.6 CPU-s on 1 thread, 9.4 on 2). Nothing here depends on the thread count: data-parallel steps
 * are covered by test/trainer/parallel.test.ts.
 */
const NODE_FLAGS = ['--linger', '5', '--threads', '1']

describe('class 9: a trainer killed for two rounds, and a peer joining late, catch up', () => {
  let dir: string
  let cluster: Cluster
  let nodes: NodeProcess[] = []
  let killed: NodeProcess
  let restarted: NodeProcess
  let joiner: NodeProcess
  let statuses: Map<string, StatusSnapshot>
  /** Rounds the publisher had closed when the two came (back) up. */
  let closedBeforeRestart: number

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'coop-adv-catchup-'))
    cluster = await createCluster({
      dir,
      peers: 4,
      imagesPerPeer: 8,
      charterArgs: [
        ...['--ae-rounds', '1', '--unet-rounds', String(LAST_ROUND - 1), '--inner-steps', '8'],
        // Three of the four close a round; while two are away, the deadline closes it with two.
        ...['--quorum', '3', '--deadline', '20'],
      ],
    })
    const [p1, p2, p3, p4] = cluster.peers as [
      (typeof cluster.peers)[0] & object,
      (typeof cluster.peers)[0] & object,
      (typeof cluster.peers)[0] & object,
      (typeof cluster.peers)[0] & object,
    ]
    const publisher = startNode(cluster, p1, { extra: NODE_FLAGS })
    const addr = await bootstrapAddr(p1)
    const n2 = startNode(cluster, p2, { bootstrap: [addr], extra: NODE_FLAGS })
    killed = startNode(cluster, p3, { bootstrap: [addr], extra: NODE_FLAGS })

    // SIGKILL in the middle of the local training of the first round it trains.
    const step = await killed.waitFor('training step', (l) => (l.step as number) >= 3, 240_000)
    const killedIn = step.round as number
    expect(killedIn, 'the round the trainer was killed in').toBeLessThanOrEqual(LAST_KILL_ROUND)
    killed.kill('SIGKILL')
    expect((await killed.exited).signal).toBe('SIGKILL')
    // Down while the cooperative closes that round and the next.
    closedBeforeRestart = killedIn + 1
    await publisher.waitFor('round closed', (l) => l.round === closedBeforeRestart, 240_000)
    restarted = startNode(cluster, p3, { bootstrap: [addr], extra: NODE_FLAGS })
    joiner = startNode(cluster, p4, { bootstrap: [addr], extra: NODE_FLAGS })
    nodes = [publisher, n2, restarted, joiner]
    const exits = await exitsWithin(nodes, 400_000)
    statuses = await expectHonestOutcome(nodes, exits)
  }, 720_000)

  afterAll(async () => {
    await stopAll([...nodes, killed].filter((n) => n?.running))
    if (process.env.COOP_TEST_KEEP === undefined) await rm(dir, { recursive: true, force: true })
  })

  it('never publishes a contribution for a round closed while it was away, and contributes to the open ones', async () => {
    for (const node of [restarted, joiner]) {
      const published = node.lines
        .filter((l) => l.msg === 'contribution published')
        .map((l) => l.round as number)
      expect(
        published.filter((round) => round <= closedBeforeRestart),
        node.peer.name,
      ).toEqual([])
    }
    // The rounds after the restart: at least one of the two that came late contributed to them.
    const publishers = [cluster.peers[0]!.peerId]
    const late = new Set([restarted.peer.peerId, joiner.peer.peerId])
    const contributors = new Set<string>()
    for (let round = closedBeforeRestart + 1; round <= LAST_ROUND; round++)
      for (const c of (await provenanceAt(cluster.peers[0]!, 'unet', round, publishers)).predicate
        .contributions)
        contributors.add(c.contributor)
    expect([...late].filter((p) => contributors.has(p)).length).toBeGreaterThan(0)
  })

  it('recomputed every checkpoint it missed, in order, and holds the whole chain', async () => {
    for (const node of [restarted, joiner]) {
      const status = statuses.get(node.peer.name) as StatusSnapshot
      const rounds = status.checkpoints.map((c) => `${c.phase}/${c.round}`)
      expect(rounds, node.peer.name).toEqual([
        'autoencoder/0',
        'autoencoder/1',
        ...Array.from({ length: LAST_ROUND }, (_, i) => `unet/${i + 1}`),
      ])
      for (const c of status.checkpoints)
        expect(c.verification, `${node.peer.name} ${c.phase} ${c.round}`).toBe(
          c.contributions === 0 ? 'genesis' : 'recomputed',
        )
      // Adopted oldest first, each exactly once: what it lacked, in chain order.
      const adoptedBy = (n: NodeProcess) =>
        n.lines.filter((l) => l.msg === 'checkpoint adopted').map((l) => `${l.phase}/${l.round}`)
      const heldBefore = new Set(node === restarted ? adoptedBy(killed) : [])
      expect(adoptedBy(node), node.peer.name).toEqual(rounds.filter((r) => !heldBefore.has(r)))
    }
    const recomputedAfterStart = (n: NodeProcess) =>
      n.lines.filter((l) => l.msg === 'checkpoint adopted' && (l.contributions as number) > 0).length
    console.log(
      JSON.stringify({
        class: 9,
        killedInRound: closedBeforeRestart - 1,
        roundsClosedWhileDown: 2,
        restartedRecomputed: recomputedAfterStart(restarted),
        joinerRecomputed: recomputedAfterStart(joiner),
        lateContributions: [restarted, joiner].map((n) =>
          n.lines.filter((l) => l.msg === 'contribution published').map((l) => l.round),
        ),
      }),
    )
  })

  it('every checkpoint in their stores verifies with recomputation on its own', async () => {
    const checks: { node: NodeProcess; checkpoint: string }[] = []
    for (const node of [restarted, joiner])
      for (const checkpoint of await listCheckpointDirs(node.peer.store)) checks.push({ node, checkpoint })
    // Each verify is its own `coop` process and touches nothing the others read: a few at a time.
    const results = await mapLimit(checks, VERIFY_PROCESSES, ({ node, checkpoint }) =>
      runCoop(['checkpoint', 'verify', checkpoint, '--store', node.peer.store, '--json']),
    )
    checks.forEach(({ node, checkpoint }, i) => {
      const result = results[i]!
      const report = JSON.parse(result.stdout) as { ok: boolean; recomputation: string }
      expect(result.code, `${node.peer.name} ${checkpoint}: ${result.stdout}`).toBe(0)
      expect(['passed', 'genesis'], checkpoint).toContain(report.recomputation)
    })
  })
})
