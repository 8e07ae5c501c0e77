// The publisher: signs each phase's genesis, closes the open round at quorum or deadline
// (closeDecision, a pure function), freezes the close set in the store before aggregating (so a
// crash re-aggregates exactly that set), computes, signs and announces the checkpoint, then
// adopts it and logs the eval loss on its own held-out images.
import type { ContributionPredicate } from '../../protocol/contribution.ts'
import { errorCode } from '../../protocol/coded-error.ts'
import { sha256Digest } from '../../protocol/digest.ts'
import type { Ed25519PrivateKey } from '../../protocol/keys.ts'
import { summarizeExclusions } from '../../protocol/exclusions.ts'
import { PROVENANCE_MAX_LIST } from '../../protocol/constants.ts'
import { createProvenance, verifyProvenance, type ProvenancePredicate } from '../../protocol/provenance.ts'
import type { Logger } from 'pino'
import type { ConsentBook } from '../consent/book.ts'
import { FETCH_RETRY_MS, ROUND_POLL_MS } from './constants.ts'
import { RoundError } from './errors.ts'
import { crashPoint } from './faults.ts'
import type { Fetcher } from './fetcher.ts'
import type { RoundGossip } from './gossip.ts'
import { CHECKPOINT_FILES } from './layout.ts'
import {
  computeCheckpoint,
  encodeCheckpointFiles,
  outerOptimizer,
  type ContributionPayload,
} from './recompute.ts'
import { closeKey, type CheckpointRecord, type CloseRecord, type ContributionRecord } from './records.ts'
import { genesisRound, phaseOfRound, type Phase } from './schedule.ts'
import { compareStrings, type RoundState } from './state.ts'
import { decodeTensors, zerosLike, type NamedTensor } from './tensors.ts'
import type { TrainerPool } from './trainers.ts'
import { Unlearning } from './rollback.ts'
import { checkpointTerms, lineageManifestsOf } from './terms.ts'

/** What closeDecision reads of an accepted contribution. */
export type CloseCandidate = Pick<ContributionRecord, 'id' | 'delta' | 'contributor'> & {
  predicate: Pick<ContributionPredicate, 'baseCheckpoint'>
}

export interface CloseInput<T extends CloseCandidate> {
  /** The open round's accepted contributions. */
  candidates: readonly T[]
  /** The round's base checkpoint id. */
  base: string
  /** Whether a payload (by delta digest) is in the store. */
  hasPayload(delta: string): boolean
  quorum: number
  deadlineSeconds: number
  /** Seconds since this node adopted the base. */
  elapsedSeconds: number
}

export interface CloseDecision<T extends CloseCandidate> {
  /** Candidates whose payload is not stored yet: fetch them. */
  fetch: T[]
  /** Set when the round closes now: why, and the frozen set of statement ids, sorted. */
  close?: { reason: 'quorum' | 'deadline'; contributions: string[] }
}

/**
 * Whether the open round closes now. A contribution is ready when it was trained from the base
 * and its payload is stored; the round closes at `quorum` ready ones, or at the deadline with at
 * least one (an empty round would publish nothing).
 */
export function closeDecision<T extends CloseCandidate>(input: CloseInput<T>): CloseDecision<T> {
  const ready = input.candidates.filter(
    (c) => c.predicate.baseCheckpoint === input.base && input.hasPayload(c.delta),
  )
  const fetch = input.candidates.filter((c) => !input.hasPayload(c.delta))
  const deadlinePassed = input.elapsedSeconds >= input.deadlineSeconds
  if (ready.length < input.quorum && !(deadlinePassed && ready.length > 0)) return { fetch }
  return {
    fetch,
    close: {
      reason: ready.length >= input.quorum ? 'quorum' : 'deadline',
      contributions: ready.map((c) => c.id).sort(compareStrings),
    },
  }
}

export interface PublisherModules {
  state: RoundState
  fetcher: Fetcher
  trainers: TrainerPool
  gossip: RoundGossip
  consent: ConsentBook
  privateKey: Ed25519PrivateKey
  log: Logger
}

export class Publisher {
  readonly #modules: PublisherModules
  readonly #unlearning: Unlearning
  #closer: Promise<void> | undefined

  constructor(modules: PublisherModules) {
    this.#modules = modules
    this.#unlearning = new Unlearning(modules)
  }

