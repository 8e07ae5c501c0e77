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
import { layoutOf, payloadMaxBytes } from '../../protocol/compression.ts'
import { isProtocolError } from '../../protocol/errors.ts'
import { createProvenance, verifyProvenance, type ProvenancePredicate } from '../../protocol/provenance.ts'
import type { Logger } from 'pino'
import type { ConsentBook } from '../consent/book.ts'
import { PENALTY_BAD_PAYLOAD } from '../constants.ts'
import type { CoopHost } from '../p2p/host.ts'
import type { PayloadAdmission } from './admission.ts'
import { FETCH_RETRY_MS, REFUSAL_REASON_MAX_CHARS, ROUND_POLL_MS } from './constants.ts'
import { RoundError } from './errors.ts'
import { crashPoint } from './faults.ts'
import type { Fetcher } from './fetcher.ts'
import type { RoundGossip } from './gossip.ts'
import { CHECKPOINT_FILES } from './layout.ts'
import {
  computeCheckpoint,
  decodeContributionPayload,
  encodeCheckpointFiles,
  outerOptimizer,
  type ContributionPayload,
  type OuterOptimizer,
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
  /** Where a payload (by delta digest) stands: only `admitted` ones count (admission.ts). */
  admission(delta: string): 'admitted' | 'refused' | 'pending'
  quorum: number
  deadlineSeconds: number
  /** Seconds since this node adopted the base. */
  elapsedSeconds: number
}

export interface CloseDecision<T extends CloseCandidate> {
  /** Candidates from the base whose payload is not admitted or refused yet: admit them. */
  admit: T[]
  /** Set when the round closes now: why, and the frozen set of statement ids, sorted. */
  close?: { reason: 'quorum' | 'deadline'; contributions: string[] }
}

/**
 * Whether the open round closes now. A contribution is ready when it was trained from the base
 * and its payload is admitted (fetched, decoded, fits the model, above the trivial-delta floor);
 * a refused one never counts. The quorum counts distinct contributors (one contribution per peer
 * and round is a validation rule; counting identities keeps that true here too). The round
 * closes at `quorum` ready ones, or at the deadline with at least one (an empty round would
 * publish nothing).
 */
export function closeDecision<T extends CloseCandidate>(input: CloseInput<T>): CloseDecision<T> {
  const fromBase = [...input.candidates]
    .filter((c) => c.predicate.baseCheckpoint === input.base)
    .sort((a, b) => compareStrings(a.id, b.id))
  const admit = fromBase.filter((c) => input.admission(c.delta) === 'pending')
  const contributors = new Set<string>()
  const ready: T[] = []
  for (const c of fromBase) {
    if (input.admission(c.delta) !== 'admitted' || contributors.has(c.contributor)) continue
    contributors.add(c.contributor)
    ready.push(c)
  }
  const deadlinePassed = input.elapsedSeconds >= input.deadlineSeconds
  if (ready.length < input.quorum && !(deadlinePassed && ready.length > 0)) return { admit }
  return {
    admit,
    close: {
      reason: ready.length >= input.quorum ? 'quorum' : 'deadline',
      contributions: ready.map((c) => c.id),
    },
  }
}

