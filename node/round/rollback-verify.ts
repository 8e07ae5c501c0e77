// Unlearning by rollback, the verifier's half (docs/PROTOCOL.md §9d): an announced rollback
// checkpoint is adopted only when its receipt verifies and agrees with the peer's own lineage.
// The publisher's half is rollback.ts.
import type { Logger } from 'pino'
import { RECEIPT_MAX_BYTES } from '../../protocol/constants.ts'
import { sha256Digest } from '../../protocol/digest.ts'
import type { ExclusionDetails } from '../../protocol/exclusions.ts'
import { isProtocolError } from '../../protocol/errors.ts'
import { verifyReceipt, type VerifiedReceipt } from '../../protocol/receipt.ts'
import type { ConsentBook } from '../consent/book.ts'
import type { CoopHost } from '../p2p/host.ts'
import { RoundError } from './errors.ts'
import type { Fetcher } from './fetcher.ts'
import { CHECKPOINT_FILES } from './layout.ts'
import type { CheckpointRecord } from './records.ts'
import { stateLookup } from './rollback.ts'
import { signedFileDigests, type RoundState } from './state.ts'
import { chainOf, firstUse, RECEIPT_FILE, watchedItemsByManifest } from './unlearning.ts'
import type { PendingCheckpoint } from './verifier.ts'

export interface RollbackVerifierModules {
  state: RoundState
  fetcher: Fetcher
  consent: Pick<ConsentBook, 'manifests' | 'revocations' | 'revokedItems'>
  host: Pick<CoopHost, 'penalize'>
  log: Logger
}

const sameList = (a: readonly string[], b: readonly string[]): boolean =>
  a.length === b.length && a.every((x, i) => x === b[i])

/**
 * Checks an announced rollback checkpoint and adopts it. The receipt must verify under the
 * charter, say what the provenance says (round, new base = parent, the revocations and items of
 * its checked exclusion details), name
 * the new base's files; the checkpoint's weights and momentum must be the new base's; the new
 * base must be an ancestor of the round's base and `superseded` exactly the checkpoints between;
 * the new base's whole lineage must not use a revoked item while the oldest superseded one does.
 */
export async function verifyRollbackCheckpoint(
  modules: RollbackVerifierModules,
  pending: PendingCheckpoint,
  exclusions: ExclusionDetails,
): Promise<CheckpointRecord> {
  const { state, fetcher, consent, host, log } = modules
  const { verified, envelope, from } = pending
  const p = verified.predicate
  const bad = (message: string): RoundError => {
    host.penalize(from, 'CONFLICT')
    return new RoundError('BAD_ROLLBACK', message)
  }
  if (state.charter.onRevocation !== 'rollback' || p.parent === null)
    throw bad('a checkpoint without contributions under a charter that does not roll back')
  const receiptDigest = verified.files.get(RECEIPT_FILE) as string
  const receiptBytes = await fetcher.requireBlob(
    receiptDigest,
    [from, ...verified.signers],
    RECEIPT_MAX_BYTES,
  )
  let receipt: VerifiedReceipt
  try {
    receipt = verifyReceipt(receiptBytes, {
      publishers: state.charter.publishers,
      threshold: state.charter.threshold,
      coopId: state.coopId,
    })
  } catch (err) {
    if (isProtocolError(err)) throw bad(`the unlearning receipt does not verify: ${err.code}: ${err.message}`)
    throw err
  }
  const r = receipt.predicate
  const files = signedFileDigests(verified)
  if (
    r.round !== p.round ||
    r.phase !== p.phase ||
    r.newBase.provenance !== p.parent.provenance ||
    r.newBase.checkpoint !== p.parent.checkpoint ||
    !sameList(r.revocations, exclusions.revocations) ||
    !sameList(r.revokedItems, exclusions.items) ||
    files.model !== r.newBase.checkpoint ||
    files.momentum !== receipt.files.get(CHECKPOINT_FILES.momentum)
  )
    throw bad('the receipt and the rollback checkpoint disagree')
  const config = state.configBytes(p.phase, p.round, p.components)
  if (sha256Digest(config) !== files.config) throw bad('config.json differs from ours')
  // Every revocation it answers is one we hold (they are gossiped; a late one is retried).
  const known = new Set(consent.revocations().map((v) => v.digest))
  const missing = r.revocations.filter((id) => !known.has(id))
  if (missing.length > 0)
    throw new RoundError('ROLLBACK_PENDING', `revocations ${missing.join(', ')} are not known here yet`)
  const revoked = consent.revokedItems()
  if (!r.revokedItems.every((i) => revoked.has(i)))
    throw bad('the receipt lists items that its revocations do not withdraw')
  const newBase = state.checkpointById(p.parent.provenance)
  const extra = { [RECEIPT_FILE]: receiptBytes }
  if (newBase === undefined) {
    // We missed the new base (joined late): the signatures vouch, as for any unknown parent.
    const model = await fetcher.requireBlob(files.model, [from, ...verified.signers])
    const momentum = await fetcher.requireBlob(files.momentum, [from, ...verified.signers])
    log.warn(
      { round: p.round, phase: p.phase, checkpoint: verified.digest },
      'rollback base unknown; adopted on signature and file digests',
    )
    return await state.adopt(verified, envelope, { model, momentum, config, extra }, 'signature', exclusions)
  }
  if (
    newBase.phase !== p.phase ||
    newBase.round !== r.newBase.round ||
    newBase.files.model !== files.model ||
    newBase.files.momentum !== files.momentum ||
    receipt.files.get(CHECKPOINT_FILES.config) !== newBase.files.config
  )
    throw bad("the rollback checkpoint's files are not its new base's")
  const lookup = stateLookup(state)
  const head = state.checkpointAt(p.phase, p.round - 1)
  if (head !== undefined) {
    const chain = chainOf(lookup, head.id)
    const at = chain.findIndex((n) => n.id === newBase.id)
    if (at < 0) throw bad("the new base is not in the round's base chain")
    const expected = chain.slice(at + 1).map((n) => `${n.round}:${n.id}`)
    if (
      !sameList(
        expected,
        r.superseded.map((s) => `${s.round}:${s.provenance}`),
      )
    )
      throw bad('the superseded checkpoints are not those between the new base and the round')
  }
  const watched = watchedItemsByManifest(
    consent.manifests().map(({ verified: m }) => ({ id: m.digest, items: m.items.map((i) => i.digest) })),
    new Set(r.revokedItems),
  )
  const used = firstUse(lookup, newBase.id, watched)
  if (used !== undefined)
    throw bad(`the new base's lineage used revoked item ${used.item} in round ${used.round}`)
  const oldest = r.superseded[0]
  if (
    oldest !== undefined &&
    state.checkpointById(oldest.provenance) !== undefined &&
    firstUse(lookup, oldest.provenance, watched) === undefined
  )
    throw bad('a newer checkpoint than the new base is clean: the rollback goes back too far')
  const model = await fetcher.requireBlob(newBase.files.model, [])
  const momentum = await fetcher.requireBlob(newBase.files.momentum, [])
  const record = await state.adopt(
    verified,
    envelope,
    { model, momentum, config, extra },
    'rollback',
    exclusions,
  )
  log.info(
    {
      round: p.round,
      phase: p.phase,
      checkpoint: verified.digest,
      contributions: 0,
      verification: 'rollback',
      newBase: newBase.id,
      receipt: receipt.digest,
    },
    'checkpoint adopted',
  )
  return record
}
