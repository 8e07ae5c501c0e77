// Crash recovery with real processes and SIGKILL: a trainer killed mid-round, and the publisher
// killed between freezing a round's contribution set and publishing its checkpoint. The two
// scenarios share nothing (each its own cluster, folder and ports), so they run side by side.
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it, type TestContext } from 'vitest'
import { verifyProvenance } from '../../protocol/provenance.ts'
import { checkpointDir, listCheckpointDirs } from '../../node/round/layout.ts'
import { openStore } from '../../node/store/store.ts'
import {
  bootstrapAddr,
  createCluster,
  exitsWithin,
  startNode,
  stopAll,
  type NodeProcess,
} from './cluster-helpers/cluster.ts'

async function provenanceOf(store: string, phase: 'autoencoder' | 'unet', round: number, publisher: string) {
  const bytes = await readFile(join(checkpointDir(store, phase, round), 'provenance.json'))
  return verifyProvenance(bytes, { publishers: [publisher], threshold: 1 })
}

/** One scenario's folder and nodes: stopped and removed when that test ends, pass or fail. */
interface Scenario {
  dir: string
  nodes: NodeProcess[]
}

async function scenario(prefix: string, onTestFinished: TestContext['onTestFinished']): Promise<Scenario> {
  const run: Scenario = { dir: await mkdtemp(join(tmpdir(), prefix)), nodes: [] }
  onTestFinished(async () => {
    await stopAll(run.nodes.filter((n) => n.running))
    if (process.env.COOP_TEST_KEEP === undefined) await rm(run.dir, { recursive: true, force: true })
  })
  return run
}

/**
 * Flags of every node: linger briefly after the last round, and train on one thread. The default
 * (min(2, cores)) gives each node a second wasm worker; with three or four nodes on two cores that
 * buys no speed and costs each training session ~1.7 CPU-s to start (coop train, tiny, 8+8 steps:
 * 5.6 CPU-s on 1 thread, 9.4 on 2). Nothing here depends on the thread count: data-parallel steps
 * are covered by test/trainer/parallel.test.ts.
 */
const NODE_FLAGS = ['--linger', '3', '--threads', '1']

