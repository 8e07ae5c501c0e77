// A rights holder revokes part of their consent while the cooperative runs: the revocation is
// dropped into the custodian node's inbox, gossiped, applied by the custodian's trainer and
// recorded by the next checkpoint.
import { mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { verifyContribution } from '../../protocol/contribution.ts'
import { verifyExclusionDetails } from '../../protocol/exclusions.ts'
import { merkleRoot } from '../../protocol/merkle.ts'
import { verifyProvenance } from '../../protocol/provenance.ts'
import { createRevocation, verifyRevocation } from '../../protocol/revocation.ts'
import { inboxDir, listCheckpointDirs } from '../../node/round/layout.ts'
import { openStore } from '../../node/store/store.ts'
import {
  bootstrapAddr,
  createCluster,
  startNode,
  stopAll,
  runCoop,
  type NodeProcess,
} from './cluster-helpers/cluster.ts'

describe('revocation between rounds', () => {
  let dir: string
  let nodes: NodeProcess[] = []

  afterAll(async () => {
    await stopAll(nodes.filter((n) => n.running))
    await rm(dir, { recursive: true, force: true })
  })

  it('the next checkpoint records the excluded items and the custodian trains without them', async () => {
    dir = await mkdtemp(join(tmpdir(), 'coop-revocation-'))
    const cluster = await createCluster({
      dir,
      peers: 3,
      imagesPerPeer: 10,
      charterArgs: [
        '--ae-rounds',
        '1',
        '--unet-rounds',
        '2',
        '--inner-steps',
        '8',
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
    const publisher = startNode(cluster, p1, { extra: ['--linger', '3'] })
    const addr = await bootstrapAddr(p1)
    const custodian = startNode(cluster, p2, { bootstrap: [addr], extra: ['--linger', '3'] })
    const other = startNode(cluster, p3, { bootstrap: [addr], extra: ['--linger', '3'] })
    nodes = [publisher, custodian, other]

    // Between rounds 1 and 2: the rights holder of peer-2 withdraws three images.
    await custodian.waitFor('checkpoint adopted', (l) => l.round === 1 && l.phase === 'autoencoder', 180_000)
    const revokedItems = p2.images.slice(0, 3)
    const notice = createRevocation({
      issuerKey: p2.rightsKey,
      manifest: p2.manifestId,
      items: revokedItems,
      reason: 'test',
    })
    const revocationId = verifyRevocation(notice).digest
    const temp = join(inboxDir(p2.store), '.revoke.tmp')
    await writeFile(temp, JSON.stringify(notice))
    await rename(temp, join(inboxDir(p2.store), 'revoke.json'))

    const received = await publisher.waitFor(
      'revocation received',
      (l) => l.revocation === revocationId,
      60_000,
    )
    const excluded = await custodian.waitFor(
      'withdrawn items excluded from training',
      (l) => l.reason === 'revoked',
      60_000,
    )
    expect(excluded.items).toBe(3)
    await Promise.all(nodes.map((n) => n.exited))

    // Exactly one checkpoint records the revocation: the first one closed after the publisher received it.
    const recording: { round: number; excludedItems: string[] }[] = []
    for (const checkpointDir of await listCheckpointDirs(p1.store)) {
      const p = verifyProvenance(await readFile(join(checkpointDir, 'provenance.json')), {
        publishers: [p1.peerId],
        threshold: 1,
      }).predicate
      // The provenance signs a summary; the details document it names sits beside it.
      if (p.exclusions.details === null) continue
      const details = verifyExclusionDetails(
        await readFile(join(checkpointDir, 'exclusions.json')),
        p.exclusions,
      )
      if (details.revocations.includes(revocationId))
        recording.push({ round: p.round, excludedItems: details.items })
    }
    expect(recording).toHaveLength(1)
    expect(recording[0]!.excludedItems).toEqual([...revokedItems].sort())
    // Closing (freezing the set) is when the publisher records the revocations it knows.
    const closedAfter = publisher.lines.filter(
      (l) => l.msg === 'round closing' && (l.time as number) >= (received.time as number),
    )
    expect(recording[0]!.round).toBe(closedAfter[0]!.round)

    // The custodian's contributions from then on name only the remaining items.
    const remaining = p2.images.filter((i) => !revokedItems.includes(i))
    const store = await openStore(p1.store)
    try {
      const ownLast = custodian.lines.filter((l) => l.msg === 'contribution published').at(-1)!
      expect(ownLast.round).toBe(3)
      const record = (await store.contributions.entries())
        .map(([, v]) => v as { id: string; envelope: string })
        .find((r) => r.id === ownLast.contribution)!
      const envelope = await store.getBlob(record.envelope)
      const statement = verifyContribution(envelope as Uint8Array)
      expect(statement.predicate.itemCount).toBe(remaining.length)
      expect(statement.predicate.itemsRoot).toBe(merkleRoot(remaining))
    } finally {
      await store.close()
    }

    // `coop trace --image` says plainly that a revoked image is revoked, and where that was recorded.
    const trace = await runCoop(['trace', '--store', p1.store, '--image', revokedItems[0]!])
    expect(trace.code, trace.stderr).toBe(0)
    expect(trace.stdout).toContain(
      `REVOKED: its rights holder withdrew consent; excluded from training since unet round ${recording[0]!.round}`,
    )
    expect(trace.stdout).toContain(`recording revocation ${revocationId}`)
    // It trained in the rounds before, and the trace still lists those checkpoints.
    expect(trace.stdout).toContain('checkpoints that learned from it before the revocation')
    const json = await runCoop(['trace', '--store', p1.store, '--image', revokedItems[0]!, '--json'])
    expect(JSON.parse(json.stdout).revoked).toMatchObject({
      round: recording[0]!.round,
      phase: 'unet',
      revocations: [revocationId],
    })
    const kept = await runCoop(['trace', '--store', p1.store, '--image', remaining[0]!, '--json'])
    expect(JSON.parse(kept.stdout).revoked).toBeNull()
    expect((await runCoop(['trace', '--store', p1.store, '--image', remaining[0]!])).stdout).not.toContain(
      'REVOKED',
    )
  }, 300_000)
})
