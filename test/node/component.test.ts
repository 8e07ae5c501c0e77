// A cooperative that adopts another cooperative's autoencoder as a component instead of training
// one. A one-peer cooperative first trains a one-round autoencoder; a second cooperative's
// charter pins that checkpoint (`coop charter create --autoencoder`); its publisher imports the
// directory at start, the other peer fetches the model by the charter's digest, and both finish
// two U-Net rounds whose provenance names the component. A charter that pins another checkpoint
// makes `coop start --autoencoder` fail before anything is stored.
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { verifyCharter } from '../../protocol/charter.ts'
import { sha256Digest } from '../../protocol/digest.ts'
import { verifyProvenance } from '../../protocol/provenance.ts'
import { checkpointDir, listCheckpointDirs } from '../../node/round/layout.ts'
import {
  bootstrapAddr,
  createCluster,
  exists,
  exitsWithin,
  runCoop,
  startNode,
  stopAll,
  type Cluster,
  type NodeProcess,
} from './cluster-helpers/cluster.ts'

describe('a component autoencoder from another cooperative', () => {
  let dir: string
  let source: Cluster
  let coop: Cluster
  let aeDir: string
  let nodes: NodeProcess[] = []
  let exits: { code: number | null }[] = []

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'coop-component-'))
    source = await createCluster({
      dir: join(dir, 'source'),
      peers: 1,
      imagesPerPeer: 6,
      charterArgs: ['--ae-rounds', '1', '--unet-rounds', '0', '--inner-steps', '2', '--quorum', '1'],
    })
    const trainer = startNode(source, source.peers[0]!, { extra: ['--linger', '0'] })
    nodes.push(trainer)
    expect((await exitsWithin([trainer], 60_000))[0]?.code).toBe(0)
    aeDir = checkpointDir(source.peers[0]!.store, 'autoencoder', 1)

    coop = await createCluster({
      dir: join(dir, 'coop'),
      peers: 2,
      imagesPerPeer: 6,
      charterArgs: [
        '--autoencoder',
        aeDir,
        '--unet-rounds',
        '2',
        '--inner-steps',
        '2',
        '--quorum',
        '2',
        '--deadline',
        '60',
      ],
    })
    const publisher = startNode(coop, coop.peers[0]!, { extra: ['--linger', '3', '--autoencoder', aeDir] })
    const addr = await bootstrapAddr(coop.peers[0]!)
    const other = startNode(coop, coop.peers[1]!, { bootstrap: [addr], extra: ['--linger', '3'] })
    nodes.push(publisher, other)
    exits = await exitsWithin([publisher, other], 120_000)
  }, 200_000)

  afterAll(async () => {
    await stopAll(nodes.filter((n) => n.running))
    await rm(dir, { recursive: true, force: true })
  })

  it('the charter pins the component by model digest and provenance, and trains no autoencoder', async () => {
    const { charter } = verifyCharter(new Uint8Array(await readFile(coop.charter)))
    const envelope = new Uint8Array(await readFile(join(aeDir, 'provenance.json')))
    const provenance = verifyProvenance(envelope, { publishers: [source.peers[0]!.peerId], threshold: 1 })
    expect(charter.phases.autoencoder).toEqual({
      mode: 'component',
      checkpoint: sha256Digest(new Uint8Array(await readFile(join(aeDir, 'model.safetensors')))),
      provenance: provenance.digest,
    })
  })

  it('both peers finish the U-Net rounds, the other one without the directory', () => {
    expect(exits.map((e) => e.code)).toEqual([0, 0])
    expect(nodes[1]!.count('component autoencoder imported')).toBe(1)
    expect(nodes[1]!.count('round closed')).toBe(2)
    expect(nodes[2]!.count('all rounds done')).toBe(1)
    expect(nodes[2]!.count('checkpoint rejected')).toBe(0)
  })

  it('every U-Net checkpoint names the component and verifies with recomputation', async () => {
    const { charter } = verifyCharter(new Uint8Array(await readFile(coop.charter)))
    const pinned = charter.phases.autoencoder as { checkpoint: string; provenance: string }
    for (const peer of coop.peers) {
      const unetDirs = (await listCheckpointDirs(peer.store)).filter((d) => d.includes('unet-r'))
      expect(unetDirs.map((d) => d.slice(-6))).toEqual(['000000', '000001', '000002'])
      for (const d of unetDirs) {
        const p = verifyProvenance(new Uint8Array(await readFile(join(d, 'provenance.json'))), {
          publishers: charter.publishers,
          threshold: 1,
        })
        expect(p.predicate.components).toEqual([
          { role: 'autoencoder', checkpoint: pinned.checkpoint, provenance: pinned.provenance },
        ])
      }
      const last = unetDirs.at(-1)!
      const verify = await runCoop([
        'checkpoint',
        'verify',
        last,
        '--store',
        peer.store,
        '--require-recompute',
      ])
      expect(verify.stdout).toContain('VALID')
      expect(verify.code).toBe(0)
    }
  })

  it('--autoencoder and --ae-rounds exclude each other', async () => {
    const peer = coop.peers[0]!
    const result = await runCoop([
      'charter',
      'create',
      '--config',
      'tiny',
      '--publisher',
      peer.peerId,
      '--key',
      peer.nodeKeyPath,
      '--autoencoder',
      aeDir,
      '--ae-rounds',
      '1',
      '--out',
      join(dir, 'never.json'),
    ])
    expect(result.code).toBe(2)
    expect(await exists(join(dir, 'never.json'))).toBe(false)
  })

  it('charter create refuses a component that does not fit the model or whose model is not the signed one', async () => {
    const peer = coop.peers[0]!
    const create = (config: string, ae: string) =>
      runCoop([
        'charter',
        'create',
        '--config',
        config,
        '--publisher',
        peer.peerId,
        '--key',
        peer.nodeKeyPath,
        '--autoencoder',
        ae,
        '--out',
        join(dir, 'never.json'),
      ])
    // emoji32 has 32 px images and a deeper autoencoder than the tiny one the source trained.
    const unfit = await create('emoji32', aeDir)
    expect(unfit.code).toBe(1)
    expect(unfit.stderr).toContain('COMPONENT_MISMATCH')
    const tampered = join(dir, 'tampered')
    await cp(aeDir, tampered, { recursive: true })
    const model = new Uint8Array(await readFile(join(tampered, 'model.safetensors')))
    model[model.length - 1] = (model[model.length - 1]! + 1) % 256
    await writeFile(join(tampered, 'model.safetensors'), model)
    const forged = await create('tiny', tampered)
    expect(forged.code).toBe(1)
    expect(forged.stderr).toContain('FILE_DIGEST_MISMATCH')
    expect(await exists(join(dir, 'never.json'))).toBe(false)
  })

  it('a charter pinning another checkpoint makes start --autoencoder fail with COMPONENT_MISMATCH, storing nothing', async () => {
    const peer = coop.peers[0]!
    const wrongCharter = join(dir, 'wrong-charter.json')
    // The source's genesis autoencoder is a valid checkpoint too, just not the one we hand over.
    const created = await runCoop([
      'charter',
      'create',
      '--config',
      'tiny',
      '--publisher',
      peer.peerId,
      '--key',
      peer.nodeKeyPath,
      '--autoencoder',
      checkpointDir(source.peers[0]!.store, 'autoencoder', 0),
      '--out',
      wrongCharter,
    ])
    expect(created.code).toBe(0)
    const store = join(dir, 'wrong-store')
    const started = await runCoop([
      'start',
      '--charter',
      wrongCharter,
      '--store',
      store,
      '--data',
      peer.data,
      '--consent',
      peer.consentPath,
      '--key',
      peer.nodeKeyPath,
      '--publisher',
      '--autoencoder',
      aeDir,
      '--linger',
      '0',
    ])
    expect(started.code).not.toBe(0)
    expect(started.stderr).toContain('COMPONENT_MISMATCH')
    expect(await exists(store)).toBe(false)
  })
})
