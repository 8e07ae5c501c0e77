// Four real `coop start` processes (one publisher-trainer, three trainers, one Twemoji category
// each) on loopback TCP complete three rounds: one cooperative autoencoder round and two U-Net
// rounds. Checks what a member of the cooperative would check: every checkpoint verifies with
// recomputation on every peer, provenance lists exactly the accepted contributions and their
// manifests, and `coop trace` follows one peer's image to exactly the checkpoints after its
// first accepted contribution.
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { sha256Digest } from '../../protocol/digest.ts'
import { envelopeBytes } from '../../protocol/dsse.ts'
import { createProvenance, verifyProvenance } from '../../protocol/provenance.ts'
import { listCheckpointDirs } from '../../node/round/layout.ts'
import {
  bootstrapAddr,
  createCluster,
  runCoop,
  startNode,
  stopAll,
  type Cluster,
  type NodeProcess,
} from './cluster-helpers/cluster.ts'

const ROUNDS = 3

describe('a four-peer cooperative', () => {
  let dir: string
  let cluster: Cluster
  let nodes: NodeProcess[] = []
  let exits: { code: number | null }[] = []

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'coop-cluster-'))
    cluster = await createCluster({
      dir,
      peers: 4,
      imagesPerPeer: 12,
      charterArgs: [
        '--ae-rounds',
        '1',
        '--unet-rounds',
        '2',
        '--inner-steps',
        '2',
        '--quorum',
        '4',
        '--deadline',
        '120',
      ],
    })
    const publisher = startNode(cluster, cluster.peers[0]!, { extra: ['--linger', '3'] })
    const addr = await bootstrapAddr(cluster.peers[0]!)
    nodes = [
      publisher,
      ...cluster.peers
        .slice(1)
        .map((peer) => startNode(cluster, peer, { bootstrap: [addr], extra: ['--linger', '3'] })),
    ]
    exits = await Promise.all(nodes.map((n) => n.exited))
  }, 240_000)

  afterAll(async () => {
    await stopAll(nodes.filter((n) => n.running))
    await rm(dir, { recursive: true, force: true })
  })

  it('every node finishes all rounds and exits 0', () => {
    expect(exits.map((e) => e.code)).toEqual([0, 0, 0, 0])
    for (const node of nodes) expect(node.count('all rounds done')).toBe(1)
  })

  it('every peer recomputed every non-genesis checkpoint bit-exactly before adopting it', () => {
    expect(nodes[0]!.count('round closed')).toBe(ROUNDS)
    for (const node of nodes.slice(1)) {
      const adopted = node.lines.filter(
        (l) => l.msg === 'checkpoint adopted' && (l.contributions as number) > 0,
      )
      expect(adopted.map((l) => l.round).sort()).toEqual([1, 2, 3])
      expect(node.count('checkpoint rejected')).toBe(0)
    }
  })

  it('coop checkpoint verify passes with recomputation on every peer store', async () => {
    for (const peer of cluster.peers) {
      const dirs = await listCheckpointDirs(peer.store)
      // genesis (autoencoder), round 1 (autoencoder), genesis (unet), rounds 2 and 3 (unet)
      expect(dirs.map((d) => d.split('/').pop())).toEqual([
        'autoencoder-r000000',
        'autoencoder-r000001',
        'unet-r000001',
        'unet-r000002',
        'unet-r000003',
      ])
      const results = await Promise.all(
        dirs.map((d) =>
          runCoop(['checkpoint', 'verify', d, '--store', peer.store, '--require-recompute', '--json']),
        ),
      )
      results.forEach((result, i) => {
        const checkpointDir = dirs[i] as string
        const report = JSON.parse(result.stdout) as { ok: boolean; recomputation: string }
        expect(result.code, `${peer.name} ${checkpointDir}: ${result.stdout}`).toBe(0)
        expect(report.recomputation).toBe(
          checkpointDir.endsWith('r000000') || checkpointDir.endsWith('unet-r000001') ? 'genesis' : 'passed',
        )
      })
    }
  }, 120_000)

  it('coop checkpoint verify catches a changed file and a signed checkpoint that does not recompute', async () => {
    const peer = cluster.peers[1]!
    const source = join(peer.store, 'checkpoints', 'unet-r000002')
    // Siblings are where verify looks for the parent, so the copies sit next to a copy of it.
    const copies = await mkdtemp(join(dir, 'copies-'))
    await cp(join(peer.store, 'checkpoints', 'unet-r000001'), join(copies, 'unet-r000001'), {
      recursive: true,
    })
    const changed = join(copies, 'changed')
    await cp(source, changed, { recursive: true })
    const model = new Uint8Array(await readFile(join(changed, 'model.safetensors')))
    model[model.length - 1] = model[model.length - 1]! ^ 0x01
    await writeFile(join(changed, 'model.safetensors'), model)

    // A publisher signs weights that are not what its listed contributions produce.
    const forged = join(copies, 'forged')
    await cp(source, forged, { recursive: true })
    await writeFile(join(forged, 'model.safetensors'), model)
    const original = verifyProvenance(await readFile(join(source, 'provenance.json')), {
      publishers: [cluster.peers[0]!.peerId],
      threshold: 1,
    })
    const files = Object.fromEntries(original.files)
    files['model.safetensors'] = sha256Digest(model)
    await writeFile(
      join(forged, 'provenance.json'),
      envelopeBytes(createProvenance({ ...original.predicate, files }, [cluster.peers[0]!.nodeKey])),
    )
    // verify only reads (no database): the three runs go side by side.
    const [result, forgedResult, honest] = await Promise.all([
      runCoop(['checkpoint', 'verify', changed, '--store', peer.store, '--json']),
      runCoop(['checkpoint', 'verify', forged, '--store', peer.store, '--json']),
      runCoop(['checkpoint', 'verify', join(copies, 'unet-r000001'), '--charter', cluster.charter, '--json']),
    ])
    expect(result.code).toBe(1)
    expect(JSON.parse(result.stdout)).toMatchObject({ ok: false, code: 'FILE_DIGEST_MISMATCH' })
    expect(forgedResult.code).toBe(1)
    expect(JSON.parse(forgedResult.stdout)).toMatchObject({
      ok: false,
      code: 'RECOMPUTE_MISMATCH',
      recomputation: 'failed',
    })
    expect(honest.code, honest.stdout).toBe(0)
  })

  it('each provenance lists exactly the accepted contributions and the manifests they used', async () => {
    const publishedByRound = new Map<number, Map<string, string>>()
    for (const node of nodes) {
      for (const line of node.lines.filter((l) => l.msg === 'contribution published')) {
        const round = line.round as number
        const map = publishedByRound.get(round) ?? new Map<string, string>()
        map.set(line.contribution as string, node.peer.peerId)
        publishedByRound.set(round, map)
      }
    }
    const charter = JSON.parse(await readFile(cluster.charter, 'utf8')) as object
    const publisher = cluster.peers[0]!.peerId
    const manifestOf = new Map(cluster.peers.map((p) => [p.peerId, p.manifestId]))
    const firstStore = cluster.peers[1]!.store
    for (const checkpointDir of await listCheckpointDirs(firstStore)) {
      const provenance = verifyProvenance(await readFile(join(checkpointDir, 'provenance.json')), {
        publishers: [publisher],
        threshold: 1,
      })
      const p = provenance.predicate
      expect(charter).toBeTruthy()
      const published = publishedByRound.get(p.round) ?? new Map()
      if (p.parent === null) {
        expect(p.contributions).toEqual([])
        continue
      }
      // Quorum 4 of 4: every peer's contribution for the round, and nothing else.
      expect(new Set(p.contributions.map((c) => c.statement))).toEqual(new Set(published.keys()))
      for (const c of p.contributions) {
        expect(c.contributor).toBe(published.get(c.statement))
        expect(c.manifests).toEqual([manifestOf.get(c.contributor)])
      }
      expect(p.manifests).toEqual([...manifestOf.values()].sort())
    }
  })

  it('coop trace follows an image to exactly the checkpoints after its first accepted contribution', async () => {
    const peer = cluster.peers[2]!
    const image = peer.images[0]!
    const result = await runCoop(['trace', '--store', cluster.peers[3]!.store, '--image', image, '--json'])
    expect(result.code, result.stderr).toBe(0)
    const trace = JSON.parse(result.stdout) as {
      checkpoints: { phase: string; round: number; via: { peer: string; round: number }[] }[]
    }
    // Its first accepted contribution is round 1 (autoencoder): everything from there on, through
    // the U-Net's dependency on that autoencoder, but not the autoencoder genesis.
    expect(trace.checkpoints.map((c) => `${c.phase}-${c.round}`)).toEqual([
      'autoencoder-1',
      'unet-1',
      'unet-2',
      'unet-3',
    ])
    for (const c of trace.checkpoints)
      expect(new Set(c.via.map((v) => v.peer))).toEqual(new Set([peer.peerId]))
    const other = await runCoop([
      'trace',
      '--store',
      cluster.peers[3]!.store,
      '--image',
      'sha256:' + '0'.repeat(64),
      '--json',
    ])
    expect((JSON.parse(other.stdout) as { checkpoints: unknown[] }).checkpoints).toEqual([])
  })

  it('coop trace --checkpoint lists every rights holder with its license and item count', async () => {
    const latest = JSON.parse(
      await readFile(join(cluster.peers[1]!.store, 'checkpoints', 'latest.json'), 'utf8'),
    ) as { unet: { id: string } }
    const result = await runCoop([
      'trace',
      '--store',
      cluster.peers[1]!.store,
      '--checkpoint',
      latest.unet.id,
      '--json',
    ])
    expect(result.code, result.stderr).toBe(0)
    const attribution = JSON.parse(result.stdout) as {
      license: string
      entries: { name: string; license: string; items: number }[]
    }
    expect(attribution.license).toBe('CC-BY-4.0')
    expect(attribution.entries.map((e) => e.name).sort()).toEqual(
      cluster.peers.map((p) => `Rights holder of ${p.name}`).sort(),
    )
    for (const entry of attribution.entries) expect(entry.items).toBe(12)
  })

  it('coop status reads the finished node without opening its database', async () => {
    const result = await runCoop(['status', '--store', cluster.peers[1]!.store, '--json'])
    expect(result.code, result.stderr).toBe(0)
    const status = JSON.parse(result.stdout) as {
      round: number | null
      latestCheckpoint: { phase: string; round: number }
      running: boolean
    }
    expect(status.round).toBeNull()
    expect(status.latestCheckpoint).toMatchObject({ phase: 'unet', round: 3 })
    expect(status.running).toBe(false)
  })
})
