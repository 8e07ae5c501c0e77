// Class 10, equivocation and crowding (docs/THREAT-MODEL.md §10), each against three honest
// `coop start` processes on loopback.
// - Equivocation: the test charter names a second publisher whose key the hostile member holds.
//   It signs a second checkpoint for a round every honest node adopted, and an unverifiable one
//   for the open round before the honest publisher closes it (then announces it again once that
//   round closed). Honest nodes keep the first adopted (a verified one wins over one that arrived
//   first but does not verify), keep both envelopes as evidence, report them (`coop status`, the
//   logs), charge the equivocating signer, never each other, and do not fork.
// - Crowding: six fresh identities, each with a consent manifest of its own, send zero and
//   near-zero deltas into every round before honest trainers finish. They never count toward the
//   quorum (the trivial-delta floor), every round closes with the honest work, and each identity
//   is charged.
import { mkdtemp, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { compressDelta } from '../../../protocol/compression.ts'
import { sha256Digest } from '../../../protocol/digest.ts'
import { generateKey, peerIdString } from '../../../protocol/keys.ts'
import { createProvenance } from '../../../protocol/provenance.ts'
import { encodeSafetensors } from '../../../protocol/safetensors.ts'
import type { NamedTensor } from '../../../node/round/tensors.ts'
import { encodeGossipMessage } from '../../../node/validation/messages.ts'
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
import { randomDigest } from '../helpers/consent.ts'
import { HostileMember, type SeenCheckpoint } from '../helpers/hostile-member.ts'

/**
 * Three honest nodes; `beforeTrainers` runs once the publisher listens and before the trainers
 * start, so hostile members can be in place when the first round opens.
 */
async function startCooperative(
  dir: string,
  unetRounds: number,
  extraCharterArgs: string[] = [],
  beforeTrainers: (cluster: Cluster, publisherAddr: string) => Promise<void> = async () => {},
) {
  const charterArgs = ['--ae-rounds', '1', '--unet-rounds', String(unetRounds), '--inner-steps', '2']
  charterArgs.push('--quorum', '3', '--deadline', '120', ...extraCharterArgs)
  const cluster = await createCluster({ dir, peers: 3, imagesPerPeer: 8, charterArgs })
  const [p1, ...others] = cluster.peers
  const publisher = startNode(cluster, p1!, { extra: ['--linger', '3'] })
  const addr = await bootstrapAddr(p1!)
  await beforeTrainers(cluster, addr)
  const nodes = [
    publisher,
    ...others.map((peer) => startNode(cluster, peer, { bootstrap: [addr], extra: ['--linger', '3'] })),
  ]
  const addrs = await Promise.all(cluster.peers.map((peer) => bootstrapAddr(peer)))
  return { cluster, nodes, addrs }
}

function blobPath(store: string, digest: string): string {
  return join(store, 'blobs', 'sha256', digest.slice('sha256:'.length))
}

describe('class 10: a publisher that equivocates', () => {
  let dir: string
  let cluster: Cluster
  let nodes: NodeProcess[] = []
  let statuses: Map<string, StatusSnapshot>
  let attacker: HostileMember
  const conflicting = new Set<string>()

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'coop-adv-equivocation-'))
    const hostileKey = generateKey()
    // A fourth U-Net round, so the honest round 3 is not the last and nodes are still there for the re-announcement.
    const started = await startCooperative(dir, 3, ['--publisher', peerIdString(hostileKey.publicKey)])
    cluster = started.cluster
    nodes = started.nodes
    attacker = await HostileMember.start(cluster.charter, hostileKey)
    await attacker.dial(started.addrs)
    const sign = (base: SeenCheckpoint, changes: Record<string, unknown>) =>
      createProvenance(
        {
          ...base.verified.predicate,
          files: Object.fromEntries(base.verified.files),
          ...changes,
        } as Parameters<typeof createProvenance>[0],
        [hostileKey],
      )
    const announce = async (envelope: ReturnType<typeof createProvenance>) => {
      conflicting.add(sha256Digest(new Uint8Array(Buffer.from(envelope.payload, 'base64'))))
      await attacker.publish('checkpoints', encodeGossipMessage('checkpoint', envelope))
    }
    const adoptedEverywhere = (round: number) =>
      Promise.all(
        nodes.map((n, i) =>
          n.waitFor(
            i === 0 ? 'round closed' : 'checkpoint adopted',
            (l) => l.phase === 'unet' && l.round === round,
          ),
        ),
      )

    // A second checkpoint for a round every honest node has adopted: same round, other weights.
    await adoptedEverywhere(2)
    const round2 = await attacker.waitForCheckpoint('unet', 2)
    const otherFiles = {
      'config.json': round2.verified.files.get('config.json'),
      'model.safetensors': randomDigest(),
      'momentum.safetensors': randomDigest(),
    }
    const second = sign(round2, { files: otherFiles })
    await announce(second)
    // At once, a checkpoint for the open round 3 that cannot be verified (its payload exists
    // nowhere): honest trainers hold their round-3 work until it fails, then go on.
    const fake3 = sign(round2, {
      round: 3,
      parent: {
        checkpoint: round2.verified.files.get('model.safetensors'),
        provenance: round2.verified.digest,
      },
      contributions: [
        { statement: randomDigest(), contributor: attacker.peerId, delta: randomDigest(), manifests: [] },
      ],
      manifests: [],
      files: otherFiles,
    })
    await announce(fake3)
    // Once the honest round 3 is adopted everywhere, the fake is a second checkpoint for it too.
    await adoptedEverywhere(3)
    await announce(fake3)

    const exits = await exitsWithin(nodes, 300_000)
    statuses = await expectHonestOutcome(nodes, exits)
  }, 420_000)

  afterAll(async () => {
    await stopAll(nodes.filter((n) => n.running))
    await attacker?.stop()
    if (process.env.COOP_TEST_KEEP === undefined) await rm(dir, { recursive: true, force: true })
  })

  it('keeps the first adopted checkpoint everywhere: no fork, every round the honest publisher’s', async () => {
    const publisher = cluster.peers[0]!.peerId
    for (const round of [2, 3]) {
      const provenance = await provenanceAt(cluster.peers[0]!, 'unet', round, [publisher, attacker.peerId])
      expect(provenance.signers).toEqual([publisher])
      expect(conflicting.has(provenance.digest)).toBe(false)
      for (const peer of cluster.peers)
        expect(
          (await provenanceAt(peer, 'unet', round, [publisher, attacker.peerId])).digest,
          peer.name,
        ).toBe(provenance.digest)
    }
  })

  it('keeps both envelopes of each equivocation as evidence and reports it in coop status and the logs', async () => {
    for (const node of nodes) {
      const status = statuses.get(node.peer.name) as StatusSnapshot
      const seen = status.equivocations.map((e) => e.conflicting).sort()
      expect(seen, node.peer.name).toEqual([...conflicting].sort())
      for (const e of status.equivocations) expect(e.signers).toEqual([attacker.peerId])
      expect(node.count('checkpoint equivocation'), node.peer.name).toBe(conflicting.size)
      const printed = await runCoop(['status', '--store', node.peer.store])
      expect(printed.stdout).toContain('EQUIVOCATION unet round 2')
      expect(printed.stdout).toContain('EQUIVOCATION unet round 3')
    }
    // Both envelopes are blobs in the store (the evidence records name them).
    const { openStore } = await import('../../../node/store/store.ts')
    const store = await openStore(cluster.peers[1]!.store)
    try {
      const records = (await store.rounds.entries({ gte: 'equivocation/', lt: 'equivocation0' })).map(
        ([, v]) => v as { adoptedEnvelope: string; conflictingEnvelope: string },
      )
      expect(records).toHaveLength(conflicting.size)
      for (const r of records)
        for (const digest of [r.adoptedEnvelope, r.conflictingEnvelope])
          expect((await stat(blobPath(cluster.peers[1]!.store, digest))).isFile()).toBe(true)
    } finally {
      await store.close()
    }
  })

  it('charges the equivocating signer at every honest node', () => {
    for (const [name, status] of statuses) {
      const charged = status.penalized[attacker.peerId]
      expect(charged?.penalties.EQUIVOCATION, name).toBeGreaterThanOrEqual(1)
      expect(charged?.appScore, name).toBeLessThan(0)
    }
    console.log(
      JSON.stringify({
        class: '10-equivocation',
        evidence: statuses.get(cluster.peers[0]!.name)?.equivocations.length,
        attackerAtTrainer: statuses.get(cluster.peers[1]!.name)?.penalized[attacker.peerId],
      }),
    )
  })
})

