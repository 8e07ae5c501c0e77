// Unlearning by rollback (charter `onRevocation: "rollback"`, docs/PROTOCOL.md §9d). The
// publisher side: when a revocation not yet recorded by the chain withdraws items that the
// round's base lineage or the open round's contributions used, the round closes as a rollback
// checkpoint instead: parent = the newest checkpoint whose whole lineage never used them, no
// contributions, the base's weights and momentum, and a signed unlearning receipt among its files.
// The verifier side (rollback-verify.ts) checks the receipt against its own lineage before
// adopting. Trainers need nothing else: the next round's base is the rollback checkpoint.
import type { Logger } from 'pino'
import type { ContributionPredicate } from '../../protocol/contribution.ts'
import { sha256Digest } from '../../protocol/digest.ts'
import { envelopeBytes } from '../../protocol/dsse.ts'
import type { Ed25519PrivateKey } from '../../protocol/keys.ts'
import { createProvenance, verifyProvenance, type ProvenancePredicate } from '../../protocol/provenance.ts'
import { createReceipt } from '../../protocol/receipt.ts'
import { summarizeExclusions } from '../../protocol/exclusions.ts'
import { PROVENANCE_MAX_LIST, RECEIPT_MAX_LIST } from '../../protocol/constants.ts'
import type { ConsentBook } from '../consent/book.ts'
import { RoundError } from './errors.ts'
import type { Fetcher } from './fetcher.ts'
import type { RoundGossip } from './gossip.ts'
import { CHECKPOINT_FILES } from './layout.ts'
import type { CheckpointRecord, CloseRecord } from './records.ts'
import type { Phase } from './schedule.ts'
import { checkpointTerms, lineageManifestsOf } from './terms.ts'
import type { RoundState } from './state.ts'
import {
  firstUse,
  RECEIPT_FILE,
  rollbackTarget,
  watchedItemsByManifest,
  type LineageNode,
  type NodeLookup,
} from './unlearning.ts'

/** A checkpoint record made by a rollback: the only non-genesis kind without contributions. */
export function isRollbackRecord(record: Pick<CheckpointRecord, 'predicate'>): boolean {
  return record.predicate.parent !== null && record.predicate.contributions.length === 0
}

/** The rules' view of the adopted checkpoints. */
export function stateLookup(state: Pick<RoundState, 'checkpointById'>): NodeLookup {
  return (id) => {
    const record = state.checkpointById(id)
    if (record === undefined) return undefined
    const p = record.predicate
    return {
      id: record.id,
      round: record.round,
      parent: p.parent?.provenance ?? null,
      components: p.components.map((c) => c.provenance),
      contributions: p.contributions,
      // The checked exclusion details the record was adopted with (none on a record without them).
      excludedItems: record.exclusions?.items ?? [],
    }
  }
}

function bookManifests(consent: Pick<ConsentBook, 'manifests'>): { id: string; items: string[] }[] {
  return consent.manifests().map(({ verified }) => ({
    id: verified.digest,
    items: verified.items.map((i) => i.digest),
  }))
}

export interface UnlearningModules {
  state: RoundState
  fetcher: Fetcher
  gossip: RoundGossip
  consent: ConsentBook
  privateKey: Ed25519PrivateKey
  log: Logger
}

/** The publisher's half: decides whether the open round is a rollback, and publishes it. */
export class Unlearning {
  readonly #modules: UnlearningModules
  /** Rounds for which "rollback impossible" was logged (the close step polls). */
  readonly #impossibleLogged = new Set<number>()

  constructor(modules: UnlearningModules) {
    this.#modules = modules
  }

  /**
   * The close record of a rollback for `round`, or undefined when the round closes as usual:
   * the charter does not roll back, nothing revoked is pending, the pending items were never
   * used, or no checkpoint of the phase is clean (then the revocation is recorded as `exclude`
   * would, and `coop checkpoint verify` reports the lineage as using revoked items).
   */
  closeFor(
    round: number,
    phase: Phase,
    base: CheckpointRecord,
    candidates: readonly { predicate: Pick<ContributionPredicate, 'manifests'> }[],
  ): CloseRecord | undefined {
    const { state, consent, log } = this.#modules
    if (state.charter.onRevocation !== 'rollback') return undefined
    // Items withdrawn by revocations that the base's chain has not recorded yet.
    const pending = consent.exclusionsSince(state.chainExclusions(base), [], Date.now()).items
    if (pending.length === 0) return undefined
    const manifests = bookManifests(consent)
    const watchedPending = watchedItemsByManifest(manifests, new Set(pending))
    const lookup = stateLookup(state)
    const baseUsed = firstUse(lookup, base.id, watchedPending) !== undefined
    const roundUses = candidates.some((c) => c.predicate.manifests.some((m) => watchedPending.has(m)))
    if (!baseUsed && !roundUses) return undefined
    // Every known revoked item counts when looking for the clean base: items recorded after it
    // drop out of the new chain's records and must not have been used before it either.
    const target = baseUsed
      ? rollbackTarget(lookup, base.id, watchedItemsByManifest(manifests, consent.revokedItems()))
      : { base: lookup(base.id) as LineageNode, superseded: [] }
    if (target === undefined) {
      if (!this.#impossibleLogged.has(round)) {
        this.#impossibleLogged.add(round)
        log.error(
          { round, phase, items: pending.length },
          'rollback impossible: the whole phase lineage used revoked items; recording them only',
        )
      }
      return undefined
    }
    const newBase = state.checkpointById(target.base.id) as CheckpointRecord
    // The rollback checkpoint records what its new chain has not: every applied revocation and
    // its items, and the new lineage's manifests whose consent ended (as any checkpoint would).
    const closedAt = Date.now()
    const since = consent.exclusionsSince(
      state.chainExclusions(newBase),
      lineageManifestsOf(state, newBase),
      closedAt,
    )
    // Whole seconds: the receipt's createdAt is a protocol date-time (§1).
    const now = new Date(closedAt).toISOString().replace(/\.\d{3}Z$/, 'Z')
    return {
      round,
      phase,
      base: base.id,
      contributions: [],
      excludedItems: since.items.slice(0, RECEIPT_MAX_LIST),
      revocations: since.revocations.slice(0, RECEIPT_MAX_LIST),
      expiredManifests: since.expiredManifests.slice(0, PROVENANCE_MAX_LIST),
      closedAt: now,
      rollback: {
        newBase: newBase.id,
        superseded: target.superseded.map((n) => ({ provenance: n.id, round: n.round })),
        createdAt: now,
      },
    }
  }

