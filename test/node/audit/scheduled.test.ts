// The charter's audit requirement on a real `coop start` publisher: with `--audit-every 2` it
// audits U-Net rounds 2 and 4 on its own images in a child process, signs the audits and attaches
// them to those checkpoint directories (and no other). An audit lost to a crash is redone at the
// next start.
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { verifyAudit } from '../../../protocol/audit.ts'
import { verifyProvenance } from '../../../protocol/provenance.ts'
import { auditDue } from '../../../node/audit/scheduler.ts'
import { checkpointDir, listCheckpointDirs } from '../../../node/round/layout.ts'
import { verifyCharter } from '../../../protocol/charter.ts'
import {
  createCluster,
  exists,
  exitsWithin,
  startNode,
  stopAll,
  type Cluster,
  type NodeProcess,
} from '../cluster-helpers/cluster.ts'

describe('scheduled memorization audits (charter audit.every)', () => {
  let dir: string
  let coop: Cluster
  const nodes: NodeProcess[] = []

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'coop-audit-every-'))
    coop = await createCluster({
      dir,
      peers: 1,
      imagesPerPeer: 6,
      charterArgs: [
        '--ae-rounds',
        '1',
        '--unet-rounds',
        '4',
        '--inner-steps',
        '2',
        '--quorum',
        '1',
        '--audit-every',
        '2',
        '--audit-samples-per-class',
        '2',
      ],
    })
    const publisher = startNode(coop, coop.peers[0]!, { extra: ['--linger', '0'] })
    nodes.push(publisher)
    expect((await exitsWithin([publisher], 900_000))[0]?.code).toBe(0)
  }, 1_000_000)

  afterAll(async () => {
    await stopAll(nodes.filter((n) => n.running))
    await rm(dir, { recursive: true, force: true })
  })

  it('the charter decides which U-Net rounds are due', async () => {
    const { charter } = verifyCharter(new Uint8Array(await readFile(coop.charter)))
    // One autoencoder round: the U-Net genesis is round 1, its rounds 2..5.
    expect([1, 2, 3, 4, 5].filter((r) => auditDue(charter, r))).toEqual([3, 5])
  })

  it('attaches a signed audit of exactly the due checkpoints, by the publisher, on its own images', async () => {
    const peer = coop.peers[0]!
    const { charter } = verifyCharter(new Uint8Array(await readFile(coop.charter)))
    const audited: number[] = []
    for (const d of await listCheckpointDirs(peer.store)) {
      if (!(await exists(join(d, 'audit.dsse.json')))) continue
      const provenance = verifyProvenance(new Uint8Array(await readFile(join(d, 'provenance.json'))), {
        publishers: charter.publishers,
        threshold: 1,
      })
      const audit = verifyAudit(new Uint8Array(await readFile(join(d, 'audit.dsse.json'))))
      expect(audit.auditor).toBe(peer.peerId)
      expect(audit.predicate.checkpoint).toBe(provenance.digest)
      expect(audit.predicate.round).toBe(provenance.predicate.round)
      expect(Object.fromEntries(audit.files)).toEqual(Object.fromEntries(provenance.files))
      expect(audit.predicate.images).toBe(peer.images.length)
      expect(audit.predicate.method.samplesPerClass).toBe(2)
      const { sha256Digest } = await import('../../../protocol/digest.ts')
      expect(audit.predicate.report).toBe(sha256Digest(new Uint8Array(await readFile(join(d, 'audit.json')))))
      audited.push(provenance.predicate.round)
    }
    expect(audited).toEqual([3, 5])
    expect(nodes[0]!.count('memorization audit attached')).toBe(2)
  })

  it('an audit lost before it was attached is redone at the next start', async () => {
    const peer = coop.peers[0]!
    const lost = join(checkpointDir(peer.store, 'unet', 3), 'audit.dsse.json')
    await rm(lost)
    const again = startNode(coop, peer, { extra: ['--linger', '0'] })
    nodes.push(again)
    expect((await exitsWithin([again], 500_000))[0]?.code).toBe(0)
    expect(await exists(lost)).toBe(true)
    expect(again.lines.filter((l) => l.msg === 'memorization audit attached').map((l) => l.round)).toEqual([
      3,
    ])
    expect(verifyAudit(new Uint8Array(await readFile(lost))).predicate.round).toBe(3)
  }, 520_000)
})
