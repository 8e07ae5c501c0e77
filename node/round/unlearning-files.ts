// Unlearning over files (no LevelDB, like audit.ts): the receipts in a store's checkpoint
// directories, what `coop trace --image` adds for a revoked image (which checkpoints used it and
// which receipt superseded them; whether the current lineage uses it), and the check
// `coop checkpoint verify` runs under a rollback charter (the lineage excludes every item revoked
// before its round; a rollback checkpoint carries the new base's files and a consistent receipt).
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { verifyCharter } from '../../protocol/charter.ts'
import { isProtocolError } from '../../protocol/errors.ts'
import type { ExclusionDetails, ExclusionSummary } from '../../protocol/exclusions.ts'
import { merkleRoot } from '../../protocol/merkle.ts'
import { verifyReceipt, type ReceiptPredicate, type VerifiedReceipt } from '../../protocol/receipt.ts'
import { CHECKPOINT_FILE_MAX_BYTES } from './constants.ts'
import { RoundError } from './errors.ts'
import { CHECKPOINT_FILES } from './layout.ts'
import type { LoadedCheckpoint } from './audit.ts'
import type { LineageIndex, TraceCheckpoint } from './trace.ts'
import {
  firstUse,
  isRollbackShape,
  RECEIPT_FILE,
  recordedInLineage,
  rollbackViolation,
  watchedItemsByManifest,
  type NodeLookup,
} from './unlearning.ts'

/** The rules' view of a lineage index. */
export function indexLookup(index: LineageIndex): NodeLookup {
  return (id) => {
    const c: TraceCheckpoint | undefined = index.checkpoint(id)
    if (c === undefined) return undefined
    return {
      id: c.id,
      round: c.round,
      parent: c.parent,
      components: c.components,
      contributions: c.contributions,
      excludedItems: c.revokedExcluded,
    }
  }
}

/**
 * Whether a receipt answers exactly what its rollback checkpoint records as excluded: the lists
 * of the checked details when at hand, else the signed counts and the items root.
 */
export function receiptMatchesExclusions(
  r: Pick<ReceiptPredicate, 'revocations' | 'revokedItems'>,
  summary: ExclusionSummary,
  details: ExclusionDetails | undefined,
): boolean {
  const same = (a: readonly string[], b: readonly string[]) =>
    a.length === b.length && a.every((x, i) => x === b[i])
  if (details !== undefined)
    return same(r.revocations, details.revocations) && same(r.revokedItems, details.items)
  return (
    r.revocations.length === summary.revocations &&
    r.revokedItems.length === summary.items &&
    merkleRoot(r.revokedItems) === summary.itemsRoot
  )
}

/** Reads and verifies the receipt a checkpoint directory lists (the file digest is checked against the provenance). */
export async function readDirReceipt(checkpoint: LoadedCheckpoint): Promise<VerifiedReceipt | undefined> {
  const digest = checkpoint.verified.files.get(RECEIPT_FILE)
  if (digest === undefined) return undefined
  const bytes = new Uint8Array(await readFile(join(checkpoint.dir, RECEIPT_FILE)))
  if (bytes.byteLength > CHECKPOINT_FILE_MAX_BYTES)
    throw new RoundError('BAD_ROLLBACK', `${checkpoint.dir}/${RECEIPT_FILE} is too large`)
  try {
    return verifyReceipt(bytes, {
      publishers: checkpoint.publishers,
      threshold: checkpoint.threshold,
      coopId: checkpoint.coopId,
    })
  } catch (err) {
    if (isProtocolError(err))
      throw new RoundError(
        'BAD_ROLLBACK',
        `the unlearning receipt does not verify: ${err.code}: ${err.message}`,
        {
          cause: err,
        },
      )
    throw err
  }
}

export interface ImageUnlearning {
  /** Checkpoints that used the image and a receipt superseded, by receipt. */
  superseded: {
    receipt: string
    rollbackRound: number
    checkpoints: { checkpoint: string; round: number }[]
  }[]
  /** The newest checkpoint (U-Net over autoencoder) and whether its lineage used the image. */
  current?: { checkpoint: string; phase: string; round: number; uses: boolean }
}

/** What the receipts in `checkpoints` say about an image that `usedBy` (traceImage) lists. */
export async function imageUnlearning(
  index: LineageIndex,
  checkpoints: readonly LoadedCheckpoint[],
  usedBy: readonly { checkpoint: string; round: number }[],
): Promise<ImageUnlearning> {
  const used = new Map(usedBy.map((u) => [u.checkpoint, u.round] as const))
  const out: ImageUnlearning = { superseded: [] }
  for (const checkpoint of checkpoints) {
    let receipt: VerifiedReceipt | undefined
    try {
      receipt = await readDirReceipt(checkpoint)
    } catch {
      continue // a receipt that does not verify answers for nothing
    }
    if (receipt === undefined) continue
    const hit = receipt.predicate.superseded
      .filter((s) => used.has(s.provenance))
      .map((s) => ({ checkpoint: s.provenance, round: s.round }))
    if (hit.length > 0)
      out.superseded.push({
        receipt: receipt.digest,
        rollbackRound: receipt.predicate.round,
        checkpoints: hit,
      })
  }
  const newest = index.checkpoints().at(-1)
  if (newest !== undefined)
    out.current = {
      checkpoint: newest.id,
      phase: newest.phase,
      round: newest.round,
      uses: used.has(newest.id),
    }
  return out
}

