// Class 5, checkpoint verification binds everything. A second publisher of the charter turns bad:
// it signs checkpoints that recompute bit-exactly from what they list, yet list a delta the named
// contributor never signed; it writes file names that are paths; it ships checkpoint folders with
// its own charter, or with a doctored parent momentum beside them. Real `coop start` processes on
// loopback (a publisher and two trainers), a real libp2p host for the attacker, real LevelDB stores;
// `coop checkpoint verify` run as a child process on what they leave.
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createCharter, verifyCharter, type VerifiedCharter } from '../../../protocol/charter.ts'
import { verifyContribution, type VerifiedContribution } from '../../../protocol/contribution.ts'
import { sha256Digest } from '../../../protocol/digest.ts'
import { envelopeBytes } from '../../../protocol/dsse.ts'
import { generateKey, peerIdString } from '../../../protocol/keys.ts'
import { verifyProvenance, type VerifiedProvenance } from '../../../protocol/provenance.ts'
import { layoutOf } from '../../../protocol/compression.ts'
import { decodeSafetensors, encodeSafetensors } from '../../../protocol/safetensors.ts'
import { memoryBlobSource } from '../../../node/p2p/blob.ts'
import type { CoopHost } from '../../../node/p2p/host.ts'
import { CHECKPOINT_FILE_MAX_BYTES } from '../../../node/round/constants.ts'
import { payloadLimit } from '../../../node/round/limits.ts'
import { decodeTensors } from '../../../node/round/tensors.ts'
import { encodeGossipMessage } from '../../../node/validation/messages.ts'
import {
  bootstrapAddr,
  createCluster,
  runCoop,
  startNode,
  stopAll,
  type Cluster,
  type NodeProcess,
} from '../cluster-helpers/cluster.ts'
import {
  forgeCheckpoint,
  negatedPayload,
  signWithFileNames,
  writeCheckpointFolder,
} from '../helpers/checkpoint-forger.ts'
import { startHost, waitFor } from '../helpers/net.ts'

interface VerifyJson {
  ok: boolean
  code?: string
  recomputation: string
  files: { name: string; ok: boolean }[]
}

async function verify(...args: string[]): Promise<{ code: number; report: VerifyJson; stdout: string }> {
  const result = await runCoop(['checkpoint', 'verify', ...args, '--json'])
  return { code: result.code, report: JSON.parse(result.stdout) as VerifyJson, stdout: result.stdout }
}

