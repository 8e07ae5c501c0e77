// Unlearning with a receipt, with real `coop start` processes on loopback. A cooperative whose
// charter says `--on-revocation rollback` (and pins another cooperative's autoencoder, so its
// U-Net genesis never saw the images) trains; after U-Net round 2 a rights holder revokes two
// images. The publisher closes the next round as a rollback to the newest checkpoint whose whole
// lineage never used them (the genesis), signs an unlearning receipt, and training continues
// from there; the other peer checks the receipt and follows. Afterwards: the final lineage
// provably excludes the items, the receipt verifies, `coop checkpoint verify` passes the lineage
// check, and `coop trace --image` says which checkpoints used the image, which receipt superseded
// them, and that the current lineage does not use it.
import { mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { verifyCharter } from '../../protocol/charter.ts'
import { verifyContribution } from '../../protocol/contribution.ts'
import { merkleRoot } from '../../protocol/merkle.ts'
import { verifyProvenance } from '../../protocol/provenance.ts'
import { verifyReceipt } from '../../protocol/receipt.ts'
import { createRevocation, verifyRevocation } from '../../protocol/revocation.ts'
import { loadLineage } from '../../node/round/audit.ts'
import { checkpointDir, inboxDir, listCheckpointDirs } from '../../node/round/layout.ts'
import { lineageUses } from '../../node/round/unlearning-files.ts'
import { RECEIPT_FILE } from '../../node/round/unlearning.ts'
import { openStore } from '../../node/store/store.ts'
import {
  bootstrapAddr,
  createCluster,
  exitsWithin,
  runCoop,
  startNode,
  stopAll,
  type Cluster,
  type NodeProcess,
} from './cluster-helpers/cluster.ts'

const UNET_ROUNDS = 5

describe('unlearning by rollback', () => {
  let dir: string
  let coop: Cluster
  let nodes: NodeProcess[] = []
  let publisher: NodeProcess
  let custodian: NodeProcess
  let exits: { code: number | null }[] = []
  let revokedItems: string[]
  let revocationId: string

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'coop-unlearning-'))
    // An autoencoder from another cooperative, trained on other images.
    const source = await createCluster({
      dir: join(dir, 'source'),
      peers: 1,
      imagesPerPeer: 6,
      charterArgs: ['--ae-rounds', '1', '--unet-rounds', '0', '--inner-steps', '2', '--quorum', '1'],
    })
    const aeTrainer = startNode(source, source.peers[0]!, { extra: ['--linger', '0'] })
    nodes.push(aeTrainer)
    expect((await exitsWithin([aeTrainer], 240_000))[0]?.code).toBe(0)
    const aeDir = checkpointDir(source.peers[0]!.store, 'autoencoder', 1)

    coop = await createCluster({
      dir: join(dir, 'coop'),
      peers: 2,
      imagesPerPeer: 8,
      charterArgs: [
        '--autoencoder',
        aeDir,
        '--unet-rounds',
        String(UNET_ROUNDS),
        '--inner-steps',
        '6',
        '--quorum',
        '2',
        '--deadline',
        '120',
        '--on-revocation',
        'rollback',
      ],
    })
    const [p1, p2] = coop.peers as [Cluster['peers'][0], Cluster['peers'][0]]
    publisher = startNode(coop, p1, { extra: ['--linger', '3', '--autoencoder', aeDir] })
    const addr = await bootstrapAddr(p1)
    custodian = startNode(coop, p2, { bootstrap: [addr], extra: ['--linger', '3'] })
    nodes.push(publisher, custodian)

    // After U-Net round 2: peer-2's rights holder withdraws two images.
    await custodian.waitFor('checkpoint adopted', (l) => l.round === 2 && l.phase === 'unet', 400_000)
    revokedItems = p2.images.slice(0, 2)
    const notice = createRevocation({
      issuerKey: p2.rightsKey,
      manifest: p2.manifestId,
      items: revokedItems,
      reason: 'unlearning test',
    })
    revocationId = verifyRevocation(notice).digest
    const temp = join(inboxDir(p2.store), '.revoke.tmp')
    await writeFile(temp, JSON.stringify(notice))
    await rename(temp, join(inboxDir(p2.store), 'revoke.json'))
    exits = await exitsWithin([publisher, custodian], 500_000)
  }, 1_200_000)

  afterAll(async () => {
    await stopAll(nodes.filter((n) => n.running))
    await rm(dir, { recursive: true, force: true })
  })

  it('the publisher rolls back to the genesis, the other peer verifies the receipt and follows', () => {
    expect(exits.map((e) => e.code)).toEqual([0, 0])
    const rolled = publisher.lines.filter((l) => l.msg === 'lineage rolled back')
    expect(rolled).toHaveLength(1)
    const r = rolled[0]!
    // Revoked after round 2: the rollback is the next round closed, and it supersedes every
    // checkpoint since the genesis (all of them trained on peer-2's images).
    expect(r.round as number).toBeGreaterThanOrEqual(3)
    expect(r.newBaseRound).toBe(0)
    expect(r.superseded).toEqual(Array.from({ length: (r.round as number) - 1 }, (_, i) => i + 1))
    expect(r.items).toBe(2)
    const adopted = custodian.lines.find(
      (l) => l.msg === 'checkpoint adopted' && l.round === r.round && l.phase === 'unet',
    )
    expect(adopted?.verification).toBe('rollback')
    expect(custodian.count('checkpoint rejected')).toBe(0)
    // The custodian trained the rounds after the rollback from the rollback checkpoint.
    const after = custodian.lines.filter(
      (l) => l.msg === 'round started' && l.phase === 'unet' && (l.round as number) > (r.round as number),
    )
    expect(after.length).toBe(UNET_ROUNDS - (r.round as number))
    expect(after[0]!.base).toBe(r.checkpoint)
  })

  it('the final lineage provably excludes the revoked items', async () => {
    const [p1, p2] = coop.peers as [Cluster['peers'][0], Cluster['peers'][0]]
    const rollbackRound = publisher.lines.find((l) => l.msg === 'lineage rolled back')!.round as number
    for (const peer of [p1, p2]) {
      const { index } = await loadLineage(peer.store)
      const final = index.checkpoints().at(-1)!
      expect(final.phase).toBe('unet')
      expect(final.round).toBe(UNET_ROUNDS)
      const chainRounds = index.chain(final.id).map((c) => c.round)
      expect(chainRounds).toEqual([
        0,
        ...Array.from({ length: UNET_ROUNDS - rollbackRound + 1 }, (_, i) => rollbackRound + i),
      ])
      expect(lineageUses(index, final.id, new Set(revokedItems))).toBe(false)
      // The superseded round 2 did use them: the check is not vacuous.
      const round2 = index.checkpoints().find((c) => c.phase === 'unet' && c.round === 2)!
      expect(lineageUses(index, round2.id, new Set(revokedItems))).toBe(true)
      // Peer-2 still trained after the rollback, on its remaining images only.
      const contributions = index.chain(final.id).flatMap((c) => c.contributions)
      expect(contributions.some((c) => c.peer === p2.peerId)).toBe(true)
    }
    const store = await openStore(p1.store)
    try {
      const last = custodian.lines.filter((l) => l.msg === 'contribution published').at(-1)!
      const record = (await store.contributions.entries())
        .map(([, v]) => v as { id: string; envelope: string })
        .find((c) => c.id === last.contribution)!
      const statement = verifyContribution((await store.getBlob(record.envelope)) as Uint8Array)
      const remaining = p2.images.filter((i) => !revokedItems.includes(i))
      expect(statement.predicate.itemsRoot).toBe(merkleRoot(remaining))
    } finally {
      await store.close()
    }
    const verify = await runCoop([
      'checkpoint',
      'verify',
      checkpointDir(p1.store, 'unet', UNET_ROUNDS),
      '--store',
      p1.store,
      '--json',
    ])
    expect(verify.code).toBe(0)
    const report = JSON.parse(verify.stdout) as {
      ok: boolean
      recomputation: string
      unlearning: { policy: string; lineage: string; revokedItems: number }
    }
    expect(report.ok).toBe(true)
    expect(report.recomputation).toBe('passed')
    expect(report.unlearning).toMatchObject({
      policy: 'rollback',
      lineage: 'excludes-revoked',
      revokedItems: 2,
    })
  }, 600_000)

  it('the receipt verifies and names the revoked items, the superseded checkpoints and the new base', async () => {
    const p1 = coop.peers[0]!
    const { charter, coopId } = verifyCharter(new Uint8Array(await readFile(coop.charter)))
    const rollbackRound = publisher.lines.find((l) => l.msg === 'lineage rolled back')!.round as number
    const rollbackDir = checkpointDir(p1.store, 'unet', rollbackRound)
    const receiptBytes = new Uint8Array(await readFile(join(rollbackDir, RECEIPT_FILE)))
    const receipt = verifyReceipt(receiptBytes, {
      publishers: charter.publishers,
      threshold: charter.threshold,
      coopId,
    })
    const provenanceOf = async (round: number) =>
      verifyProvenance(
        new Uint8Array(await readFile(join(checkpointDir(p1.store, 'unet', round), 'provenance.json'))),
        {
          publishers: charter.publishers,
          threshold: charter.threshold,
        },
      )
    const genesis = await provenanceOf(0)
    expect(receipt.predicate.revokedItems).toEqual([...revokedItems].sort())
    expect(receipt.predicate.revocations).toEqual([revocationId])
    expect(receipt.predicate.newBase).toEqual({
      checkpoint: genesis.files.get('model.safetensors'),
      provenance: genesis.digest,
      round: 0,
    })
    const superseded = []
    for (let round = 1; round < rollbackRound; round++)
      superseded.push({ provenance: (await provenanceOf(round)).digest, round })
    expect(receipt.predicate.superseded).toEqual(superseded)
    // The rollback checkpoint signs the receipt's digest and carries the base's weights.
    const rollback = await provenanceOf(rollbackRound)
    expect(rollback.predicate.parent?.provenance).toBe(genesis.digest)
    expect(rollback.predicate.contributions).toEqual([])
    expect(rollback.files.get('model.safetensors')).toBe(genesis.files.get('model.safetensors'))
    expect(rollback.files.get('momentum.safetensors')).toBe(genesis.files.get('momentum.safetensors'))
    const cli = await runCoop(['verify', join(rollbackDir, RECEIPT_FILE), '--charter', coop.charter])
    expect(cli.stdout).toContain(`valid UnlearningReceipt ${receipt.digest}`)
    expect(cli.code).toBe(0)
    const dirVerify = await runCoop(['checkpoint', 'verify', rollbackDir, '--store', p1.store])
    expect(dirVerify.stdout).toContain(`receipt    ${receipt.digest}`)
    expect(dirVerify.code).toBe(0)
    // The public training-content summary names the receipt.
    const summary = await runCoop([
      'summary',
      '--checkpoint',
      checkpointDir(p1.store, 'unet', UNET_ROUNDS),
      '--store',
      p1.store,
      '--format',
      'json',
    ])
    expect(summary.code).toBe(0)
    const processing = (
      JSON.parse(summary.stdout) as {
        processing: { unlearningReceipts: string; revocations: { rule: string } }
      }
    ).processing
    expect(processing.unlearningReceipts).toContain(receipt.digest)
    expect(processing.revocations.rule).toMatch(/^rollback/)
    // Every U-Net checkpoint directory of the follower's store verifies, the superseded ones
    // included (the imported autoencoder is another coop's, verified with its own charter).
    for (const peer of [coop.peers[1]!])
      for (const d of (await listCheckpointDirs(peer.store)).filter((d) => d.includes('unet-r'))) {
        const v = await runCoop(['checkpoint', 'verify', d, '--store', peer.store])
        expect(v.code, `${d}: ${v.stdout}`).toBe(0)
      }
  }, 600_000)

  it('coop trace --image: used by the superseded checkpoints, not by the current lineage', async () => {
    const p1 = coop.peers[0]!
    const rollbackRound = publisher.lines.find((l) => l.msg === 'lineage rolled back')!.round as number
    const receipt = verifyReceipt(
      new Uint8Array(await readFile(join(checkpointDir(p1.store, 'unet', rollbackRound), RECEIPT_FILE))),
      {
        publishers: [p1.peerId],
        threshold: 1,
      },
    )
    const image = revokedItems[0]!
    const json = await runCoop(['trace', '--store', p1.store, '--image', image, '--json'])
    expect(json.code).toBe(0)
    const traced = JSON.parse(json.stdout) as {
      superseded: { receipt: string; checkpoints: { round: number }[] }[]
      current: { round: number; uses: boolean }
    }
    expect(traced.superseded).toHaveLength(1)
    expect(traced.superseded[0]!.receipt).toBe(receipt.digest)
    expect(traced.superseded[0]!.checkpoints.map((c) => c.round)).toEqual(
      Array.from({ length: rollbackRound - 1 }, (_, i) => i + 1),
    )
    expect(traced.current).toMatchObject({ round: UNET_ROUNDS, uses: false })
    const text = await runCoop(['trace', '--store', p1.store, '--image', image])
    expect(text.stdout).toContain(`superseded by receipt ${receipt.digest}`)
    expect(text.stdout).toContain(`used by checkpoints of rounds 1..${rollbackRound - 1}`)
    expect(text.stdout).toContain('not used by the current lineage')
    // An image nobody revoked is used by the current lineage.
    const kept = coop.peers[1]!.images.at(-1)!
    const keptTrace = JSON.parse(
      (await runCoop(['trace', '--store', p1.store, '--image', kept, '--json'])).stdout,
    ) as {
      superseded: unknown[]
      current: { uses: boolean }
    }
    expect(keptTrace.current.uses).toBe(true)
  }, 600_000)
})
