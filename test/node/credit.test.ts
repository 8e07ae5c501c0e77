// Credit, audit and summary on a real two-process cooperative: peer-1 trains on 8 images of
// rights holder A; peer-2 on 4 more images of A and 4 of rights holder B (two manifests). Every
// contribution processes the same number of samples, so A accounts for 1 + 1/2 and B for 1/2
// of every round's sample-steps: the ledger must say 0.75 / 0.25, through the autoencoder
// component too. The charter asks for audits: the publisher's node audits the final checkpoint on
// its own images and attaches the signed audit; the training-content summary reports the
// holders, the ledger and that audit.
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { verifyAudit } from '../../protocol/audit.ts'
import { sha256Digest } from '../../protocol/digest.ts'
import { didKeyFromPublicKey } from '../../protocol/keys.ts'
import { createManifest } from '../../protocol/manifest.ts'
import { TWEMOJI_ATTRIBUTION } from '../../node/cli/commands/data.ts'
import {
  bootstrapAddr,
  createCluster,
  runCoop,
  startNode,
  stopAll,
  type Cluster,
  type NodeProcess,
} from './cluster-helpers/cluster.ts'

describe('credit ledger, audit and summary of a two-process cooperative', () => {
  let dir: string
  let cluster: Cluster
  let nodes: NodeProcess[] = []
  let exits: { code: number | null }[] = []
  let holderA: string
  let holderB: string
  let finalDir: string

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'coop-credit-'))
    cluster = await createCluster({
      dir,
      peers: 2,
      imagesPerPeer: 8,
      charterArgs: [
        '--ae-rounds',
        '1',
        '--unet-rounds',
        '2',
        '--inner-steps',
        '3',
        '--quorum',
        '2',
        '--deadline',
        '120',
        '--audit-every',
        '2',
      ],
    })
    const [peer1, peer2] = cluster.peers as [Cluster['peers'][0], Cluster['peers'][0]]
    holderA = didKeyFromPublicKey(peer1.rightsKey.publicKey)
    holderB = didKeyFromPublicKey(peer2.rightsKey.publicKey)
    // peer-2's images: the first half belongs to A, the second half to B, one manifest each.
    const items = peer2.manifest.credentialSubject.items
    const half = Math.floor(items.length / 2)
    const sign = (key: typeof peer1.rightsKey, name: string, subset: typeof items) =>
      createManifest({
        issuerKey: key,
        custodian: peer2.peerId,
        license: 'CC-BY-4.0',
        attribution: { name, text: TWEMOJI_ATTRIBUTION },
        scope: { commercialUse: false, weightRedistribution: true },
        items: subset,
        validFrom: new Date(Date.now() - 60_000),
      })
    await writeFile(
      peer2.consentPath,
      JSON.stringify(sign(peer1.rightsKey, 'Rights holder of peer-1', items.slice(0, half))),
    )
    const consentB = join(peer2.dir, 'consent-b.json')
    await writeFile(
      consentB,
      JSON.stringify(sign(peer2.rightsKey, 'Rights holder of peer-2', items.slice(half))),
    )
    const publisher = startNode(cluster, peer1, { extra: ['--linger', '3'] })
    const addr = await bootstrapAddr(peer1)
    nodes = [
      publisher,
      startNode(cluster, peer2, { bootstrap: [addr], extra: ['--linger', '3', '--consent', consentB] }),
    ]
    exits = await Promise.all(nodes.map((n) => n.exited))
    finalDir = join(peer1.store, 'checkpoints', 'unet-r000003')
  }, 240_000)

  afterAll(async () => {
    await stopAll(nodes.filter((n) => n.running))
    await rm(dir, { recursive: true, force: true })
  })

  it('both nodes finish every round of a charter that asks for audits', async () => {
    expect(exits.map((e) => e.code)).toEqual([0, 0])
    const envelope = JSON.parse(await readFile(cluster.charter, 'utf8')) as { payload: string }
    expect(JSON.parse(Buffer.from(envelope.payload, 'base64').toString('utf8')).audit).toEqual({
      every: 2,
      samplesPerClass: 16,
    })
  })

  it('coop credit gives holder A 0.75 and holder B 0.25 of the sample-steps, autoencoder included', async () => {
    const store = cluster.peers[0]!.store
    const result = await runCoop(['credit', '--checkpoint', finalDir, '--store', store, '--json'])
    expect(result.code, result.stderr).toBe(0)
    const ledger = JSON.parse(result.stdout) as {
      holders: { did: string; name: string; license: string; share: number }[]
      contributions: number
      sampleSteps: number
      contributorSignatures: number
    }
    // 1 autoencoder round + 2 U-Net rounds, 2 contributions each.
    expect(ledger.contributions).toBe(6)
    expect(ledger.contributorSignatures).toBe(6)
    expect(ledger.holders.map((h) => h.did)).toEqual([holderA, holderB])
    expect(ledger.holders[0]!.share).toBeCloseTo(0.75, 6)
    expect(ledger.holders[1]!.share).toBeCloseTo(0.25, 6)
    expect(ledger.holders.reduce((sum, h) => sum + h.share, 0)).toBeCloseTo(1, 12)
    expect(ledger.holders[0]).toMatchObject({ name: 'Rights holder of peer-1', license: 'CC-BY-4.0' })
    // The same figures by model digest, and on the other peer's store (recomputed there).
    const model = sha256Digest(new Uint8Array(await readFile(join(finalDir, 'model.safetensors'))))
    const other = await runCoop([
      'credit',
      '--checkpoint',
      model,
      '--store',
      cluster.peers[1]!.store,
      '--json',
    ])
    expect(other.code, other.stderr).toBe(0)
    expect(JSON.parse(other.stdout).holders.map((h: { share: number }) => h.share)).toEqual(
      ledger.holders.map((h) => h.share),
    )
  })

  it('coop checkpoint verify --credit recomputes the ledger next to the checkpoint checks', async () => {
    const result = await runCoop([
      'checkpoint',
      'verify',
      finalDir,
      '--store',
      cluster.peers[0]!.store,
      '--credit',
      '--json',
    ])
    expect(result.code, result.stderr).toBe(0)
    const report = JSON.parse(result.stdout) as {
      ok: boolean
      recomputation: string
      credit: { holders: { share: number }[] }
    }
    expect(report.recomputation).toBe('passed')
    expect(report.credit.holders.map((h) => h.share)).toEqual([0.75, 0.25].map((x) => expect.closeTo(x, 6)))
  })

  it('refuses a store whose contribution statement was altered', async () => {
    const copy = join(dir, 'tampered-store')
    await cp(cluster.peers[0]!.store, copy, { recursive: true })
    const provenance = JSON.parse(await readFile(join(finalDir, 'provenance.json'), 'utf8')) as {
      payload: string
    }
    const statement = (
      JSON.parse(Buffer.from(provenance.payload, 'base64').toString('utf8')) as {
        predicate: { contributions: { statement: string }[] }
      }
    ).predicate.contributions[0]!.statement
    await writeFile(join(copy, 'blobs', 'sha256', statement.slice(7)), '{"tampered":true}')
    const result = await runCoop([
      'credit',
      '--checkpoint',
      join(copy, 'checkpoints', 'unet-r000003'),
      '--store',
      copy,
    ])
    expect(result.code).toBe(1)
    expect(result.stderr).toContain('MISSING_CONTRIBUTION')
  })

  it('the publisher audits the final checkpoint on its own images and attaches the signed result', async () => {
    const peer1 = cluster.peers[0]!
    // --audit-every 2: the publisher's node audited U-Net round 2 (global round 3) by itself.
    const attached = join(finalDir, 'audit.json')
    const report = JSON.parse(await readFile(attached, 'utf8')) as {
      images: { sha256: string; flagged: boolean }[]
      holders: { issuer: string; images: number; flagged: number }[]
      method: { features: { extractor: string } }
    }
    expect(report.images.map((i) => i.sha256).sort()).toEqual(peer1.images)
    expect(report.holders).toEqual([expect.objectContaining({ issuer: holderA, images: 8, flagged: 0 })])
    // The model's classes are all quality-classifier categories, so the audit compares classifier features.
    expect(report.method.features.extractor).toMatch(/^quality-classifier-penultimate@sha256:[0-9a-f]{64}$/)
    const audit = verifyAudit(await readFile(join(finalDir, 'audit.dsse.json')))
    expect(audit.auditor).toBe(peer1.peerId)
    expect(audit.predicate.report).toBe(sha256Digest(new Uint8Array(await readFile(attached))))
    const provenance = JSON.parse(await readFile(join(finalDir, 'provenance.json'), 'utf8')) as {
      payload: string
    }
    expect(audit.predicate.checkpoint).toBe(
      sha256Digest(new Uint8Array(Buffer.from(provenance.payload, 'base64'))),
    )
    for (const [name, digest] of audit.files)
      expect(sha256Digest(new Uint8Array(await readFile(join(finalDir, name))))).toBe(digest)
    expect(await readFile(join(finalDir, 'audit.html'), 'utf8')).toContain('Rights holder of peer-1')
    // Any peer may run the same audit by hand: same images and verdicts, signed by its key.
    const out = join(dir, 'manual-audit.json')
    const result = await runCoop(
      [
        'audit',
        'memorization',
        '--checkpoint',
        finalDir,
        '--data',
        peer1.data,
        '--key',
        peer1.nodeKeyPath,
        '--out',
        out,
        '--json',
      ],
      180_000,
    )
    expect(result.code, result.stderr).toBe(0)
    const manual = verifyAudit(await readFile(join(dir, 'manual-audit.dsse.json')))
    expect(manual.predicate.imagesRoot).toBe(audit.predicate.imagesRoot)
    expect(manual.predicate.flagged).toEqual(audit.predicate.flagged)
    // Outputs are never overwritten without --force.
    const again = await runCoop([
      'audit',
      'memorization',
      '--checkpoint',
      finalDir,
      '--data',
      peer1.data,
      '--out',
      out,
    ])
    expect(again.code).toBe(1)
    expect(again.stderr).toContain('OUTPUT_EXISTS')
    expect((await runCoop(['verify', join(finalDir, 'audit.dsse.json')])).stdout).toContain(
      'valid MemorizationAudit',
    )
  })

  it('coop summary follows the EU template: holders and licenses, the component, the audit, the 10^23 FLOP note', async () => {
    const store = cluster.peers[0]!.store
    const json = await runCoop(['summary', '--checkpoint', finalDir, '--store', store, '--format', 'json'])
    expect(json.code, json.stderr).toBe(0)
    const summary = JSON.parse(json.stdout) as {
      applicability: string
      general: { dependencies: { role: string; trainedInThisCoop: boolean }[]; dataSize: { items: number } }
      dataSources: { licensedPrivateData: { did: string; items: number; license: string; share: number }[] }
      processing: {
        memorizationAudits: { flagged: number; images: number }[]
        revocations: { notices: number }
      }
    }
    expect(summary.applicability).toContain('1e+23 FLOP')
    expect(summary.general.dependencies).toEqual([
      expect.objectContaining({ role: 'autoencoder', trainedInThisCoop: true }),
    ])
    expect(summary.general.dataSize.items).toBe(16)
    expect(summary.dataSources.licensedPrivateData.map((h) => [h.did, h.items, h.license])).toEqual([
      [holderA, 12, 'CC-BY-4.0'],
      [holderB, 4, 'CC-BY-4.0'],
    ])
    expect(summary.processing.memorizationAudits).toEqual([
      expect.objectContaining({ images: 8, flagged: 0 }),
    ])
    expect(summary.processing.revocations.notices).toBe(0)
    const md = await runCoop(['summary', '--checkpoint', finalDir, '--store', store])
    expect(md.code, md.stderr).toBe(0)
    for (const heading of [
      '## 1. General information',
      '## 2. List of data sources',
      '## 3. Relevant data processing aspects',
    ])
      expect(md.stdout).toContain(heading)
    expect(md.stdout).toContain('Rights holder of peer-2')
  })
})
