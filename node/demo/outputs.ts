// Builds the demo's outputs from the publisher's store: checkpoints/, samples/, loss.svg,
// metrics.json and report.html. Idempotent: checkpoints and grids already exported are kept,
// and eval losses are cached by checkpoint id, so a resumed or repeated run only adds.
import { writeFileDurable } from '../store/durable.ts'
import { existsSync } from 'node:fs'
import { mkdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { Logger } from 'pino'
import { CoopConfigSchema } from '../../configs/index.ts'
import type { CoopConfig } from '../../configs/index.ts'
import { verifyCharter } from '../../protocol/charter.ts'
import { renderReportHtml } from '../report/html.ts'
import type { DemoReportModel, ReportCheckpoint } from '../report/model.ts'
import {
  exportCheckpoint,
  readCheckpoints,
  readContributionStats,
  readManifests,
  relativeTo,
  verifyExportedCheckpoint,
} from './collect.ts'
import type { CollectedCheckpoint, VerifyOutcome } from './collect.ts'
import { auditAndLedger } from './audit-ledger.ts'
import { createEvaluator } from './evaluate.ts'
import type { DemoQuality } from './evaluate.ts'
import { gridWorkerHelps, renderGridsInWorker } from './grids.ts'
import { lossPlot, qualityPlot } from './plots.ts'
import { attributionList, charterSummary } from './report-summary.ts'
import { CLASSIFIER_WEIGHTS_SHA256 } from '../../trainer/quality/digest.ts'
import { QUALITY_SEED, SAMPLE_GUIDANCE, SAMPLE_STEPS, TIME_BOX_FILE } from './constants.ts'
import type { TimeBoxStop } from './time-box.ts'
import type { DemoLayout } from './layout.ts'
import type { DemoParams } from './run-manifest.ts'
import type { DemoSetup } from './setup.ts'

export interface RoundMetrics {
  round: number
  phase: 'autoencoder' | 'unet'
  genesis: boolean
  checkpoint: string
  parent: string | null
  evalLoss?: number
  verified: boolean
  verification: string
  contributions: { peer: string; peerId: string; statement: string; samples?: number; loss?: number }[]
  sampleGrid?: string
  /** Quality of the grid's samples (the averaged model after this round; SAMPLES_PER_CLASS per class). */
  quality?: { classAccuracy: number; frechetDistance: number; samples: number }
}

export interface DemoMetrics {
  kind: 'diffusion-coop/demo-metrics'
  version: 1
  coopId: string
  params: DemoParams
  backend: string
  wallSeconds: number
  attempts: number
  peers: {
    name: string
    peerId: string
    publisher: boolean
    rightsHolder: string
    categories: string[]
    items: number
  }[]
  /**
   * Sample quality of the final grid's model (trainer/quality: in-domain classifier, held-out real
   * Twemoji), from QUALITY_PER_CLASS samples per class; null before any U-Net round closed.
   */
  quality: (DemoQuality & { classifier: string; guidance: number; steps: number; seed: number }) | null
  /** How the U-Net rounds were planned from a measured step time (node/demo/plan.ts); null when --rounds fixed them. */
  plan: unknown
  /**
   * Set when the time box (node/demo/time-box.ts) stopped the run after a closed U-Net round,
   * before the charter's last, to finish within the time limit; null otherwise.
   */
  timeBox: TimeBoxStop | null
  rounds: RoundMetrics[]
}

export interface BuiltOutputs {
  metrics: DemoMetrics
  /** The memorization audit of the last U-Net checkpoint and its credit ledger. */
  audit?: import('./audit-ledger.ts').AuditLedgerResult['audit']
  ledger?: import('./audit-ledger.ts').AuditLedgerResult['ledger']
  checkpoints: number
  verified: number
  samples: string[]
}

async function readQualityCache(path: string): Promise<Record<string, DemoQuality>> {
  try {
    const value = JSON.parse(await readFile(path, 'utf8')) as unknown
    if (value === null || typeof value !== 'object' || Array.isArray(value)) return {}
    return Object.fromEntries(
      Object.entries(value).filter(
        ([, v]) =>
          v !== null &&
          typeof v === 'object' &&
          Number.isFinite((v as DemoQuality).classAccuracy) &&
          Number.isFinite((v as DemoQuality).frechetDistance),
      ),
    ) as Record<string, DemoQuality>
  } catch {
    return {}
  }
}

/** A setup record (plan.json, time-box.json): its JSON, or null when absent or unreadable. */
async function readJsonOrNull(path: string): Promise<unknown> {
  return readFile(path, 'utf8')
    .then((text) => JSON.parse(text) as unknown)
    .catch(() => null)
}

async function readJsonCache(path: string): Promise<Record<string, number>> {
  try {
    const value = JSON.parse(await readFile(path, 'utf8')) as unknown
    if (value === null || typeof value !== 'object' || Array.isArray(value)) return {}
    return Object.fromEntries(
      Object.entries(value).filter(([, v]) => typeof v === 'number' && Number.isFinite(v)),
    ) as Record<string, number>
  } catch {
    return {}
  }
}

export async function buildOutputs(options: {
  layout: DemoLayout
  setup: DemoSetup
  params: DemoParams
  backend: string
  wallSeconds: number
  attempts: number
  note: (text: string) => void
  log?: Logger
}): Promise<BuiltOutputs> {
  const { layout, setup, params } = options
  const publisher = setup.peers.find((p) => p.peer.publisher)
  if (publisher === undefined) throw new Error('no publisher')
  const { charter, coopId } = verifyCharter(new Uint8Array(await readFile(layout.charter)))
  const config: CoopConfig = CoopConfigSchema.parse(charter.model)
  const checkpoints = await readCheckpoints(publisher.peer.store, charter, coopId)
  await readContributionStats(publisher.peer.store, checkpoints)

  await mkdir(layout.checkpointsDir, { recursive: true })
  const verification = new Map<string, VerifyOutcome>()
  const exported = new Map<string, string>()
  for (const checkpoint of checkpoints) {
    const dir = await exportCheckpoint(checkpoint, layout.checkpointsDir)
    exported.set(checkpoint.id, dir)
    verification.set(checkpoint.id, await verifyExportedCheckpoint(dir, publisher.peer.store))
  }

  const evalCachePath = join(layout.out, 'setup', 'eval-loss.json')
  const evalCache = await readJsonCache(evalCachePath)
  const needsEval = checkpoints.filter((c) => evalCache[c.id] === undefined)
  const unetRounds = checkpoints.filter((c) => c.phase === 'unet' && c.parentId !== null)
  const qualityCachePath = join(layout.out, 'setup', 'quality.json')
  const qualityCache = await readQualityCache(qualityCachePath)
  const needsSamples = unetRounds.filter(
    (c) => !existsSync(join(layout.samplesDir, `${c.round}.png`)) || qualityCache[c.id] === undefined,
  )
  const finalCheckpoint = unetRounds.reduce<CollectedCheckpoint | undefined>(
    (last, c) => (last === undefined || c.round > last.round ? c : last),
    undefined,
  )
  const finalKey = finalCheckpoint === undefined ? undefined : `final/${finalCheckpoint.id}`
  const needsFinal = finalKey !== undefined && qualityCache[finalKey] === undefined
  const rows = setup.classes.filter((c) => setup.peers.some((p) => p.categories.includes(c)))
  let backendName = options.backend
  if (needsEval.length > 0 || needsSamples.length > 0 || needsFinal) {
    options.note(
      `evaluating ${needsEval.length} checkpoints on a fixed batch of the pooled data, rendering and scoring ${needsSamples.length} sample grids${needsFinal ? ', scoring the final model' : ''}...`,
    )
    const evaluator = await createEvaluator({
      config,
      dataDir: layout.twemojiDir,
      backend: options.backend,
      checkpoints,
      ...(options.log ? { log: options.log } : {}),
    })
    backendName = evaluator.backend
    // One writer for the quality cache: the main thread's and the worker's results interleave.
    let saving = Promise.resolve()
    const saveQuality = (key: string, quality: DemoQuality): Promise<void> => {
      qualityCache[key] = quality
      saving = saving.then(() =>
        writeFileDurable(qualityCachePath, `${JSON.stringify(qualityCache, null, 2)}\n`),
      )
      return saving
    }
    const gridPath = (c: CollectedCheckpoint): string => join(layout.samplesDir, `${c.round}.png`)
    const queue = [...needsSamples]
    // The grids are most of this stage's work: a worker thread renders them on the second core
    // while this thread evaluates the losses and scores the final model, then both share the rest.
    const worker = gridWorkerHelps(evaluator.backend, queue.length)
      ? renderGridsInWorker({
          data: { config, dataDir: layout.twemojiDir, backend: evaluator.backend, checkpoints, rows },
          queue,
          outPath: gridPath,
          onResult: (c, quality) => saveQuality(c.id, quality),
        })
      : undefined
    try {
      for (const checkpoint of needsEval) {
        evalCache[checkpoint.id] = await evaluator.evalLoss(checkpoint)
        await writeFileDurable(evalCachePath, `${JSON.stringify(evalCache, null, 2)}\n`)
      }
      if (needsFinal && finalCheckpoint !== undefined && finalKey !== undefined)
        await saveQuality(finalKey, await evaluator.scoreFinal(finalCheckpoint, rows))
      const drain = async (): Promise<void> => {
        for (let c = queue.shift(); c !== undefined; c = queue.shift())
          await saveQuality(c.id, await evaluator.sampleGrid(c, gridPath(c), rows))
      }
      await drain()
      const failure = await worker
      if (failure !== undefined) {
        options.log?.warn({ err: failure }, 'grid worker failed; rendering its grids here')
        await drain()
      }
      await saving
    } finally {
      // On an error here, the worker stops after its current grid.
      queue.length = 0
      await worker
      evaluator.dispose()
    }
  }

  const peerName = new Map(setup.peers.map((p) => [p.peerId, p.peer.name]))
  const rounds: RoundMetrics[] = checkpoints.map((c) => {
    const v = verification.get(c.id) as VerifyOutcome
    const grid = join(layout.samplesDir, `${c.round}.png`)
    const hasGrid = c.phase === 'unet' && c.parentId !== null && existsSync(grid)
    return {
      round: c.round,
      phase: c.phase,
      genesis: c.parentId === null,
      checkpoint: c.id,
      parent: c.parentId,
      ...(evalCache[c.id] === undefined ? {} : { evalLoss: evalCache[c.id] }),
      verified: v.ok,
      verification: v.ok ? v.detail : `${v.code}: ${v.detail}`,
      contributions: c.contributions.map((k) => ({
        peer: peerName.get(k.contributor) ?? k.contributor,
        peerId: k.contributor,
        statement: k.statement,
        ...(k.samples === undefined ? {} : { samples: k.samples }),
        ...(k.loss === undefined ? {} : { loss: k.loss }),
      })),
      ...(hasGrid ? { sampleGrid: relativeTo(layout.out, grid) } : {}),
      ...(qualityCache[c.id] === undefined
        ? {}
        : {
            quality: {
              classAccuracy: (qualityCache[c.id] as DemoQuality).classAccuracy,
              frechetDistance: (qualityCache[c.id] as DemoQuality).frechetDistance,
              samples: (qualityCache[c.id] as DemoQuality).samples,
            },
          }),
    }
  })
  const finalQuality = finalKey === undefined ? undefined : qualityCache[finalKey]
  const peers = setup.peers.map((p) => ({
    name: p.peer.name,
    peerId: p.peerId,
    publisher: p.peer.publisher,
    rightsHolder: p.rightsHolder,
    categories: p.categories,
    items: p.items,
  }))
  const timeBox = (await readJsonOrNull(join(layout.out, 'setup', TIME_BOX_FILE))) as TimeBoxStop | null
  const metrics: DemoMetrics = {
    kind: 'diffusion-coop/demo-metrics',
    version: 1,
    coopId,
    params,
    backend: backendName,
    wallSeconds: Math.round(options.wallSeconds),
    attempts: options.attempts,
    peers,
    quality:
      finalQuality === undefined
        ? null
        : {
            ...finalQuality,
            classifier: CLASSIFIER_WEIGHTS_SHA256,
            guidance: SAMPLE_GUIDANCE,
            steps: SAMPLE_STEPS,
            seed: QUALITY_SEED,
          },
    plan: await readJsonOrNull(join(layout.out, 'setup', 'plan.json')),
    timeBox,
    rounds,
  }
  await writeFileDurable(layout.metrics, `${JSON.stringify(metrics, null, 2)}\n`)
  const svg = lossPlot(rounds, peers)
  await writeFileDurable(layout.lossSvg, svg)
  const qualitySvg = qualityPlot(rounds, finalQuality ?? null)
  await writeFileDurable(layout.qualitySvg, qualitySvg)

  const owners = await readManifests(
    setup.peers.map((p) => ({ name: p.peer.name, peerId: p.peerId, consent: p.peer.consent })),
  )
  const manifestIdOf = new Map([...owners.values()].map((o) => [o.peerId, o.digest]))
  const reportCheckpoints: ReportCheckpoint[] = checkpoints.map((c) => {
    const v = verification.get(c.id) as VerifyOutcome
    return {
      round: c.round,
      phase: c.parentId === null ? `${c.phase} (genesis)` : c.phase,
      digest: c.id,
      parent: c.parentId,
      contributions: c.contributions.map((k) => ({
        peerId: k.contributor,
        digest: k.statement,
        samples: k.samples ?? 0,
        ...(k.loss === undefined ? {} : { loss: k.loss }),
      })),
      excludedItems: c.excludedItems,
      expiredManifests: c.expiredManifests,
      verification: v.ok
        ? { ok: true, detail: v.detail }
        : { ok: false, ...(v.code === undefined ? {} : { code: v.code }), detail: v.detail },
      ...(evalCache[c.id] === undefined ? {} : { evalLoss: evalCache[c.id] }),
      path: relativeTo(layout.out, exported.get(c.id) as string),
    }
  })
  const samples = []
  for (const c of unetRounds) {
    const path = join(layout.samplesDir, `${c.round}.png`)
    if (existsSync(path)) samples.push({ round: c.round, png: new Uint8Array(await readFile(path)), rows })
  }
  // The audit and the credit ledger of the last U-Net checkpoint (node/demo/audit-ledger.ts).
  const finalUnet = [...unetRounds].sort((a, b) => a.round - b.round).at(-1)
  const artists =
    finalUnet === undefined
      ? undefined
      : await auditAndLedger({
          layout,
          publisherIndex: publisher.peer.index,
          peerOf: new Map(setup.peers.map((p) => [p.rightsHolder, p.peer.name])),
          final: { id: finalUnet.id, round: finalUnet.round },
          ...(exported.get(finalUnet.id) === undefined
            ? {}
            : { exportedDir: exported.get(finalUnet.id) as string }),
          backend: options.backend,
          note: options.note,
          ...(options.log ? { log: options.log } : {}),
        })
  const model: DemoReportModel = {
    title: 'diffusion-coop demo: a cooperative on Twemoji',
    generatedAt: new Date().toISOString(),
    wallSeconds: options.wallSeconds,
    backend: backendName,
    charter: charterSummary(charter, coopId),
    charterJson: charter,
    peers: setup.peers.map((p) => ({
      name: p.peer.name,
      peerId: p.peerId,
      publisher: p.peer.publisher,
      rightsHolder: p.rightsHolder,
      categories: p.categories,
      items: p.items,
      manifestId: manifestIdOf.get(p.peerId) ?? '',
    })),
    checkpoints: reportCheckpoints,
    attribution: attributionList(checkpoints, owners),
    samples,
    lossSvg: svg,
    ...(artists === undefined ? {} : { extraSections: artists.sections }),
    qualitySvg,
    ...(finalQuality === undefined ? {} : { quality: finalQuality }),
    ...(timeBox === null ? {} : { timeBox }),
  }
  await writeFileDurable(layout.report, renderReportHtml(model))
  return {
    metrics,
    ...(artists === undefined ? {} : { audit: artists.audit, ledger: artists.ledger }),
    checkpoints: checkpoints.length,
    verified: [...verification.values()].filter((v) => v.ok).length,
    samples: samples.map((s) => join(layout.samplesDir, `${s.round}.png`)),
  }
}
