// Class 9, catching up (docs/THREAT-MODEL.md §9), with real `coop start` processes: a trainer is
// SIGKILLed in the middle of its round-2 training and kept down while the cooperative closes
// rounds 2 and 3 without it; then it restarts, and a fourth peer joins for the first time. Each
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
import { expectHonestOutcome, provenanceAt, type StatusSnapshot } from '../helpers/cooperative-outcome.ts'

/** Rounds 1 (autoencoder) and 2..5 (U-Net, genesis at 1). */
const LAST_ROUND = 5

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
    const publisher = startNode(cluster, p1, { extra: ['--linger', '5'] })
    const addr = await bootstrapAddr(p1)
    const n2 = startNode(cluster, p2, { bootstrap: [addr], extra: ['--linger', '5'] })
    killed = startNode(cluster, p3, { bootstrap: [addr], extra: ['--linger', '5'] })

    // SIGKILL in the middle of its round-2 local training.
    await killed.waitFor('training step', (l) => l.round === 2 && (l.step as number) >= 3, 240_000)
    killed.kill('SIGKILL')
    expect((await killed.exited).signal).toBe('SIGKILL')
    // Down while the cooperative closes two more rounds.
    await publisher.waitFor('round closed', (l) => l.round === 3, 240_000)
    closedBeforeRestart = 3
    restarted = startNode(cluster, p3, { bootstrap: [addr], extra: ['--linger', '5'] })
    joiner = startNode(cluster, p4, { bootstrap: [addr], extra: ['--linger', '5'] })
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
    // Round 5 needs three of four: at least one of the two that came late is in it, and both in one of 4..5.
    const publishers = [cluster.peers[0]!.peerId]
    const late = new Set([restarted.peer.peerId, joiner.peer.peerId])
    const contributors = new Set<string>()
    for (const round of [4, 5])
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
        'unet/1',
        'unet/2',
        'unet/3',
        'unet/4',
        'unet/5',
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
  })

  it('every checkpoint in their stores verifies with recomputation on its own', async () => {
    for (const node of [restarted, joiner]) {
      for (const checkpoint of await listCheckpointDirs(node.peer.store)) {
        const result = await runCoop([
          'checkpoint',
          'verify',
          checkpoint,
          '--store',
          node.peer.store,
          '--json',
        ])
        const report = JSON.parse(result.stdout) as { ok: boolean; recomputation: string }
        expect(result.code, `${node.peer.name} ${checkpoint}: ${result.stdout}`).toBe(0)
        expect(['passed', 'genesis'], checkpoint).toContain(report.recomputation)
      }
    }
  })
})