describe.concurrent('crash recovery', () => {
  it('a trainer SIGKILLed mid-round: the round closes at quorum, the restarted trainer catches up, keeps its store and contributes again', async ({
    expect,
    onTestFinished,
  }) => {
    const run = await scenario('coop-faults-trainer-', onTestFinished)
    const cluster = await createCluster({
      dir: run.dir,
      peers: 4,
      imagesPerPeer: 8,
      charterArgs: [
        '--ae-rounds',
        '1',
        '--unet-rounds',
        '2',
        // Enough local steps for a kill to land in the middle of them (at step 3 of 8).
        '--inner-steps',
        '8',
        '--quorum',
        '3',
        '--deadline',
        '300',
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
    const n3 = startNode(cluster, p3, { bootstrap: [addr], extra: NODE_FLAGS })
    const n4 = startNode(cluster, p4, { bootstrap: [addr], extra: NODE_FLAGS })
    run.nodes = [publisher, n2, n3, n4]

    // Kill peer-4 in the middle of its round-2 local training.
    await n4.waitFor('training step', (l) => l.round === 2 && (l.step as number) >= 3, 180_000)
    n4.kill('SIGKILL')
    await n4.exited
    const acceptedBefore = new Set(
      n4.lines.filter((l) => l.msg === 'contribution accepted').map((l) => l.contribution as string),
    )
    const adoptedBefore = new Set(
      n4.lines.filter((l) => l.msg === 'checkpoint adopted').map((l) => l.checkpoint as string),
    )
    const ownBefore = n4.lines
      .filter((l) => l.msg === 'contribution published')
      .map((l) => l.contribution as string)
    expect(ownBefore).toHaveLength(1)

    // Round 2 still closes, at quorum, without peer-4.
    const closing = await publisher.waitFor('round closing', (l) => l.round === 2, 180_000)
    expect(closing.reason).toBe('quorum')
    expect(closing.contributions as string[]).toHaveLength(3)
    await publisher.waitFor('round closed', (l) => l.round === 2)
    const round2 = await provenanceOf(p1.store, 'unet', 2, p1.peerId)
    expect(round2.predicate.contributions.map((c) => c.contributor)).not.toContain(p4.peerId)

    // Take peer-3 out before it contributes to round 3, so round 3's quorum needs the restarted peer-4.
    await n3.waitFor('round started', (l) => l.round === 3, 60_000)
    n3.kill('SIGKILL')
    const restarted = startNode(cluster, p4, { bootstrap: [addr], extra: NODE_FLAGS })
    run.nodes.push(restarted)

    // It adopts the round-2 checkpoint by recomputing it from its own stored parent, then contributes.
    const adopted = await restarted.waitFor('checkpoint adopted', (l) => l.round === 2, 120_000)
    expect(adopted.checkpoint).toBe(round2.digest)
    expect(restarted.count('round started', (l) => l.round === 1)).toBe(0)
    const published = await restarted.waitFor('contribution published', (l) => l.round === 3, 120_000)
    await publisher.waitFor('round closed', (l) => l.round === 3, 120_000)
    const round3 = await provenanceOf(p1.store, 'unet', 3, p1.peerId)
    expect(round3.predicate.contributions.map((c) => c.statement)).toContain(published.contribution)
    expect(round3.predicate.contributions.map((c) => c.contributor).sort()).toEqual(
      [p1.peerId, p2.peerId, p4.peerId].sort(),
    )

    await exitsWithin([publisher, n2, restarted], 120_000)
    // Everything peer-4 had accepted before the kill is still in its store.
    const store = await openStore(p4.store)
    try {
      const contributions = new Set(
        (await store.contributions.entries()).map(([, v]) => (v as { id: string }).id),
      )
      for (const id of [...acceptedBefore, ...ownBefore]) expect(contributions.has(id), id).toBe(true)
      const checkpoints = new Set(
        (await store.checkpoints.entries())
          .filter(([k]) => !k.startsWith('id/'))
          .map(([, v]) => (v as { id: string }).id),
      )
      for (const id of adoptedBefore) expect(checkpoints.has(id), id).toBe(true)
      expect(checkpoints.has(round2.digest) && checkpoints.has(round3.digest)).toBe(true)
    } finally {
      await store.close()
    }
  }, 300_000)

  it('the publisher SIGKILLed mid-aggregation: the restart closes the round with the same contributions and no duplicate checkpoint', async ({
    expect,
    onTestFinished,
  }) => {
    const run = await scenario('coop-faults-publisher-', onTestFinished)
    const cluster = await createCluster({
      dir: run.dir,
      peers: 3,
      imagesPerPeer: 8,
      charterArgs: [
        '--ae-rounds',
        '1',
        '--unet-rounds',
        '1',
        '--inner-steps',
        '4',
        '--quorum',
        '3',
        '--deadline',
        '300',
      ],
    })
    const [p1, p2, p3] = cluster.peers as [
      (typeof cluster.peers)[0] & object,
      (typeof cluster.peers)[0] & object,
      (typeof cluster.peers)[0] & object,
    ]
    // The publisher kills itself right after persisting round 2's frozen contribution set.
    const crashing = startNode(cluster, p1, {
      env: { COOP_CRASH_AT: 'after-close-frozen:2' },
      extra: NODE_FLAGS,
    })
    const addr = await bootstrapAddr(p1)
    const n2 = startNode(cluster, p2, { bootstrap: [addr], extra: NODE_FLAGS })
    const n3 = startNode(cluster, p3, { bootstrap: [addr], extra: NODE_FLAGS })
    run.nodes = [crashing, n2, n3]
    const frozen = (await crashing.waitFor('round closing', (l) => l.round === 2, 180_000))
      .contributions as string[]
    expect((await crashing.exited).signal).toBe('SIGKILL')
    expect(crashing.count('round closed', (l) => l.round === 2)).toBe(0)

    // A trainer that already finished its round-2 work is killed too: on restart it must not train round 2 again.
    await n3.waitFor('contribution published', (l) => l.round === 2)
    n3.kill('SIGKILL')
    await n3.exited

    const publisher = startNode(cluster, p1, { extra: NODE_FLAGS })
    const trainer3 = startNode(cluster, p3, {
      bootstrap: [await bootstrapAddr(p2)],
      extra: NODE_FLAGS,
    })
    run.nodes.push(publisher, trainer3)
    const closed = await publisher.waitFor('round closed', (l) => l.round === 2, 120_000)
    expect(publisher.count('round closing', (l) => l.round === 2)).toBe(0)
    await exitsWithin([publisher, n2, trainer3], 120_000)
    expect(trainer3.count('round started', (l) => l.round === 2)).toBe(0)
    expect(trainer3.count('checkpoint adopted', (l) => l.round === 2)).toBe(1)

    const provenance = await provenanceOf(p1.store, 'unet', 2, p1.peerId)
    expect(provenance.digest).toBe(closed.checkpoint)
    expect(provenance.predicate.contributions.map((c) => c.statement)).toEqual(frozen)
    for (const peer of [p1, p2, p3]) {
      const dirs = (await listCheckpointDirs(peer.store)).map((d) => d.split('/').pop())
      expect(dirs).toEqual(['autoencoder-r000000', 'autoencoder-r000001', 'unet-r000001', 'unet-r000002'])
      expect((await provenanceOf(peer.store, 'unet', 2, p1.peerId)).digest).toBe(provenance.digest)
    }
    for (const node of [n2, trainer3]) expect(node.count('checkpoint rejected')).toBe(0)
    const store = await openStore(p1.store)
    try {
      const round2 = (await store.checkpoints.entries()).filter(
        ([k, v]) => !k.startsWith('id/') && (v as { round: number; phase: string }).round === 2,
      )
      expect(round2).toHaveLength(1)
    } finally {
      await store.close()
    }
  }, 300_000)
})
