// `coop start` exits as soon as it has stopped: a signal ends the linger after the last round, and
// nothing the linger armed keeps the process alive. (It did: every Ctrl-C and every demo run
// waited out the linger's timer, 10 s by default, after the node had said "stopped".) A real
// node process on loopback, its linger set far beyond the test's time limit.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  createCluster,
  exitsWithin,
  startNode,
  stopAll,
  type Cluster,
  type NodeProcess,
} from './cluster-helpers/cluster.ts'

/** Far beyond the exit allowance below: a node that waits its linger out fails the test. */
const LINGER = ['--linger', '3600']
const EXIT_ALLOWANCE_MS = 30_000

describe('coop start ends promptly when signalled', () => {
  let dir: string
  let cluster: Cluster
  const started: NodeProcess[] = []

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'coop-exit-'))
    cluster = await createCluster({
      dir,
      peers: 1,
      imagesPerPeer: 4,
      charterArgs: ['--ae-rounds', '1', '--unet-rounds', '1', '--inner-steps', '2', '--quorum', '1'],
    })
  }, 120_000)

  afterAll(async () => {
    await stopAll(started.filter((n) => n.running))
    await rm(dir, { recursive: true, force: true })
  })

  /** Starts the cluster's only node, waits for `message`, sends SIGINT; the node must exit cleanly, promptly. */
  async function interruptAfter(on: Cluster, message: string): Promise<NodeProcess> {
    const node = startNode(on, on.peers[0]!, { extra: LINGER })
    started.push(node)
    await node.waitFor(message)
    node.kill('SIGINT')
    const [exit] = await exitsWithin([node], EXIT_ALLOWANCE_MS)
    expect(exit).toEqual({ code: 0, signal: null })
    expect(node.count('node stopped')).toBe(1)
    return node
  }

  it('while lingering after its last round', async () => {
    await interruptAfter(cluster, 'all rounds done')
  }, 180_000)

  it('in the middle of a round', async () => {
    // A quorum of 2 with one node: its first round never closes, and it trains on.
    const quorumDir = join(dir, 'quorum')
    const waiting = await createCluster({
      dir: quorumDir,
      peers: 1,
      imagesPerPeer: 4,
      charterArgs: ['--ae-rounds', '1', '--unet-rounds', '1', '--inner-steps', '2', '--quorum', '2'],
    })
    const node = await interruptAfter(waiting, 'contribution published')
    expect(node.count('all rounds done')).toBe(0)
  }, 180_000)
})
