// What the adversarial suite checks once a real cooperative ran under attack, as its members
// would see it: every honest node finished by itself on the same final checkpoint, no honest
// node charged another, and what each one reported (its status snapshot and checkpoints).
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { expect } from 'vitest'
import { verifyProvenance, type VerifiedProvenance } from '../../../protocol/provenance.ts'
import { checkpointDir } from '../../../node/round/layout.ts'
import { readSnapshot } from '../../../node/store/store.ts'
import type { ClusterPeer, NodeProcess } from '../cluster-helpers/cluster.ts'

export interface StatusSnapshot {
  state: string
  latestCheckpoint: { id: string; phase: string; round: number } | null
  checkpoints: { id: string; phase: string; round: number; contributions: number; verification: string }[]
  equivocations: { phase: string; round: number; adopted: string; conflicting: string; signers: string[] }[]
  refusedPayloads: { round: number; contribution: string; contributor: string; code: string }[]
  penalized: Record<string, { score: number; appScore: number; penalties: Record<string, number> }>
}

export async function statusOf(peer: ClusterPeer): Promise<StatusSnapshot> {
  return (await readSnapshot(peer.store, 'status')) as StatusSnapshot
}

export async function provenanceAt(
  peer: ClusterPeer,
  phase: 'autoencoder' | 'unet',
  round: number,
  publishers: string[],
): Promise<VerifiedProvenance> {
  const bytes = await readFile(join(checkpointDir(peer.store, phase, round), 'provenance.json'))
  return verifyProvenance(bytes, { publishers, threshold: 1 })
}

async function latestIds(peer: ClusterPeer): Promise<Record<string, string>> {
  const latest = JSON.parse(await readFile(join(peer.store, 'checkpoints', 'latest.json'), 'utf8')) as Record<
    string,
    { id: string }
  >
  return Object.fromEntries(Object.entries(latest).map(([phase, p]) => [phase, p.id]))
}

/**
 * Every honest node exited 0 after its last round, all on the publisher's final checkpoints, and
 * none charged another honest node. Returns their final status snapshots, by peer name.
 */
export async function expectHonestOutcome(
  nodes: NodeProcess[],
  exits: { code: number | null }[],
): Promise<Map<string, StatusSnapshot>> {
  const honest = new Set(nodes.map((n) => n.peer.peerId))
  exits.forEach((exit, i) => expect(exit.code, `${nodes[i]?.peer.name}:\n${nodes[i]?.tail()}`).toBe(0))
  for (const node of nodes) expect(node.count('all rounds done'), node.peer.name).toBe(1)
  const reference = await latestIds(nodes[0]!.peer)
  const statuses = new Map<string, StatusSnapshot>()
  for (const node of nodes) {
    expect(await latestIds(node.peer), node.peer.name).toEqual(reference)
    const status = await statusOf(node.peer)
    statuses.set(node.peer.name, status)
    const chargedHonest = Object.keys(status.penalized).filter((peer) => honest.has(peer))
    expect(
      chargedHonest,
      `${node.peer.name} charged honest peers: ${JSON.stringify(status.penalized)}`,
    ).toEqual([])
  }
  return statuses
}