describe('class 10: crowding the quorum with zero and near-zero deltas from fresh identities', () => {
  const IDENTITIES = 6
  let dir: string
  let cluster: Cluster
  let nodes: NodeProcess[] = []
  let statuses: Map<string, StatusSnapshot>
  const crowd: HostileMember[] = []
  let sent = 0

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'coop-adv-crowding-'))
    // The crowd is connected to the publisher before any honest trainer starts.
    const started = await startCooperative(dir, 2, [], async (c, publisherAddr) => {
      for (let i = 0; i < IDENTITIES; i++) {
        const member = await HostileMember.start(c.charter)
        await member.dial([publisherAddr])
        crowd.push(member)
      }
    })
    cluster = started.cluster
    nodes = started.nodes
    const honest = cluster.peers.map((p) => p.peerId)
    const trivial = (layout: NamedTensor[], i: number) =>
      encodeSafetensors(
        compressDelta(
          layout.map((t) => ({ ...t, data: new Float32Array(t.data.length).fill(i % 2 === 0 ? 0 : 1e-9) })),
          { kind: 'int8' },
        ).entries,
      )
    // Into every round, as soon as it opens: the crowd is faster than any honest trainer.
    for (const [phase, round] of [
      ['autoencoder', 0],
      ['unet', 1],
      ['unet', 2],
    ] as const) {
      const base = await crowd[0]!.waitForCheckpoint(phase, round)
      const layout = await crowd[0]!.modelOf(base, honest)
      await Promise.all(crowd.map((member, i) => member.contribute(base, trivial(layout, i))))
      sent += crowd.length
    }
    const exits = await exitsWithin(nodes, 300_000)
    statuses = await expectHonestOutcome(nodes, exits)
  }, 420_000)

  afterAll(async () => {
    await stopAll(nodes.filter((n) => n.running))
    for (const member of crowd) await member.stop()
    if (process.env.COOP_TEST_KEEP === undefined) await rm(dir, { recursive: true, force: true })
  })

  it('closes every round with the honest work only', async () => {
    const honest = cluster.peers.map((p) => p.peerId).sort()
    const publishers = [cluster.peers[0]!.peerId]
    let closed = 0
    for (const [phase, round] of [
      ['autoencoder', 1],
      ['unet', 2],
      ['unet', 3],
    ] as const) {
      const provenance = await provenanceAt(cluster.peers[0]!, phase, round, publishers)
      expect(
        provenance.predicate.contributions.map((c) => c.contributor).sort(),
        `${phase} ${round}`,
      ).toEqual(honest)
      closed += 1
    }
    const publisherStatus = statuses.get(cluster.peers[0]!.name) as StatusSnapshot
    console.log(
      JSON.stringify({
        class: '10-crowding',
        roundsClosedUnderAttack: closed,
        trivialDeltasSent: sent,
        refusedAtPublisher: publisherStatus.refusedPayloads.filter((r) => r.code === 'TRIVIAL_DELTA').length,
      }),
    )
  })

  it('refuses every trivial delta and charges each identity that sent one', () => {
    const publisherStatus = statuses.get(cluster.peers[0]!.name) as StatusSnapshot
    const trivial = publisherStatus.refusedPayloads.filter((r) => r.code === 'TRIVIAL_DELTA')
    expect(
      trivial.length,
      `refused per round: ${JSON.stringify(trivial.map((r) => [r.round, r.contributor.slice(-6)]))}`,
    ).toBe(sent)
    for (const member of crowd) {
      expect(publisherStatus.penalized[member.peerId]?.penalties.TRIVIAL_DELTA, member.peerId).toBe(3)
      expect(publisherStatus.penalized[member.peerId]?.appScore, member.peerId).toBeLessThan(0)
    }
  })
})
