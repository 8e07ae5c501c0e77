// What the demo report shows, as plain data: built by node/demo from the run's stores and
// provenance, rendered by html.ts. Keeping the model apart lets tests render reports from
// hand-made models and lets the HTML stay free of I/O.

export interface ReportPeer {
  /** Display name, e.g. "peer-1". */
  name: string
  /** The node's libp2p PeerId: the custodian named in its consent manifest. */
  peerId: string
  publisher: boolean
  /** The rights holder's did:key, issuer of the peer's consent manifest. */
  rightsHolder: string
  /** Twemoji categories this peer holds (the non-IID split). */
  categories: string[]
  items: number
  manifestId: string
}

export interface ReportContribution {
  /** PeerId of the contributing node. */
  peerId: string
  digest: string
  samples: number
  loss?: number
}

export interface ReportVerification {
  ok: boolean
  /** Error code from `coop checkpoint verify` when it failed. */
  code?: string
  detail: string
}

export interface ReportCheckpoint {
  round: number
  phase: string
  digest: string
  parent: string | null
  contributions: ReportContribution[]
  /** Revoked items the publisher excluded since the parent checkpoint. */
  excludedItems: number
  /** Manifests whose consent ended (validUntil passed) since the parent checkpoint. */
  expiredManifests?: number
  verification: ReportVerification
  /** Eval loss of the averaged model after this round, when measured. */
  evalLoss?: number
  /** Path of the checkpoint folder, relative to the report. */
  path: string
}

export interface AttributionEntry {
  rightsHolder: string
  license: string
  /** The attribution text the licence requires, verbatim from the consent manifest. */
  attribution: string
  uri?: string
  items: number
  /** Display names of the peers that held these items. */
  peers: string[]
}

export interface ReportSample {
  round: number
  /** PNG bytes of the grid: one row per category. */
  png: Uint8Array
  rows: string[]
}

export interface ReportCharterSummary {
  coopId: string
  config: string
  publishers: string[]
  threshold: number
  admission: string
  acceptedLicenses: string[]
  innerSteps: number
  outerLr: number
  outerMomentum: number
  aggregator: string
  compression: string
  quorum: number
  phases: string
  createdAt: string
}

export interface DemoReportModel {
  title: string
  generatedAt: string
  /** Seconds from the first attempt's start to the last checkpoint (all attempts summed), before the report was built. */
  wallSeconds: number
  backend: string
  charter: ReportCharterSummary
  /** The charter as signed, shown in full below the summary. */
  charterJson: unknown
  peers: ReportPeer[]
  checkpoints: ReportCheckpoint[]
  attribution: AttributionEntry[]
  samples: ReportSample[]
  /** The loss plot as an SVG document, inlined. */
  lossSvg: string
  /** Sample quality per round (class accuracy, Fréchet distance) as an SVG document, shown beside the loss. */
  qualitySvg?: string
  /** Quality of the final grid's model. */
  quality?: { classAccuracy: number; frechetDistance: number; samples: number; round: number }
  /** Set when the demo's time box ended the run before the charter's last U-Net round (node/demo/time-box.ts). */
  timeBox?: { unetRoundsDone: number; unetRoundsPlanned: number; limitSeconds: number }
  /** Further sections (credit ledger, memorization audit, ...), rendered before the attribution. */
  extraSections?: ReportSection[]
}

/** A self-contained section of the report: its anchor id, its title in the navigation, its HTML. */
export interface ReportSection {
  id: string
  title: string
  html: string
}