describe('a publisher that lists a delta its contributor never signed', () => {
  const attackerKey = generateKey()
  const attackerId = peerIdString(attackerKey.publicKey)
  let dir: string
  let cluster: Cluster
  let charterBytes: Uint8Array
  let charter: VerifiedCharter
  let attacker: CoopHost
  let nodes: NodeProcess[] = []
  let exits: { code: number | null }[] = []
  const served = new Map<string, Uint8Array>()
  const contributions: VerifiedContribution[] = []
  const checkpoints: VerifiedProvenance[] = []
  // What the attack used, kept for the offline checks.
  let genesis: { verified: VerifiedProvenance; model: Uint8Array; momentum: Uint8Array }
  let victimStatement: VerifiedContribution
  let honestDelta: Uint8Array
  let foreignDelta: Uint8Array
  let forgedId: string
  let publisher: NodeProcess
  let victim: NodeProcess

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'coop-adv-verify-'))
    // The attacker is a publisher of the charter (threshold 1), so everything it signs carries a
    // valid publisher signature: only the binding checks stand in its way.
    cluster = await createCluster({
      dir,
      peers: 3,
      imagesPerPeer: 8,
      charterArgs: [
        '--publisher',
        attackerId,
        '--ae-rounds',
        '1',
        '--unet-rounds',
        '1',
        '--inner-steps',
        '2',
        '--quorum',
        '2',
        '--deadline',
        '900',
      ],
    })
    charterBytes = new Uint8Array(await readFile(cluster.charter))
    charter = verifyCharter(charterBytes)
    attacker = await startHost({
      privateKey: attackerKey,
      coopId: charter.coopId,
      blobs: memoryBlobSource((digest) => served.get(digest)),
    })
    // The attacker's own node checks nothing and keeps what it can parse.
    for (const topic of ['consent', 'contributions', 'checkpoints'] as const)
      attacker.setValidator(topic, async () => {})
    attacker.onMessage('contributions', (msg) => {
      try {
        contributions.push(verifyContribution(msg.data.subarray(1)))
      } catch {
        // not a contribution
      }
    })
    attacker.onMessage('checkpoints', (msg) => {
      try {
        checkpoints.push(
          verifyProvenance(msg.data.subarray(1), { publishers: charter.charter.publishers, threshold: 1 }),
        )
      } catch {
        // not a checkpoint
      }
    })

    const [publisherPeer, victimPeer, latePeer] = cluster.peers as [
      (typeof cluster.peers)[0],
      (typeof cluster.peers)[0],
      (typeof cluster.peers)[0],
    ]
    // Quorum 2 and a far deadline: the round closes only once the late trainer contributes, which
    // it does only after the attack was judged, so the forgery never races the honest close.
    publisher = startNode(cluster, publisherPeer, { rounds: 1, extra: ['--no-train', '--linger', '5'] })
    const addr = await bootstrapAddr(publisherPeer)
    await attacker.dial(addr)
    victim = startNode(cluster, victimPeer, { bootstrap: [addr], rounds: 1, extra: ['--linger', '5'] })
    await attacker.dial(await bootstrapAddr(victimPeer))

    await waitFor(
      () => contributions.some((c) => c.contributor === victimPeer.peerId) && checkpoints.length > 0,
      "the victim's contribution and the genesis checkpoint",
      240_000,
    )
    victimStatement = contributions.find((c) => c.contributor === victimPeer.peerId)!
    const genesisVerified = checkpoints.find((c) => c.predicate.parent === null)!
    const fetch = (digest: string, providers: string[], maxBytes = CHECKPOINT_FILE_MAX_BYTES) =>
      attacker.fetchBlob(digest, { providers, maxBytes })
    genesis = {
      verified: genesisVerified,
      model: await fetch(genesisVerified.files.get('model.safetensors')!, [publisherPeer.peerId]),
      momentum: await fetch(genesisVerified.files.get('momentum.safetensors')!, [publisherPeer.peerId]),
    }
    honestDelta = await fetch(
      victimStatement.delta,
      [victimPeer.peerId, publisherPeer.peerId],
      payloadLimit(charter.charter, layoutOf(decodeTensors(genesis.model))),
    )
    foreignDelta = negatedPayload(honestDelta)
    const forged = forgeCheckpoint({
      coopId: charter.coopId,
      charter: charter.charter,
      publisherKey: attackerKey,
      parent: genesis,
      contribution: victimStatement,
      manifest: victimPeer.manifest,
      delta: foreignDelta,
      deltaDigest: sha256Digest(foreignDelta),
    })
    forgedId = forged.verified.digest
    // Served like an honest publisher serves what it aggregated, so nothing is missing but the binding.
    served.set(sha256Digest(foreignDelta), foreignDelta)
    for (const bytes of Object.values(forged.files)) served.set(sha256Digest(bytes), bytes)
    await attacker.publish('checkpoints', encodeGossipMessage('checkpoint', forged.envelope))
    await victim.waitFor('checkpoint rejected', (l) => l.checkpoint === forgedId, 120_000)
    await publisher.waitFor('checkpoint rejected', (l) => l.checkpoint === forgedId, 120_000)

    const late = startNode(cluster, latePeer, { bootstrap: [addr], rounds: 1, extra: ['--linger', '5'] })
    nodes = [publisher, victim, late]
    exits = await Promise.all(nodes.map((n) => n.exited))
  }, 600_000)

  afterAll(async () => {
    await stopAll(nodes.filter((n) => n.running))
    await attacker?.stop()
    await rm(dir, { recursive: true, force: true })
  })

  it("a real peer's verifier refuses it (CONTRIBUTION_MISMATCH) and charges the publisher who sent it", () => {
    for (const node of [victim, publisher]) {
      const line = node.lines.find((l) => l.msg === 'checkpoint rejected' && l.checkpoint === forgedId)
      expect(line).toMatchObject({ code: 'CONTRIBUTION_MISMATCH', from: attackerId })
      expect(node.count('checkpoint adopted', (l) => l.checkpoint === forgedId)).toBe(0)
    }
  })

  it('the honest round still closes and every peer adopts it, then exits 0', () => {
    expect(exits.map((e) => e.code)).toEqual([0, 0, 0])
    const closed = publisher.lines.find((l) => l.msg === 'round closed' && l.round === 1)
    expect(closed).toBeDefined()
    for (const node of nodes.slice(1))
      expect(
        node.count('checkpoint adopted', (l) => l.round === 1 && l.checkpoint === closed!.checkpoint),
      ).toBe(1)
  })

  it('coop checkpoint verify refuses the forged folder, whether or not the foreign delta is at hand', async () => {
    const victimPeer = cluster.peers[1]!
    const copies = await mkdtemp(join(dir, 'forged-'))
    await cp(
      join(victimPeer.store, 'checkpoints', 'autoencoder-r000000'),
      join(copies, 'autoencoder-r000000'),
      {
        recursive: true,
      },
    )
    const forged = forgeCheckpoint({
      coopId: charter.coopId,
      charter: charter.charter,
      publisherKey: attackerKey,
      parent: genesis,
      contribution: victimStatement,
      manifest: victimPeer.manifest,
      delta: foreignDelta,
      deltaDigest: sha256Digest(foreignDelta),
    })
    const folder = await writeCheckpointFolder(join(copies, 'autoencoder-r000001'), forged, charterBytes)
    // An auditor's copy of the victim's store that also holds the foreign delta: recomputation runs
    // and passes, so only the binding refuses.
    const auditStore = join(copies, 'store')
    await cp(victimPeer.store, auditStore, { recursive: true })
    const withoutDelta = await verify(folder, '--store', auditStore)
    expect(withoutDelta.code).toBe(1)
    expect(withoutDelta.report).toMatchObject({ ok: false, code: 'CONTRIBUTION_MISMATCH' })
    await writeFile(join(auditStore, 'blobs', 'sha256', sha256Digest(foreignDelta).slice(7)), foreignDelta)
    // verify only reads (no database): these two run side by side.
    const [withDelta, honest] = await Promise.all([
      verify(folder, '--store', auditStore),
      // The honest checkpoint of the same round verifies fully against the same store.
      verify(join(victimPeer.store, 'checkpoints', 'autoencoder-r000001'), '--store', auditStore),
    ])
    expect(withDelta.code).toBe(1)
    expect(withDelta.report).toMatchObject({ ok: false, code: 'CONTRIBUTION_MISMATCH' })
    expect(honest.code, honest.stdout).toBe(0)
    expect(honest.report.recomputation).toBe('passed')
  }, 120_000)

  // Each case writes its own copies and only reads the victim's store: the three run side by side.
  it.concurrent.each([
    ['a parent-relative path', (outside: string) => [`../${outside}`]],
    ['an absolute path', (_outside: string, absolute: string) => [absolute]],
    ['a path that climbs out through a subfolder', (outside: string) => [`model/../../${outside}`]],
  ])(
    'coop checkpoint verify refuses file names that are %s, and reads nothing outside the folder',
    async (_what, names) => {
      const copies = await mkdtemp(join(dir, 'paths-'))
      // A real file outside the checkpoint folder whose digest the provenance signs.
      const outside = new TextEncoder().encode('secret outside the checkpoint folder\n')
      await writeFile(join(copies, 'outside.bin'), outside)
      const honest = verifyProvenance(
        await readFile(
          join(cluster.peers[1]!.store, 'checkpoints', 'autoencoder-r000001', 'provenance.json'),
        ),
        { publishers: charter.charter.publishers, threshold: 1 },
      )
      const files = Object.fromEntries(honest.files)
      for (const name of names('outside.bin', join(copies, 'outside.bin')))
        files[name] = sha256Digest(outside)
      const envelope = signWithFileNames(attackerKey, honest.predicate, files)
      const folder = join(copies, 'autoencoder-r000001')
      await cp(join(cluster.peers[1]!.store, 'checkpoints', 'autoencoder-r000001'), folder, {
        recursive: true,
      })
      await writeFile(join(folder, 'provenance.json'), envelopeBytes(envelope))
      const result = await verify(folder, '--store', cluster.peers[1]!.store)
      expect(result.code).toBe(1)
      expect(result.report).toMatchObject({ ok: false, code: 'BAD_PROVENANCE', files: [] })
    },
  )

  it('coop checkpoint verify never takes the charter from the folder it verifies', async () => {
    const victimPeer = cluster.peers[1]!
    const copies = await mkdtemp(join(dir, 'charter-'))
    // The attacker's own cooperative: same model, itself the only publisher.
    const own = createCharter(
      { ...charter.charter, name: 'not the coop you joined', publishers: [attackerId] },
      [attackerKey],
    )
    const ownBytes = envelopeBytes(own.envelope)
    const forged = forgeCheckpoint({
      coopId: own.coopId,
      charter: own.charter,
      publisherKey: attackerKey,
      parent: genesis,
      contribution: victimStatement,
      manifest: victimPeer.manifest,
      delta: honestDelta,
      deltaDigest: victimStatement.delta,
    })
    const folder = await writeCheckpointFolder(join(copies, 'autoencoder-r000001'), forged, ownBytes)
    const pins = [
      ['--store', victimPeer.store],
      ['--charter', cluster.charter],
      ['--coop', charter.coopId],
    ]
    // Five independent runs that only read, side by side.
    const [alone, honest, ...pinned] = await Promise.all([
      verify(folder),
      verify(join(victimPeer.store, 'checkpoints', 'autoencoder-r000001'), '--coop', charter.coopId),
      ...pins.map((pin) => verify(folder, ...pin)),
    ])
    // With nothing to trust, the folder's own charter is not enough.
    expect(alone.code).toBe(1)
    expect(alone.report).toMatchObject({ ok: false, code: 'CHARTER_REQUIRED' })
    // Against the coop the user runs (its store, its charter file or its id): another coop's folder.
    pins.forEach((pin, i) => {
      const result = pinned[i]!
      expect(result.code, pin.join(' ')).toBe(1)
      expect(result.report).toMatchObject({ ok: false, code: 'CHARTER_MISMATCH' })
    })
    // The honest folder verifies when the coop id the user names matches its charter copy.
    expect(honest.code, honest.stdout).not.toBe(1)
    expect(honest.report.ok).toBe(true)
  })

  it("coop checkpoint verify uses a parent's momentum only if it is the one the parent's provenance signs", async () => {
    const victimPeer = cluster.peers[1]!
    const copies = await mkdtemp(join(dir, 'momentum-'))
    // A parent folder beside the checkpoint, genuine but for its momentum.
    const parentDir = join(copies, 'autoencoder-r000000')
    await cp(join(victimPeer.store, 'checkpoints', 'autoencoder-r000000'), parentDir, { recursive: true })
    const { tensors } = decodeSafetensors(genesis.momentum)
    const doctored = encodeSafetensors(
      [...tensors.values()].map((t) => ({ ...t, data: (t.data as Float32Array).map(() => 0.01) })),
      { format: 'pt' },
    )
    await writeFile(join(parentDir, 'momentum.safetensors'), doctored)
    // A checkpoint the attacker computed from that momentum (honest delta, honest binding).
    const forged = forgeCheckpoint({
      coopId: charter.coopId,
      charter: charter.charter,
      publisherKey: attackerKey,
      parent: { ...genesis, momentum: doctored },
      contribution: victimStatement,
      manifest: victimPeer.manifest,
      delta: honestDelta,
      deltaDigest: victimStatement.delta,
    })
    const folder = await writeCheckpointFolder(join(copies, 'autoencoder-r000001'), forged, charterBytes)
    // With the genuine parent in the store, the recomputation runs on the signed momentum and fails.
    const withStore = await verify(folder, '--store', victimPeer.store)
    expect(withStore.code).toBe(1)
    expect(withStore.report).toMatchObject({ ok: false, code: 'RECOMPUTE_MISMATCH', recomputation: 'failed' })
    // A store with the contributions but without the genuine parent: the doctored copy beside the
    // folder is then the only candidate, and it is not the parent: nothing is recomputed, nothing passes.
    const auditStore = join(copies, 'store')
    await cp(victimPeer.store, auditStore, { recursive: true })
    await rm(join(auditStore, 'checkpoints', 'autoencoder-r000000'), { recursive: true })
    await rm(join(auditStore, 'blobs', 'sha256', genesis.verified.digest.slice(7)))
    const alone = await verify(folder, '--store', auditStore)
    expect(alone.report).toMatchObject({ ok: true, recomputation: 'unavailable' })
  })

  it('the foreign delta has the honest layout and size: only the binding tells them apart', () => {
    expect(foreignDelta.byteLength).toBe(honestDelta.byteLength)
    expect(sha256Digest(foreignDelta)).not.toBe(victimStatement.delta)
  })
})
