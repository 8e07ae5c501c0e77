// Class 4, contribution weight (docs/THREAT-MODEL.md §4). Hostile members sign contributions
// whose payloads fit the model but whose self-reported `samples` exceed what the charter allows a
// round (inner steps x batch size of the phase): a billion in the autoencoder round, the bound
// plus one in the U-Net round from a fresh identity (the first one is charged below gossipsub's
// publish threshold by then, so honest peers no longer send it checkpoints). Every honest node rejects them at validation with
// SAMPLES_OUT_OF_RANGE (charging the sender, which is the only peer that ever relays them), the
// rounds close with the honest contributions, and no honest node charges another.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { loadConfig } from '../../../configs/index.ts'
import { compressDelta } from '../../../protocol/compression.ts'
import { encodeSafetensors } from '../../../protocol/safetensors.ts'
import type { NamedTensor } from '../../../node/round/tensors.ts'
import {
  bootstrapAddr,
  createCluster,
  exitsWithin,
  startNode,
  stopAll,
  type Cluster,
  type NodeProcess,
} from '../cluster-helpers/cluster.ts'
import { expectHonestOutcome, provenanceAt, type StatusSnapshot } from '../helpers/cooperative-outcome.ts'
import { HostileMember } from '../helpers/hostile-member.ts'

const INNER_STEPS = 4

/** A delta that fits the model and moves it like honest work (so only its weight is a lie). */
function plausibleDelta(layout: NamedTensor[]): Uint8Array {
  let x = 12345
  const delta = layout.map((t) => ({
    name: t.name,
    shape: t.shape,
    data: Float32Array.from(t.data, () => {
      x = (x * 1103515245 + 12345) % 2147483648
      return (x / 2147483648 - 0.5) * 1e-2
    }),
  }))
  return encodeSafetensors(compressDelta(delta, { kind: 'int8' }).entries)
}

describe('class 4: inflated sample counts', () => {
  let dir: string
  let cluster: Cluster
  let nodes: NodeProcess[] = []
  let statuses: Map<string, StatusSnapshot>
  const attackers: HostileMember[] = []
  const attacks: { statement: string; contributor: string; samples: number }[] = []

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'coop-adv-weight-'))
    cluster = await createCluster({
      dir,
      peers: 3,
      imagesPerPeer: 8,
      charterArgs: [
        ...['--ae-rounds', '1', '--unet-rounds', '1', '--inner-steps', String(INNER_STEPS)],
        ...['--quorum', '3', '--deadline', '120'],
      ],
    })
    // Both attackers join the publisher before the other honest nodes start, and so see each
    // genesis as it is gossiped: a member joining a running cooperative hears only its latest
    // checkpoint, and on a loaded machine this tiny cooperative can close round 1 before an
    // attacker that joined it later sees the autoencoder's genesis (payload-admission failed so).
    const [p1, ...others] = cluster.peers
    const publisher = startNode(cluster, p1!, { extra: ['--linger', '3'] })
    nodes = [publisher]
    const addr = await bootstrapAddr(p1!)
    const attacker = await HostileMember.start(cluster.charter)
    const fresh = await HostileMember.start(cluster.charter)
    attackers.push(attacker, fresh)
    await attacker.dial([addr])
    await fresh.dial([addr])
    const aeGenesis = await attacker.waitForCheckpoint('autoencoder', 0)
    nodes = [
      publisher,
      ...others.map((peer) => startNode(cluster, peer, { bootstrap: [addr], extra: ['--linger', '3'] })),
    ]
    const addrs = await Promise.all(cluster.peers.map((peer) => bootstrapAddr(peer)))
    await attacker.dial(addrs)
    await fresh.dial(addrs)
    const honest = cluster.peers.map((p) => p.peerId)
    const tiny = loadConfig('tiny')

    const aeLayout = await attacker.modelOf(aeGenesis, honest)
    const billion = 1_000_000_000
    attacks.push({
      ...(await attacker.contribute(aeGenesis, plausibleDelta(aeLayout), { samples: billion, repeats: 5 })),
      samples: billion,
    })

    const unetGenesis = await fresh.waitForCheckpoint('unet', 1)
    const unetLayout = await fresh.modelOf(unetGenesis, honest)
    const justOver = INNER_STEPS * tiny.unet.batchSize + 1
    attacks.push({
      ...(await fresh.contribute(unetGenesis, plausibleDelta(unetLayout), {
        samples: justOver,
        repeats: 5,
      })),
      samples: justOver,
    })

    const exits = await exitsWithin(nodes, 300_000)
    statuses = await expectHonestOutcome(nodes, exits)
  }, 420_000)

  afterAll(async () => {
    await stopAll(nodes.filter((n) => n.running))
    for (const a of attackers) await a.stop()
    if (process.env.COOP_TEST_KEEP === undefined) await rm(dir, { recursive: true, force: true })
  })

  it('rejects every inflated count at validation and charges the sender at every honest node', () => {
    expect(attacks).toHaveLength(2)
    for (const [name, status] of statuses)
      for (const attack of attacks) {
        const charged = status.penalized[attack.contributor]
        expect(charged?.penalties.SAMPLES_OUT_OF_RANGE, name).toBeGreaterThanOrEqual(1)
        expect(charged?.appScore, name).toBeLessThan(0)
      }
    console.log(
      JSON.stringify({
        class: 4,
        attackersAtPublisher: attacks.map(
          (a) => statuses.get(cluster.peers[0]!.name)?.penalized[a.contributor],
        ),
      }),
    )
  })

  it('closes each round with the honest contributions, each weighing what the charter allows', async () => {
    const honest = cluster.peers.map((p) => p.peerId).sort()
    const publishers = [cluster.peers[0]!.peerId]
    for (const [phase, round] of [
      ['autoencoder', 1],
      ['unet', 2],
    ] as const) {
      const provenance = await provenanceAt(cluster.peers[0]!, phase, round, publishers)
      expect(provenance.predicate.contributions.map((c) => c.contributor).sort()).toEqual(honest)
      const statements = provenance.predicate.contributions.map((c) => c.statement)
      for (const attack of attacks) expect(statements).not.toContain(attack.statement)
    }
    // Honest trainers claim exactly inner steps x batch size: the bound is not below honest work.
    const tiny = loadConfig('tiny')
    const published = nodes.flatMap((n) => n.lines.filter((l) => l.msg === 'contribution published'))
    expect(published.length).toBe(6)
    for (const line of published)
      expect(line.samples).toBe(
        INNER_STEPS * (line.phase === 'autoencoder' ? tiny.autoencoder.batchSize : tiny.unet.batchSize),
      )
  })
})