  start(): void {
    const { state, log } = this.#modules
    this.#closer = this.#closerLoop().catch((err: unknown) => {
      if (state.stopping) return
      log.error({ err }, 'round closer failed')
    })
  }

  /** Waits for the closer loop, which ends at its next check once the state is stopping. */
  async stop(): Promise<void> {
    await this.#closer
    this.#closer = undefined
  }

  async #closerLoop(): Promise<void> {
    const { state, log } = this.#modules
    while (!state.stopping) {
      try {
        await this.#closeStep()
      } catch (err) {
        log.error({ err, code: errorCode(err) }, 'closing the round failed; retrying')
        await state.waitForChange(FETCH_RETRY_MS * 4)
      }
      if (state.openRound() === undefined && state.done) return
      await state.waitForChange(ROUND_POLL_MS)
    }
  }

  async #closeStep(): Promise<void> {
    const { state, fetcher, log } = this.#modules
    const round = state.openRound()
    if (round === undefined) return
    const phase = phaseOfRound(state.plan, round)
    const base = state.checkpointAt(phase, round - 1)
    if (base === undefined) {
      if (round - 1 === genesisRound(state.plan, phase)) await this.#createGenesis(phase, round - 1)
      return
    }
    let close = (await state.store.rounds.get(closeKey(round))) as CloseRecord | undefined
    // Under a rollback charter a revocation of items the lineage used closes the round as a rollback.
    const rollback =
      close === undefined
        ? this.#unlearning.closeFor(round, phase, base, state.contributionsFor(round))
        : undefined
    if (rollback !== undefined) {
      close = rollback
      await state.store.rounds.put(closeKey(round), close)
      log.info({ round, phase, contributions: [], reason: 'rollback' }, 'round closing')
      state.events.emit('roundClosing', { round, phase, contributions: 0, reason: 'rollback' })
    }
    if (close === undefined) {
      const rounds = state.charter.rounds
      const decision = closeDecision({
        candidates: state.contributionsFor(round),
        base: base.id,
        hasPayload: (delta) => state.hasPayload(delta),
        quorum: rounds.quorum,
        deadlineSeconds: rounds.deadlineSeconds,
        elapsedSeconds: (Date.now() - Date.parse(base.adoptedAt)) / 1000,
      })
      for (const c of decision.fetch) void fetcher.ensurePayload(c.delta, [c.contributor])
      if (decision.close === undefined) return
      const exclusion = this.#exclusionSince(base, [
        ...lineageManifestsOf(state, base),
        ...decision.close.contributions.flatMap(
          (id) => state.contribution(round, id)?.predicate.manifests ?? [],
        ),
      ])
      close = {
        round,
        phase,
        base: base.id,
        contributions: decision.close.contributions,
        excludedItems: exclusion.items,
        revocations: exclusion.revocations,
        expiredManifests: exclusion.expiredManifests,
        closedAt: new Date().toISOString(),
      }
      // Frozen before aggregating: a crash from here on re-aggregates exactly this set.
      await state.store.rounds.put(closeKey(round), close)
      log.info(
        { round, phase, contributions: close.contributions, reason: decision.close.reason },
        'round closing',
      )
      state.events.emit('roundClosing', {
        round,
        phase,
        contributions: close.contributions.length,
        reason: decision.close.reason,
      })
      await crashPoint('after-close-frozen', round)
    }
    if (close.rollback !== undefined) await this.#unlearning.publish(close)
    else await this.#aggregateAndPublish(close, base)
  }

  /**
   * What this checkpoint records beyond its chain: applied revocations and their items, and the
   * lineage's manifests whose consent ended. Each list is capped at what a details document
   * holds; anything beyond waits for the next checkpoint (it is still "not yet recorded" then).
   */
  #exclusionSince(
    base: CheckpointRecord,
    lineageManifests: readonly string[],
  ): { items: string[]; revocations: string[]; expiredManifests: string[] } {
    const { state, consent } = this.#modules
    const since = consent.exclusionsSince(state.chainExclusions(base), lineageManifests, Date.now())
    return {
      revocations: since.revocations.slice(0, PROVENANCE_MAX_LIST),
      expiredManifests: since.expiredManifests.slice(0, PROVENANCE_MAX_LIST),
      items: since.items.slice(0, PROVENANCE_MAX_LIST),
    }
  }

  async #createGenesis(phase: Phase, round: number): Promise<void> {
    const { state, trainers, consent, log } = this.#modules
    let components: ProvenancePredicate['components'] = []
    if (phase === 'unet') {
      const ae = state.autoencoderCheckpoint()
      if (ae === undefined) return
      components = [{ role: 'autoencoder', checkpoint: ae.files.model, provenance: ae.id }]
    }
    const trainer = await trainers.forPhase(phase)
    const weights = await trainer.getWeights()
    const files = encodeCheckpointFiles(weights, zerosLike(weights))
    // A genesis records every revocation known when the phase starts (it has no lineage of its own).
    const exclusion = consent.exclusionsSince(
      { revocations: new Set(), expiredManifests: new Set(), items: new Set() },
      [],
      Date.now(),
    )
    const exclusions = summarizeExclusions({
      revocations: exclusion.revocations.slice(0, PROVENANCE_MAX_LIST),
      expiredManifests: [],
      items: exclusion.items.slice(0, PROVENANCE_MAX_LIST),
    })
    const predicate: ProvenancePredicate = {
      coop: state.coopId,
      round,
      phase,
      parent: null,
      contributions: [],
      manifests: [],
      exclusions: exclusions.summary,
      components,
      ...checkpointTerms(consent, []),
    }
    await this.#signAndAdopt(predicate, files, exclusions)
    log.info({ phase, round }, 'genesis checkpoint published')
  }

  async #aggregateAndPublish(close: CloseRecord, base: CheckpointRecord): Promise<void> {
    const { state, fetcher, consent, log } = this.#modules
    const records = close.contributions.map((id) => {
      const record = state.contribution(close.round, id)
      if (record === undefined)
        throw new RoundError(
          'MISSING_CONTRIBUTION',
          `contribution ${id} of the close set is not in the store`,
        )
      return record
    })
    const payloads: ContributionPayload[] = []
    for (const r of records)
      payloads.push({
        payloadDigest: r.delta,
        samples: r.predicate.samples,
        payload: await fetcher.requireBlob(r.delta, [r.contributor]),
      })
    const parentWeights = decodeTensors(await fetcher.requireBlob(base.files.model, []))
    const parentMomentum = decodeTensors(await fetcher.requireBlob(base.files.momentum, []))
    const started = performance.now()
    const computed = computeCheckpoint(parentWeights, parentMomentum, payloads, outerOptimizer(state.charter))
    const manifests = [...new Set(records.flatMap((r) => r.predicate.manifests))].sort(compareStrings)
    // The license names every manifest's signed terms: fetch any this node lacks from its custodian.
    for (const r of records)
      for (const id of r.predicate.manifests)
        if (consent.manifest(id) === undefined) await fetcher.fetchManifest(id, r.contributor)
    const lineageManifests = [...new Set([...lineageManifestsOf(state, base), ...manifests])]
    const exclusions = summarizeExclusions({
      revocations: close.revocations,
      expiredManifests: close.expiredManifests ?? [],
      items: close.excludedItems,
    })
    const predicate: ProvenancePredicate = {
      coop: state.coopId,
      round: close.round,
      phase: close.phase,
      parent: { checkpoint: base.files.model, provenance: base.id },
      contributions: records.map((r) => ({
        statement: r.id,
        contributor: r.contributor,
        delta: r.delta,
        manifests: [...r.predicate.manifests].sort(compareStrings),
      })),
      manifests,
      exclusions: exclusions.summary,
      components: base.predicate.components,
      ...checkpointTerms(consent, lineageManifests),
    }
    const record = await this.#signAndAdopt(predicate, computed, exclusions)
    const aggregateMs = Math.round(performance.now() - started)
    log.info(
      {
        round: close.round,
        phase: close.phase,
        contributions: records.length,
        checkpoint: record.id,
        aggregateMs,
      },
      'round closed',
    )
    state.events.emit('roundClosed', {
      round: close.round,
      phase: close.phase,
      checkpoint: record.id,
      contributions: records.length,
      aggregateMs,
    })
    void this.#evalAfterClose(record, computed.weights)
  }

  async #evalAfterClose(record: CheckpointRecord, weights: NamedTensor[]): Promise<void> {
    const { state, trainers, log } = this.#modules
    const trainer = trainers.loaded(record.phase)
    if (trainer === undefined || state.stopping) return
    try {
      await trainer.setWeights(weights)
      const evalLoss = await trainer.evalLoss()
      state.events.emit('evalLoss', { round: record.round, phase: record.phase, evalLoss })
      log.info({ round: record.round, phase: record.phase, evalLoss }, 'eval loss')
    } catch (err) {
      log.warn({ err }, 'eval loss failed')
    }
  }

  async #signAndAdopt(
    predicate: ProvenancePredicate,
    files: { modelBytes: Uint8Array; momentumBytes: Uint8Array; modelDigest: string; momentumDigest: string },
    exclusions: ReturnType<typeof summarizeExclusions>,
  ): Promise<CheckpointRecord> {
    const { state, gossip, privateKey } = this.#modules
    // Stored before the announcement: verifiers fetch the details by the digest the summary names.
    if (exclusions.bytes !== undefined) await state.store.putBlob(exclusions.bytes)
    const config = state.configBytes(predicate.phase, predicate.round, predicate.components)
    const envelope = createProvenance(
      {
        ...predicate,
        files: {
          [CHECKPOINT_FILES.model]: files.modelDigest,
          [CHECKPOINT_FILES.momentum]: files.momentumDigest,
          [CHECKPOINT_FILES.config]: sha256Digest(config),
        },
      },
      [privateKey],
    )
    const verified = verifyProvenance(envelope, {
      publishers: state.charter.publishers,
      threshold: state.charter.threshold,
      coopId: state.coopId,
    })
    // Announce first: peers recompute from the payloads (which we already hold), so they need
    // nothing written here. A crash before the adoption below re-aggregates the frozen set into
    // the same bytes (deterministic statement and Ed25519 signature), hence the same checkpoint id.
    await gossip.publishCheckpoint(envelope)
    return await state.adopt(
      verified,
      envelope,
      { model: files.modelBytes, momentum: files.momentumBytes, config },
      'published',
      exclusions.details,
    )
  }
}