  /** Signs the receipt and the rollback checkpoint of a frozen rollback close, announces and adopts it. */
  async publish(close: CloseRecord): Promise<CheckpointRecord> {
    const { state, fetcher, gossip, consent, privateKey, log } = this.#modules
    const rollback = close.rollback
    const newBase = rollback === undefined ? undefined : state.checkpointById(rollback.newBase)
    if (rollback === undefined || newBase === undefined)
      throw new RoundError(
        'BAD_ROLLBACK',
        `round ${close.round}: the rollback's new base is not adopted here`,
      )
    const started = performance.now()
    const receipt = createReceipt(
      {
        files: {
          [CHECKPOINT_FILES.model]: newBase.files.model,
          [CHECKPOINT_FILES.momentum]: newBase.files.momentum,
          [CHECKPOINT_FILES.config]: newBase.files.config,
        },
        coop: state.coopId,
        phase: close.phase,
        round: close.round,
        newBase: { checkpoint: newBase.files.model, provenance: newBase.id, round: newBase.round },
        superseded: rollback.superseded,
        revocations: close.revocations,
        revokedItems: close.excludedItems,
        createdAt: rollback.createdAt,
      },
      [privateKey],
    )
    const receiptBytes = envelopeBytes(receipt)
    // Stored before the announcement: verifiers fetch it by the digest the provenance signs.
    await state.store.putBlob(receiptBytes)
    const model = await fetcher.requireBlob(newBase.files.model, [])
    const momentum = await fetcher.requireBlob(newBase.files.momentum, [])
    const components = newBase.predicate.components
    const config = state.configBytes(close.phase, close.round, components)
    const exclusions = summarizeExclusions({
      revocations: close.revocations,
      expiredManifests: close.expiredManifests ?? [],
      items: close.excludedItems,
    })
    // Stored before the announcement too: verifiers fetch the details by the summary's digest.
    if (exclusions.bytes !== undefined) await state.store.putBlob(exclusions.bytes)
    const predicate: ProvenancePredicate = {
      coop: state.coopId,
      round: close.round,
      phase: close.phase,
      parent: { checkpoint: newBase.files.model, provenance: newBase.id },
      contributions: [],
      manifests: [],
      exclusions: exclusions.summary,
      components,
      // The terms of what the weights were trained on: the new base's lineage.
      ...checkpointTerms(consent, lineageManifestsOf(state, newBase)),
    }
    const envelope = createProvenance(
      {
        ...predicate,
        files: {
          [CHECKPOINT_FILES.model]: newBase.files.model,
          [CHECKPOINT_FILES.momentum]: newBase.files.momentum,
          [CHECKPOINT_FILES.config]: sha256Digest(config),
          [RECEIPT_FILE]: sha256Digest(receiptBytes),
        },
      },
      [privateKey],
    )
    const verified = verifyProvenance(envelope, {
      publishers: state.charter.publishers,
      threshold: state.charter.threshold,
      coopId: state.coopId,
    })
    await gossip.publishCheckpoint(envelope)
    const record = await state.adopt(
      verified,
      envelope,
      { model, momentum, config, extra: { [RECEIPT_FILE]: receiptBytes } },
      'published',
      exclusions.details,
    )
    const aggregateMs = Math.round(performance.now() - started)
    log.info(
      {
        round: close.round,
        phase: close.phase,
        checkpoint: record.id,
        newBase: newBase.id,
        newBaseRound: newBase.round,
        superseded: rollback.superseded.map((s) => s.round),
        items: close.excludedItems.length,
        receipt: sha256Digest(new Uint8Array(Buffer.from(receipt.payload, 'base64'))),
      },
      'lineage rolled back',
    )
    log.info(
      { round: close.round, phase: close.phase, contributions: 0, checkpoint: record.id, aggregateMs },
      'round closed',
    )
    state.events.emit('roundClosed', {
      round: close.round,
      phase: close.phase,
      checkpoint: record.id,
      contributions: 0,
      aggregateMs,
    })
    return record
  }
}