export interface PublisherModules {
  state: RoundState
  fetcher: Fetcher
  admission: PayloadAdmission
  host: Pick<CoopHost, 'penalize'>
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
    // The publisher makes the tip: it never waits to hear where the cooperative is.
    state.tipKnown = true
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
    const { state, admission, log } = this.#modules
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
        admission: (delta) => state.admission(delta),
        quorum: rounds.quorum,
        deadlineSeconds: rounds.deadlineSeconds,
        elapsedSeconds: (Date.now() - Date.parse(base.adoptedAt)) / 1000,
      })
      for (const c of decision.admit) void admission.admit(c)
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

  async #aggregateAndPublish(frozen: CloseRecord, base: CheckpointRecord): Promise<void> {
    const { state, fetcher, consent, log } = this.#modules
    const parentWeights = decodeTensors(await fetcher.requireBlob(base.files.model, []))
    const parentMomentum = decodeTensors(await fetcher.requireBlob(base.files.momentum, []))
    const optimizer = outerOptimizer(state.charter, frozen.phase, frozen.round)
    const { close, payloads, records } = await this.#aggregatable(frozen, parentWeights, optimizer)
    if (close === undefined) return
    // Another publisher of the charter closed this round first and we verified and adopted its
    // checkpoint: signing a second one would be equivocating.
    if (state.checkpointAt(close.phase, close.round) !== undefined) return
    const started = performance.now()
    const computed = computeCheckpoint(parentWeights, parentMomentum, payloads, optimizer)
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

  /**
   * The frozen set, minus any member that cannot be aggregated (its record or payload is gone,
   * or its payload does not decode against the parent's layout and the charter's codec). Every
   * member is checked before signing, so a failure here means no checkpoint was signed with it:
   * the member is dropped, why is written into the close record (durably, before aggregating the
   * rest) and the round closes with the others. If none is left the round reopens. The
   * cooperative never halts on one input.
   */
  async #aggregatable(
    frozen: CloseRecord,
    parentWeights: NamedTensor[],
    optimizer: OuterOptimizer,
  ): Promise<{ close?: CloseRecord; payloads: ContributionPayload[]; records: ContributionRecord[] }> {
    const { state, fetcher, host, log } = this.#modules
    const layout = layoutOf(parentWeights)
    const maxBytes = payloadMaxBytes(layout, optimizer.codec)
    const records: ContributionRecord[] = []
    const payloads: ContributionPayload[] = []
    const dropped: NonNullable<CloseRecord['dropped']> = []
    for (const id of frozen.contributions) {
      const record = state.contribution(frozen.round, id)
      if (record === undefined) {
        dropped.push({ statement: id, code: 'MISSING_CONTRIBUTION', reason: 'not in the store' })
        continue
      }
      let payload: Uint8Array
      try {
        payload = await fetcher.requireBlob(record.delta, [record.contributor], maxBytes)
        decodeContributionPayload(payload, layout, optimizer.codec)
      } catch (err) {
        const code = errorCode(err) ?? 'INTERNAL'
        const reason = (err instanceof Error ? err.message : String(err)).slice(0, REFUSAL_REASON_MAX_CHARS)
        if (isProtocolError(err)) {
          // The contributor's payload is at fault: never count it again, and charge its signer.
          await state.evidence.refuse({
            delta: record.delta,
            round: frozen.round,
            contribution: id,
            contributor: record.contributor,
            code: 'BAD_PAYLOAD',
            reason,
            refusedAt: new Date().toISOString(),
          })
          if (record.contributor !== state.peerId)
            host.penalize(record.contributor, 'BAD_PAYLOAD', PENALTY_BAD_PAYLOAD)
        } else if (!(err instanceof RoundError)) throw err
        dropped.push({ statement: id, code, reason })
        continue
      }
      records.push(record)
      payloads.push({ payloadDigest: record.delta, samples: record.predicate.samples, payload })
    }
    if (dropped.length === 0) return { close: frozen, payloads, records }
    for (const d of dropped) {
      log.warn({ round: frozen.round, contribution: d.statement, code: d.code }, 'close set member dropped')
      state.events.emit('closeMemberDropped', {
        round: frozen.round,
        phase: frozen.phase,
        contribution: d.statement,
        code: d.code,
      })
    }
    const close: CloseRecord = {
      ...frozen,
      contributions: records.map((r) => r.id),
      dropped: [...(frozen.dropped ?? []), ...dropped],
    }
    if (close.contributions.length === 0) {
      // Nothing was signed for this set: the round reopens and closes with later contributions.
      await state.store.rounds.del(closeKey(frozen.round))
      log.warn({ round: frozen.round, dropped: dropped.length }, 'close set emptied; round reopened')
      return { payloads: [], records: [] }
    }
    // Written before aggregating, like the first freeze: a crash re-aggregates exactly this set.
    await state.store.rounds.put(closeKey(frozen.round), close)
    return { close, payloads, records }
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