export interface UnlearningReport {
  policy: 'exclude' | 'rollback'
  /** Under rollback: whether the lineage provably excludes every item revoked before the round. */
  lineage?: 'excludes-revoked' | 'unavailable'
  /** Items recorded as revoked in the lineage. */
  revokedItems?: number
  /** Set for a rollback checkpoint: its receipt's digest and the new base. */
  receipt?: string
  newBase?: string
}

/**
 * The unlearning checks of `coop checkpoint verify`. Throws LINEAGE_USES_REVOKED when a rollback
 * lineage used an item it records as revoked, BAD_ROLLBACK when a rollback checkpoint's receipt
 * or files do not match. `lineage` is 'unavailable' when the store does not hold the checkpoint's
 * lineage (the directory was copied alone).
 */
export async function checkUnlearning(
  loaded: LoadedCheckpoint,
  loadLineage: () => Promise<{ index: LineageIndex; checkpoints: LoadedCheckpoint[] } | undefined>,
  charterBytes: Uint8Array,
): Promise<UnlearningReport> {
  const policy = verifyCharter(charterBytes).charter.onRevocation ?? 'exclude'
  const report: UnlearningReport = { policy }
  const { verified } = loaded
  const p = verified.predicate
  if (isRollbackShape(p, verified.files)) {
    if (policy !== 'rollback')
      throw new RoundError('BAD_ROLLBACK', 'a rollback checkpoint under a charter that does not roll back')
    const receipt = (await readDirReceipt(loaded)) as VerifiedReceipt
    const r = receipt.predicate
    if (
      p.parent === null ||
      r.round !== p.round ||
      r.phase !== p.phase ||
      r.newBase.provenance !== p.parent.provenance ||
      r.newBase.checkpoint !== p.parent.checkpoint ||
      verified.files.get(CHECKPOINT_FILES.model) !== r.newBase.checkpoint ||
      verified.files.get(CHECKPOINT_FILES.momentum) !== receipt.files.get(CHECKPOINT_FILES.momentum) ||
      !receiptMatchesExclusions(r, p.exclusions, loaded.exclusions)
    )
      throw new RoundError('BAD_ROLLBACK', 'the receipt and the rollback checkpoint disagree')
    report.receipt = receipt.digest
    report.newBase = r.newBase.provenance
  }
  if (policy !== 'rollback') return report
  const index = (await loadLineage())?.index
  if (index === undefined || index.checkpoint(verified.digest) === undefined) {
    report.lineage = 'unavailable'
    return report
  }
  const lookup = indexLookup(index)
  const revoked = recordedInLineage(lookup, verified.digest)
  report.revokedItems = revoked.size
  const manifests = new Map<string, { id: string; items: string[] }>()
  for (const item of revoked)
    for (const m of index.manifestsWithImage(item)) manifests.set(m.id, { id: m.id, items: m.items })
  const violation = rollbackViolation(lookup, verified.digest, manifests.values())
  if (violation !== undefined)
    throw new RoundError(
      'LINEAGE_USES_REVOKED',
      `item ${violation.item} is recorded as revoked in this lineage but round ${violation.round} (checkpoint ${violation.checkpoint}) trained on it through manifest ${violation.manifest}`,
    )
  report.lineage = 'excludes-revoked'
  return report
}

/**
 * A rollback checkpoint's "recomputation": its weights and momentum must be its new base's files,
 * found among `checkpoints` (the store's verified directories). 'unavailable' without the base.
 */
export function rollbackRecomputation(
  loaded: LoadedCheckpoint,
  checkpoints: readonly LoadedCheckpoint[],
): 'passed' | 'unavailable' {
  const parent = loaded.verified.predicate.parent
  const base = checkpoints.find((c) => c.verified.digest === parent?.provenance)
  if (base === undefined) return 'unavailable'
  for (const name of [CHECKPOINT_FILES.model, CHECKPOINT_FILES.momentum])
    if (base.verified.files.get(name) !== loaded.verified.files.get(name))
      throw new RoundError('BAD_ROLLBACK', `${name} of the rollback checkpoint is not its new base's`)
  return 'passed'
}

/** Whether the lineage of `checkpoint` uses any of `items` (for tests and tools). */
export function lineageUses(index: LineageIndex, checkpoint: string, items: ReadonlySet<string>): boolean {
  const manifests = new Map<string, { id: string; items: string[] }>()
  for (const item of items)
    for (const m of index.manifestsWithImage(item)) manifests.set(m.id, { id: m.id, items: m.items })
  return (
    firstUse(indexLookup(index), checkpoint, watchedItemsByManifest(manifests.values(), items)) !== undefined
  )
}
