// The public training-content summary of a checkpoint, in the structure of the EU AI Office's
// "Template for the Public Summary of Training Content for general-purpose AI models"
// (published 24 July 2025 under Article 53(1)(d) of the AI Act): 1. general information,
// 2. list of data sources, 3. relevant data processing aspects. Every figure is read from the
// signed lineage in a store (checkpoint directories and blobs, no LevelDB).
import { readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { verifyAudit } from '../../protocol/audit.ts'
import { AUDIT_MAX_BYTES } from '../../protocol/constants.ts'
import { errorCode } from '../../protocol/coded-error.ts'
import { verifyCharter } from '../../protocol/charter.ts'
import { ledgerFromStore, type Ledger } from '../credit/ledger.ts'
import { readDirReceipt } from '../round/unlearning-files.ts'
import { loadCheckpointDir, loadLineage } from '../round/audit.ts'
import { storeCharter } from '../round/pinned-charter.ts'
import { CHECKPOINT_FILES } from '../round/layout.ts'
import { SummaryError } from './errors.ts'

/** The AI Act's presumption for general-purpose AI models: training compute above 10^23 FLOP (Commission guidelines of 18 July 2025, section 2.1). */
export const GPAI_COMPUTE_THRESHOLD_FLOP = 1e23

/** File an audit attaches to a checkpoint directory (`coop audit memorization --key`, and the publisher's audits when the charter asks for them). */
export const ATTACHED_AUDIT_FILE = 'audit.dsse.json'

export interface TrainingSummary {
  template: string
  applicability: string
  general: {
    provider: { publishers: string[]; coop: string; coopName: string | null }
    model: {
      name: string
      checkpoint: string
      phase: string
      round: number
      license: string
      files: Record<string, string>
    }
    dependencies: { role: string; checkpoint: string; provenance: string; trainedInThisCoop: boolean }[]
    modalities: { input: string[]; output: string[] }
    dataSize: {
      modality: 'image'
      items: number
      sampleSteps: number
      imageSize: number | null
      classes: string[]
    }
  }
  dataSources: {
    publicDatasets: string
    licensedPrivateData: {
      did: string
      name: string
      license: string
      items: number
      manifests: number
      share: number
    }[]
    crawledData: string
    userData: string
    syntheticData: string
    otherSources: string
  }
  processing: {
    optOuts: string
    revocations: { notices: number; itemsExcluded: number; rule: string }
    unlearningReceipts: string
    memorizationAudits: {
      auditor: string
      statement: string
      images: number
      flagged: number
      thresholds: { l2: number; ratio: number }
      features: string
    }[]
    illegalContent: string
  }
}

const TEMPLATE =
  'EU AI Office, Template for the Public Summary of Training Content for general-purpose AI models (24 July 2025)'

export interface SummaryOptions {
  checkpointDir: string
  storeDir: string
  /** Signed audits to report besides the one attached to the checkpoint directory. */
  auditFiles?: string[]
}

async function readAudits(
  paths: { path: string; optional: boolean }[],
  files: Record<string, string>,
): Promise<TrainingSummary['processing']['memorizationAudits']> {
  const out: TrainingSummary['processing']['memorizationAudits'] = []
  for (const { path, optional } of paths) {
    let bytes: Uint8Array
    try {
      // Bounded before reading: the directory may hold anything.
      if ((await stat(path)).size > AUDIT_MAX_BYTES)
        throw new SummaryError(
          'AUDIT_MISMATCH',
          `${path} is larger than an audit may be (${AUDIT_MAX_BYTES} bytes)`,
        )
      bytes = new Uint8Array(await readFile(path))
    } catch (err) {
      if (optional && errorCode(err) === 'ENOENT') continue
      throw err
    }
    const audit = verifyAudit(bytes)
    // An audit counts for this checkpoint only if it covers exactly these file bytes.
    for (const [name, digest] of audit.files)
      if (files[name] !== digest)
        throw new SummaryError('AUDIT_MISMATCH', `${path} audits another checkpoint (${name} differs)`)
    out.push({
      auditor: audit.auditor,
      statement: audit.digest,
      images: audit.predicate.images,
      flagged: audit.predicate.flagged.length,
      thresholds: audit.predicate.thresholds,
      features: audit.predicate.method.features.extractor,
    })
  }
  return out
}

export async function buildSummary(options: SummaryOptions): Promise<TrainingSummary> {
  const loaded = await loadCheckpointDir(options.checkpointDir, await storeCharter(options.storeDir))
  const p = loaded.verified.predicate
  const charter = verifyCharter(await readFile(join(options.checkpointDir, CHECKPOINT_FILES.charter)))
  const model = charter.charter.model as { name?: unknown; image?: { size?: unknown }; classes?: unknown }
  const { index, checkpoints } = await loadLineage(options.storeDir)
  const id = loaded.verified.digest
  if (index.checkpoint(id) === undefined)
    throw new SummaryError(
      'NOT_IN_STORE',
      `${options.checkpointDir} is not a checkpoint of ${options.storeDir}`,
    )
  const ledger: Ledger = await ledgerFromStore(options.storeDir, id)
  const attribution = index.attribution(id)
  // Items and revocations through the whole lineage (components included).
  const items = new Set<string>()
  for (const use of index.lineageUse(id)) for (const item of use.items) items.add(item)
  const lineage = new Set<string>()
  const visit = (checkpointId: string) => {
    for (const c of index.chain(checkpointId)) {
      if (lineage.has(c.id)) continue
      lineage.add(c.id)
      for (const component of c.components) visit(component)
    }
  }
  visit(id)
  const revocations = new Set<string>()
  const excluded = new Set<string>()
  const receipts: string[] = []
  for (const c of checkpoints)
    if (lineage.has(c.verified.digest)) {
      for (const r of c.exclusions?.revocations ?? []) revocations.add(r)
      for (const item of c.exclusions?.items ?? []) excluded.add(item)
      const receipt = await readDirReceipt(c)
      if (receipt !== undefined)
        receipts.push(
          `${receipt.digest} (round ${receipt.predicate.round}: ${receipt.predicate.revokedItems.length} item(s) revoked, ${receipt.predicate.superseded.length} checkpoint(s) superseded, continued from round ${receipt.predicate.newBase.round})`,
        )
    }
  const rollback = charter.charter.onRevocation === 'rollback'
  const holdersByDid = new Map<string, TrainingSummary['dataSources']['licensedPrivateData'][number]>()
  for (const entry of attribution.entries) {
    const share = ledger.holders.find((h) => h.did === entry.issuer)?.share ?? 0
    const existing = holdersByDid.get(`${entry.issuer}\u0000${entry.license}`)
    if (existing === undefined)
      holdersByDid.set(`${entry.issuer}\u0000${entry.license}`, {
        did: entry.issuer,
        name: entry.name,
        license: entry.license,
        items: entry.items,
        manifests: entry.manifests.length,
        share,
      })
    else existing.items += entry.items
  }
  const files = Object.fromEntries(loaded.verified.files)
  const audits = await readAudits(
    [
      { path: join(options.checkpointDir, ATTACHED_AUDIT_FILE), optional: true },
      ...(options.auditFiles ?? []).map((path) => ({ path, optional: false })),
    ],
    files,
  )
  const none = 'none: the cooperative trains only on images whose rights holders signed a consent manifest'
  return {
    template: TEMPLATE,
    applicability: `The AI Act obliges providers of general-purpose AI models to publish this summary; the Commission presumes a model general-purpose above ${GPAI_COMPUTE_THRESHOLD_FLOP.toExponential(0)} FLOP of training compute. This model was trained with ${ledger.sampleSteps} sample-steps on CPU-class hardware, many orders of magnitude below: publishing the summary is voluntary best practice at this scale.`,
    general: {
      provider: {
        publishers: charter.charter.publishers,
        coop: charter.coopId,
        coopName: charter.charter.name ?? null,
      },
      model: {
        name: typeof model.name === 'string' ? model.name : 'unnamed',
        checkpoint: id,
        phase: p.phase,
        round: p.round,
        license: p.license,
        files,
      },
      dependencies: p.components.map((c) => ({
        role: c.role,
        checkpoint: c.checkpoint,
        provenance: c.provenance,
        trainedInThisCoop: index.checkpoint(c.provenance) !== undefined,
      })),
      modalities: {
        input: p.phase === 'unet' ? ['class label (optional)'] : ['image'],
        output: ['image'],
      },
      dataSize: {
        modality: 'image',
        items: items.size,
        sampleSteps: ledger.sampleSteps,
        imageSize: typeof model.image?.size === 'number' ? model.image.size : null,
        classes: Array.isArray(model.classes)
          ? model.classes.filter((c): c is string => typeof c === 'string')
          : [],
      },
    },
    dataSources: {
      publicDatasets:
        'none used directly: public images enter only when their rights holder signs consent for them',
      licensedPrivateData: [...holdersByDid.values()].sort(
        (a, b) => b.items - a.items || (a.did < b.did ? -1 : 1),
      ),
      crawledData: 'none: no crawling or scraping',
      userData: 'none',
      syntheticData: 'none',
      otherSources: none,
    },
    processing: {
      optOuts:
        'Consent is opt-in: a node trains only on items of valid, unrevoked consent manifests naming it as custodian. A file whose own metadata forbids AI or generative training (XMP plus:DataMining DMI-PROHIBITED-*, CAWG training-and-data-mining entries notAllowed or constrained) is refused by `coop consent create` and by every node at load time even when a manifest lists it; such refusals are logged by each custodian and are not part of the signed record, so no count is given here.',
      revocations: {
        notices: revocations.size,
        itemsExcluded: excluded.size,
        rule: rollback
          ? 'rollback: once a revocation withdraws items the lineage used, the lineage continues from the newest checkpoint whose whole lineage never used them, under a signed unlearning receipt; later steps train without them'
          : 'exclude: revoked items are dropped from every later training step and recorded in the exclusions of the next checkpoint (a signed summary, details by digest); earlier checkpoints are not retrained',
      },
      unlearningReceipts: rollback
        ? receipts.length === 0
          ? 'none: no revocation withdrew items this lineage had used'
          : receipts.join('; ')
        : 'none: this cooperative handles revocations by exclusion (no rollback policy, so no unlearning receipts)',
      memorizationAudits: audits,
      illegalContent:
        'Every item is an image its rights holder consented to by signature; the cooperative runs no further content filter.',
    },
  }
}
