// The signed summary of an audit (protocol/audit.ts) built from audit.json: the statement carries
// the counts, flagged digests and per-holder worst cases; audit.json, named by its digest, the
// per-image table.
import { createAudit } from '../../protocol/audit.ts'
import type { DsseEnvelope } from '../../protocol/dsse.ts'
import type { Ed25519PrivateKey } from '../../protocol/keys.ts'
import type { AuditReport } from './memorization.ts'

export function signAuditReport(
  report: AuditReport,
  reportDigest: string,
  key: Ed25519PrivateKey,
): DsseEnvelope {
  return createAudit(
    {
      files: report.checkpoint.files,
      checkpoint: report.checkpoint.id,
      coop: report.checkpoint.coop,
      round: report.checkpoint.round,
      method: {
        sampler: report.method.sampler,
        classes: report.method.classes,
        samplesPerClass: report.method.samplesPerClass,
        samples: report.method.samples,
        imageSize: report.method.imageSize,
        pixelMetric: report.method.pixelMetric,
        features: report.method.features,
      },
      thresholds: { l2: report.thresholds.l2, ratio: report.thresholds.ratio },
      images: report.summary.images,
      imagesRoot: report.summary.imagesRoot,
      flagged: [...new Set(report.images.filter((i) => i.flagged).map((i) => i.sha256))],
      holders: report.holders.map((h) => ({
        issuer: h.issuer,
        name: h.name,
        images: h.images,
        flagged: h.flagged,
        closestL2: h.closest?.l2 ?? null,
      })),
      report: reportDigest,
      createdAt: report.createdAt,
    },
    key,
  )
}
