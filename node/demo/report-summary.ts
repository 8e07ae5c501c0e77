// What report.html says about the cooperative itself: its charter in words, and the attribution
// list every published checkpoint's lineage obliges it to give.
import type { CoopCharter } from '../../protocol/charter.ts'
import type { AttributionEntry, ReportCharterSummary } from '../report/model.ts'
import type { CollectedCheckpoint, ManifestOwner } from './collect.ts'

function describeAggregator(a: CoopCharter['rounds']['aggregator']): string {
  switch (a.kind) {
    case 'mean':
      return 'sample-weighted mean'
    case 'median':
      return 'coordinate-wise median'
    case 'trimmed':
      return `trimmed mean (${a.fraction} trimmed each side)`
    case 'clip':
      return `norm clipping at ${a.norm}, then mean`
  }
}

function describeCompression(c: CoopCharter['rounds']['compression']): string {
  switch (c.kind) {
    case 'none':
      return 'none (fp32 deltas)'
    case 'int8':
      return 'int8 with a per-tensor scale'
    case 'topk':
      return `top-k (${c.fraction} of coordinates${c.values === '2bit' ? ', 2-bit values' : ''}) with error feedback`
  }
}

export function charterSummary(charter: CoopCharter, coopId: string): ReportCharterSummary {
  const ae = charter.phases.autoencoder
  const model = charter.model as { name?: string }
  return {
    coopId,
    config: model.name ?? 'custom',
    publishers: charter.publishers,
    threshold: charter.threshold,
    admission:
      charter.admission.mode === 'open'
        ? 'open to any peer with valid consent'
        : `allowlist of ${charter.admission.peers.length} peers`,
    acceptedLicenses: charter.acceptedLicenses,
    innerSteps: charter.rounds.innerSteps,
    outerLr: charter.rounds.outerLr,
    outerMomentum: charter.rounds.outerMomentum,
    aggregator: describeAggregator(charter.rounds.aggregator),
    compression: describeCompression(charter.rounds.compression),
    quorum: charter.rounds.quorum,
    phases:
      (ae.mode === 'cooperative'
        ? `autoencoder: ${ae.rounds} cooperative rounds`
        : `autoencoder: component ${ae.checkpoint}`) + `; U-Net: ${charter.phases.unet.rounds} rounds`,
    createdAt: charter.createdAt,
  }
}

export function attributionList(
  checkpoints: CollectedCheckpoint[],
  owners: Map<string, ManifestOwner>,
): AttributionEntry[] {
  // Every manifest any published checkpoint's lineage used: what the licences oblige us to credit.
  const used = new Set(checkpoints.flatMap((c) => c.predicate.manifests))
  const entries: AttributionEntry[] = []
  for (const digest of [...used].sort()) {
    const owner = owners.get(digest)
    if (owner === undefined) continue
    entries.push({
      rightsHolder: owner.rightsHolder,
      license: owner.license,
      attribution: owner.attributionName,
      ...(owner.attributionUri === undefined ? {} : { uri: owner.attributionUri }),
      items: owner.items,
      peers: [owner.peerName],
    })
  }
  return entries
}
