// The demo's answers to "where are the copies?" and "who gets credit?": the publisher audits the
// final U-Net checkpoint on its own images (as a charter's --audit-every would have it do) and
// signs the result, and the credit ledger of that checkpoint is recomputed from the publisher's
// store. Both land in demo-out (audit/, credit.json) and as sections of report.html. Cached by
// checkpoint id, so a resumed demo does not redo them.
import { existsSync } from 'node:fs'
import { copyFile, mkdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { Logger } from 'pino'
import { sha256Digest } from '../../protocol/digest.ts'
import { canonicalize } from '../../protocol/jcs.ts'
import { initBackend } from '../../trainer/backend.ts'
import { auditPage, auditSection } from '../audit/html.ts'
import { runAudit } from '../audit/memorization.ts'
import { loadAuditSource } from '../audit/source.ts'
import { signAuditReport } from '../audit/statement.ts'
import { ledgerFromStore, type Ledger } from '../credit/ledger.ts'
import { readKeyFile } from '../keystore.ts'
import { escapeHtml as esc } from '../report/html.ts'
import type { ReportSection } from '../report/model.ts'
import { checkpointDir } from '../round/layout.ts'
import { writeFileDurable } from '../store/durable.ts'
import type { DemoLayout } from './layout.ts'

/** Samples per class of the demo's audit: 8 per category keeps it to seconds on a CPU. */
export const DEMO_AUDIT_SAMPLES_PER_CLASS = 8

export interface AuditLedgerResult {
  sections: ReportSection[]
  ledger: Ledger
  audit: { images: number; flagged: number; seconds: number; statement: string }
}

function ledgerSection(ledger: Ledger, peerOf: ReadonlyMap<string, string>): ReportSection {
  const rows = ledger.holders.map(
    (h) =>
      `<tr><td>${esc(h.name)}</td><td><code>${esc(h.did ?? 'unknown')}</code></td><td>${esc((h.did === null ? undefined : peerOf.get(h.did)) ?? '–')}</td><td>${esc(h.license)}</td><td class="num">${Math.round(h.sampleSteps)}</td><td class="num" style="white-space:nowrap">${(h.share * 100).toFixed(2)} %</td></tr>`,
  )
  return {
    id: 'credit',
    title: 'Credit ledger',
    html: `<section id="credit"><h2>Credit ledger</h2>
<p>Each rights holder's share of what the final checkpoint (round ${ledger.round}) learned, counted in sample-steps through its whole lineage, autoencoder included:
${ledger.contributions} signed contributions, ${ledger.sampleSteps} sample-steps. Rule: ${esc(ledger.rule)}. Recompute it with <code>coop credit</code>.</p>
<table><thead><tr><th>Rights holder</th><th>did:key</th><th>Their images are on</th><th>License</th><th>Sample-steps</th><th>Share</th></tr></thead>
<tbody>${rows.join('\n')}</tbody></table></section>`,
  }
}

export async function auditAndLedger(options: {
  layout: DemoLayout
  publisherIndex: number
  /** Id and round of the last U-Net checkpoint. */
  final: { id: string; round: number }
  /** Rights holder did:key -> the peer holding their images, for the ledger's table. */
  peerOf?: ReadonlyMap<string, string>
  /** Where the demo exported that checkpoint: the signed audit is attached there too. */
  exportedDir?: string
  backend: string
  note: (text: string) => void
  log?: Logger
}): Promise<AuditLedgerResult> {
  const { layout, final } = options
  const publisher = layout.peers[options.publisherIndex]
  if (publisher === undefined) throw new Error('no publisher')
  const ledger = await ledgerFromStore(publisher.store, final.id)
  await writeFileDurable(join(layout.out, 'credit.json'), `${JSON.stringify(ledger, null, 2)}\n`)

  const auditDir = join(layout.out, 'audit')
  const sectionCache = join(auditDir, `section-${final.id.slice(7, 23)}.html`)
  const paths = {
    json: join(auditDir, 'audit.json'),
    html: join(auditDir, 'audit.html'),
    statement: join(auditDir, 'audit.dsse.json'),
  }
  let section: string
  let summary: AuditLedgerResult['audit']
  if (existsSync(sectionCache) && existsSync(paths.json) && existsSync(paths.statement)) {
    section = await readFile(sectionCache, 'utf8')
    const report = JSON.parse(await readFile(paths.json, 'utf8')) as {
      summary: { images: number; flagged: number }
      seconds?: number
    }
    summary = {
      ...report.summary,
      seconds: report.seconds ?? 0,
      statement: sha256Digest(
        new Uint8Array(
          Buffer.from(
            (JSON.parse(await readFile(paths.statement, 'utf8')) as { payload: string }).payload,
            'base64',
          ),
        ),
      ),
    }
  } else {
    options.note('auditing the final checkpoint for memorized images (the publisher on its own images)...')
    const started = performance.now()
    await initBackend(options.backend, options.log)
    const source = await loadAuditSource(checkpointDir(publisher.store, 'unet', final.round), publisher.store)
    const run = await runAudit({
      source,
      dataDir: publisher.dataDir,
      samplesPerClass: DEMO_AUDIT_SAMPLES_PER_CLASS,
      ...(options.log === undefined ? {} : { log: options.log }),
    })
    const seconds = (performance.now() - started) / 1000
    await mkdir(auditDir, { recursive: true })
    const reportBytes = new TextEncoder().encode(`${JSON.stringify(run.report, null, 2)}\n`)
    await writeFileDurable(paths.json, reportBytes)
    await writeFileDurable(paths.html, await auditPage(run))
    const envelope = signAuditReport(
      run.report,
      sha256Digest(reportBytes),
      await readKeyFile(publisher.nodeKey),
    )
    await writeFileDurable(paths.statement, canonicalize(envelope))
    section = await auditSection(run)
    await writeFileDurable(sectionCache, section)
    summary = {
      images: run.report.summary.images,
      flagged: run.report.summary.flagged,
      seconds,
      statement: sha256Digest(new Uint8Array(Buffer.from(envelope.payload, 'base64'))),
    }
  }
  // Attached to the exported checkpoint too, where `coop summary` looks for it.
  if (options.exportedDir !== undefined && existsSync(options.exportedDir))
    await copyFile(paths.statement, join(options.exportedDir, 'audit.dsse.json'))
  return {
    sections: [
      ledgerSection(ledger, options.peerOf ?? new Map()),
      {
        id: 'memorization-audit',
        title: 'Memorization audit',
        html: section.replace(
          '</section>',
          `<p>Signed by the publisher: <a href="audit/audit.dsse.json"><code>audit/audit.dsse.json</code></a> (statement <code>${esc(summary.statement)}</code>); full table in <a href="audit/audit.json">audit/audit.json</a>.</p></section>`,
        ),
      },
    ],
    ledger,
    audit: summary,
  }
}
