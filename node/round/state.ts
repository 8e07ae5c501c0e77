// The round engine's shared state: what this node adopted and accepted, loaded from the store at
// start, and the only code that writes it back. Every other component reads it (validate.ts
// through a read-only view) and changes it only through the commit points below:
//   persistContribution  one atomic batch: the contribution record, the peer's count, and extras
//                        (this node's own round record and top-k residual pointer)
//   adopt                checkpoint files and blobs first, then the record (the commit point),
//                        then checkpoints/latest.json
// Components wait for changes with waitForChange() and announce them with changed().
import type { CoopCharter } from '../../protocol/charter.ts'
import type { VerifiedContribution } from '../../protocol/contribution.ts'
import { envelopeBytes, type DsseEnvelope } from '../../protocol/dsse.ts'
import { canonicalBytes } from '../../protocol/jcs.ts'
import { type ExclusionDetails, NO_EXCLUSIONS } from '../../protocol/exclusions.ts'
import type { ProvenancePredicate, VerifiedProvenance } from '../../protocol/provenance.ts'
import type { Logger } from 'pino'
import type { BatchPut, CoopStore } from '../store/store.ts'
import { RoundError } from './errors.ts'
import { RoundEvents } from './events.ts'
import { ancestors } from './lineage.ts'
import {
  CHECKPOINT_FILES,
  checkpointDir,
  writeCheckpointDir,
  writeLatestPointers,
  type CheckpointPointer,
} from './layout.ts'
import { RoundEvidence } from './evidence.ts'
import {
  checkpointIdKey,
  checkpointKey,
  contributionKey,
  peerKey,
  type CheckpointRecord,
  type ContributionRecord,
  type PeerRecord,
  type Verification,
} from './records.ts'
import { lastRoundOf, phaseOfRound, roundPlan, type Phase, type RoundPlan } from './schedule.ts'

/** What a chain of checkpoints recorded as excluded. */
export interface ChainExclusions {
  revocations: Set<string>
  expiredManifests: Set<string>
  items: Set<string>
}

export const compareStrings = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0)

/** The exact signed statement bytes of an envelope: their digest is the statement's id. */
export function statementBytes(envelope: DsseEnvelope): Uint8Array {
  return new Uint8Array(Buffer.from(envelope.payload, 'base64'))
}

/** The model, momentum and config digests a provenance signs (MISSING_FILE when one is absent). */
export function signedFileDigests(verified: VerifiedProvenance): {
  model: string
  momentum: string
  config: string
} {
  const model = verified.files.get(CHECKPOINT_FILES.model)
  const momentum = verified.files.get(CHECKPOINT_FILES.momentum)
  const config = verified.files.get(CHECKPOINT_FILES.config)
  if (model === undefined || momentum === undefined || config === undefined)
    throw new RoundError('MISSING_FILE', 'provenance does not list model, momentum and config files')
  return { model, momentum, config }
}

export interface RoundStateOptions {
  charter: CoopCharter
  coopId: string
  /** The signed charter (DSSE envelope), copied into every checkpoint directory. */
  charterEnvelope: DsseEnvelope
  /** This node's PeerId. */
  peerId: string
  /** The last global round this node runs for (default: the charter's last round). */
  untilRound?: number
}

export class RoundState {
  readonly charter: CoopCharter
  readonly coopId: string
  readonly peerId: string
  readonly plan: RoundPlan
  readonly untilRound: number
  readonly events: RoundEvents
  readonly store: CoopStore
  /** Refused payloads and equivocation evidence (durable). */
  readonly evidence: RoundEvidence
  /** Set once the engine is stopping: loops and retries end at their next check. */
  stopping = false
  /** Set once every round up to untilRound has an adopted checkpoint. */
  done = false
  /**
   * Set once this node knows where the cooperative is: it heard a checkpoint announcement since
   * it started (publishers re-announce theirs every few seconds), or it is the publisher. Until
   * then a restarted node cannot tell whether its open round is still open.
   */
  tipKnown = false

  readonly #charterEnvelope: DsseEnvelope
  readonly #log: Logger
  /** Adopted checkpoints by phase and round, and by id. */
  readonly #checkpoints = new Map<string, CheckpointRecord>()
  readonly #checkpointsById = new Map<string, CheckpointRecord>()
  /** Accepted contributions per round, by statement digest. */
  readonly #contributions = new Map<number, Map<string, ContributionRecord>>()
  readonly #contributionsById = new Map<string, ContributionRecord>()
  /** Payloads (by delta digest) known to be in the store. */
  readonly #payloadsStored = new Set<string>()
  /** Payloads that passed admission (decoded, fit the model, above the floor), with their RMS. */
  readonly #admitted = new Map<string, number>()
  /** Chains being verified right now, by `<phase>/<round>` of their links (a count: chains may overlap). */
  readonly #verifying = new Map<string, number>()
  readonly #waiters = new Set<() => void>()

  constructor(options: RoundStateOptions, modules: { store: CoopStore; log: Logger }) {
    this.charter = options.charter
    this.coopId = options.coopId
    this.peerId = options.peerId
    this.plan = roundPlan(options.charter)
    this.untilRound = Math.min(options.untilRound ?? this.plan.total, this.plan.total)
    this.#charterEnvelope = options.charterEnvelope
    this.store = modules.store
    this.evidence = new RoundEvidence(modules.store)
    this.#log = modules.log
    this.events = new RoundEvents((err, name) =>
      this.#log.warn({ err, event: name }, 'event listener failed'),
    )
  }

  async load(): Promise<void> {
    for (const [key, value] of await this.store.checkpoints.entries()) {
      if (key.startsWith('id/')) continue
      this.#remember(value as CheckpointRecord)
    }
    for (const [, value] of await this.store.contributions.entries()) {
      const record = value as ContributionRecord
      this.#rememberContribution(record)
      if (await this.store.hasBlob(record.delta)) this.#payloadsStored.add(record.delta)
    }
    await this.evidence.load()
    const latest = this.latestCheckpoint()
    this.#log.info(
      {
        checkpoints: this.#checkpoints.size,
        contributions: [...this.#contributions.values()].reduce((n, m) => n + m.size, 0),
        round: latest?.round ?? null,
      },
      'round state loaded',
    )
  }

  // ---------------------------------------------------------------- queries

  checkpointAt(phase: Phase, round: number): CheckpointRecord | undefined {
    return this.#checkpoints.get(checkpointKey(phase, round))
  }

  checkpointById(id: string): CheckpointRecord | undefined {
    return this.#checkpointsById.get(id)
  }

  /** The adopted checkpoint with the highest round (U-Net over autoencoder on a tie). */
  latestCheckpoint(phase?: Phase): CheckpointRecord | undefined {
    let best: CheckpointRecord | undefined
    for (const record of this.#checkpoints.values()) {
      if (phase !== undefined && record.phase !== phase) continue
      if (
        best === undefined ||
        record.round > best.round ||
        (record.round === best.round && record.phase === 'unet')
      )
        best = record
    }
    return best
  }

  /** Every adopted checkpoint, by round then phase. */
  checkpoints(): CheckpointRecord[] {
    return [...this.#checkpoints.values()].sort(
      (a, b) => a.round - b.round || compareStrings(a.phase, b.phase),
    )
  }

  /** The first round (1-based) whose checkpoint is not adopted yet, or undefined when all are. */
  openRound(): number | undefined {
    for (let round = 1; round <= this.untilRound; round++) {
      if (this.checkpointAt(phaseOfRound(this.plan, round), round) === undefined) return round
    }
    return undefined
  }

  /** The checkpoint the U-Net phase depends on: the imported component, or the last autoencoder round's. */
  autoencoderCheckpoint(): CheckpointRecord | undefined {
    // A component autoencoder is imported into the store as round 0 of its phase.
    if (this.plan.autoencoderRounds === 0) return this.checkpointAt('autoencoder', 0)
    return this.checkpointAt('autoencoder', lastRoundOf(this.plan, 'autoencoder'))
  }

  contribution(round: number, id: string): ContributionRecord | undefined {
    return this.#contributions.get(round)?.get(id)
  }

  /** The envelope blob of an adopted checkpoint or an accepted contribution, by its statement digest. */
  async envelopeOf(statementDigest: string): Promise<Uint8Array | undefined> {
    const digest =
      this.#checkpointsById.get(statementDigest)?.envelope ??
      this.#contributionsById.get(statementDigest)?.envelope
    return digest === undefined ? undefined : await this.store.getBlob(digest)
  }

  /** Accepted contributions of a round, sorted by id. */
  contributionsFor(round: number): ContributionRecord[] {
    return [...(this.#contributions.get(round)?.values() ?? [])].sort((a, b) => compareStrings(a.id, b.id))
  }

  hasPayload(digest: string): boolean {
    return this.#payloadsStored.has(digest)
  }

  payloadStored(digest: string): void {
    this.#payloadsStored.add(digest)
  }

  /** Where a payload stands: admitted (counts toward quorum), refused (never counts), or pending. */
  admission(delta: string): 'admitted' | 'refused' | 'pending' {
    if (this.evidence.refusedPayload(delta) !== undefined) return 'refused'
    return this.#admitted.has(delta) ? 'admitted' : 'pending'
  }

  /** A payload passed admission (in memory: after a restart it is checked again from the store). */
  payloadAdmitted(delta: string, rms: number): void {
    this.#admitted.set(delta, rms)
  }

  /** Marks checkpoints as being verified (the verifier calls endVerifying with the same list when done). */
  beginVerifying(links: readonly { phase: Phase; round: number }[]): void {
    for (const l of links)
      this.#verifying.set(`${l.phase}/${l.round}`, (this.#verifying.get(`${l.phase}/${l.round}`) ?? 0) + 1)
  }

  endVerifying(links: readonly { phase: Phase; round: number }[]): void {
    for (const l of links) {
      const key = `${l.phase}/${l.round}`
      const left = (this.#verifying.get(key) ?? 1) - 1
      if (left <= 0) this.#verifying.delete(key)
      else this.#verifying.set(key, left)
    }
    this.changed()
  }

  /**
   * Whether a signed checkpoint for `round` of `phase` or a later round is being verified: if it
   * verifies, `round` is closed. A node catching up learns this before it has recomputed the
   * chain, so it neither starts nor publishes work for a round that may be closed; a checkpoint
   * that fails verification stops counting, so an unverifiable one cannot stop training.
   */
  verifying(phase: Phase, round: number): boolean {
    for (const key of this.#verifying.keys()) {
      const [p, r] = key.split('/') as [Phase, string]
      if (p === phase ? Number(r) >= round : p === 'unet' && phase === 'autoencoder') return true
    }
    return false
  }

  /**
   * Whether this node may publish or re-announce its contribution to `round` now: it knows the
   * cooperative's tip, no checkpoint at or past the round is being verified, and none for the
   * round is adopted. A contribution to a closed round is never sent.
   */
  mayContribute(phase: Phase, round: number): boolean {
    return this.tipKnown && !this.verifying(phase, round) && this.checkpointAt(phase, round) === undefined
  }

  /**
   * `start` and its adopted ancestors, newest first, following `parent.provenance`; stops at the
   * first parent this node does not hold, and never loops.
   */
  ancestors(start: CheckpointRecord): Generator<CheckpointRecord> {
    return ancestors(start, (record) => {
      const parent: ProvenancePredicate['parent'] = record.predicate.parent
      return parent === null ? undefined : this.#checkpointsById.get(parent.provenance)
    })
  }

  /** What `base` and its ancestors recorded as excluded: revocations, expired manifests, revoked items. */
  chainExclusions(base: CheckpointRecord): ChainExclusions {
    const out: ChainExclusions = { revocations: new Set(), expiredManifests: new Set(), items: new Set() }
    for (const checkpoint of this.ancestors(base)) {
      const details = checkpoint.exclusions ?? NO_EXCLUSIONS
      for (const r of details.revocations) out.revocations.add(r)
      for (const m of details.expiredManifests) out.expiredManifests.add(m)
      for (const i of details.items) out.items.add(i)
    }
    return out
  }

  /** config.json: canonical JSON, so every peer writes the same bytes for the same checkpoint. */
  configBytes(phase: Phase, round: number, components: ProvenancePredicate['components']): Uint8Array {
    return canonicalBytes({ coop: this.coopId, phase, round, model: this.charter.model, components })
  }

  // ---------------------------------------------------------------- commit points

  /** Stores a verified contribution: envelope and statement blobs, then one atomic batch with `extra`. */
  async persistContribution(
    verified: VerifiedContribution,
    envelope: DsseEnvelope,
    extra: BatchPut[] = [],
  ): Promise<ContributionRecord> {
    const envelopeDigest = await this.store.putBlob(envelopeBytes(envelope))
    // The statement bytes are a blob too: a peer that missed the gossip fetches them by the
    // digest a provenance lists, and the publisher's signature over that list vouches for them.
    await this.store.putBlob(statementBytes(envelope))
    const record: ContributionRecord = {
      id: verified.digest,
      contributor: verified.contributor,
      delta: verified.delta,
      predicate: verified.predicate,
      envelope: envelopeDigest,
      acceptedAt: new Date().toISOString(),
    }
    const peer = ((await this.store.rounds.get(peerKey(verified.contributor))) as PeerRecord | undefined) ?? {
      contributions: 0,
    }
    const peerRecord: PeerRecord = {
      peerId: verified.contributor,
      lastSeen: record.acceptedAt,
      contributions: peer.contributions + 1,
    }
    await this.store.batch([
      {
        type: 'put',
        table: 'contributions',
        key: contributionKey(verified.predicate.round, verified.digest),
        value: record,
      },
      { type: 'put', table: 'rounds', key: peerKey(verified.contributor), value: peerRecord },
      ...extra,
    ])
    this.#rememberContribution(record)
    return record
  }

  /**
   * Adopts a verified checkpoint: its directory and blobs, then the record, then latest.json.
   * `exclusions` are the details its provenance summarises, already checked against it.
   */
  async adopt(
    verified: VerifiedProvenance,
    envelope: DsseEnvelope,
    files: {
      model: Uint8Array
      momentum: Uint8Array
      config: Uint8Array
      /** Further signed files by name (a rollback checkpoint's receipt), stored as blobs too. */
      extra?: Record<string, Uint8Array>
    },
    verification: Verification,
    exclusions: ExclusionDetails = NO_EXCLUSIONS,
  ): Promise<CheckpointRecord> {
    const p = verified.predicate
    const provenanceBytes = envelopeBytes(envelope)
    const exclusionBytes = p.exclusions.details === null ? undefined : canonicalBytes(exclusions)
    const extra = files.extra ?? {}
    // Independent durable writes, issued together so their fsyncs overlap.
    const [model, momentum, config, envelopeDigest, , dir] = await Promise.all([
      this.store.putBlob(files.model),
      this.store.putBlob(files.momentum),
      this.store.putBlob(files.config),
      this.store.putBlob(provenanceBytes),
      this.store.putBlob(statementBytes(envelope)),
      writeCheckpointDir(this.store.dir, p.phase, p.round, {
        ...extra,
        [CHECKPOINT_FILES.model]: files.model,
        [CHECKPOINT_FILES.momentum]: files.momentum,
        [CHECKPOINT_FILES.config]: files.config,
        [CHECKPOINT_FILES.provenance]: provenanceBytes,
        [CHECKPOINT_FILES.charter]: canonicalBytes(this.#charterEnvelope),
        ...(exclusionBytes === undefined ? {} : { [CHECKPOINT_FILES.exclusions]: exclusionBytes }),
      }),
      // Served by digest, so peers that adopt this checkpoint can fetch the details it summarises.
      exclusionBytes === undefined ? undefined : this.store.putBlob(exclusionBytes),
      ...Object.values(extra).map((bytes) => this.store.putBlob(bytes)),
    ])
    return await this.commitCheckpoint({
      id: verified.digest,
      phase: p.phase,
      round: p.round,
      files: { model, momentum, config },
      envelope: envelopeDigest,
      predicate: p,
      signers: verified.signers,
      verification,
      adoptedAt: new Date().toISOString(),
      dir,
      exclusions,
    })
  }

  /** The commit point of an adoption: the record, written after the files and blobs it names. */
  async commitCheckpoint(record: CheckpointRecord): Promise<CheckpointRecord> {
    await this.store.batch([
      { type: 'put', table: 'checkpoints', key: checkpointKey(record.phase, record.round), value: record },
      {
        type: 'put',
        table: 'checkpoints',
        key: checkpointIdKey(record.id),
        value: { phase: record.phase, round: record.round },
      },
    ])
    this.#remember(record)
    await this.#writeLatest()
    this.events.emit('checkpointAdopted', {
      round: record.round,
      phase: record.phase,
      checkpoint: record.id,
      contributions: record.predicate.contributions.length,
      verification: record.verification,
    })
    this.changed()
    return record
  }

  async #writeLatest(): Promise<void> {
    const pointers: Partial<Record<Phase, CheckpointPointer>> = {}
    for (const phase of ['autoencoder', 'unet'] as const) {
      const latest = this.latestCheckpoint(phase)
      if (latest !== undefined)
        pointers[phase] = {
          id: latest.id,
          round: latest.round,
          dir: checkpointDir(this.store.dir, phase, latest.round),
        }
    }
    await writeLatestPointers(this.store.dir, pointers)
  }

  #remember(record: CheckpointRecord): void {
    this.#checkpoints.set(checkpointKey(record.phase, record.round), record)
    this.#checkpointsById.set(record.id, record)
  }

  #rememberContribution(record: ContributionRecord): void {
    let round = this.#contributions.get(record.predicate.round)
    if (round === undefined) {
      round = new Map()
      this.#contributions.set(record.predicate.round, round)
    }
    round.set(record.id, record)
    this.#contributionsById.set(record.id, record)
  }

  // ---------------------------------------------------------------- wake-ups

  /** Wakes every waitForChange() caller: something they may be waiting for happened. */
  changed(): void {
    const waiters = [...this.#waiters]
    this.#waiters.clear()
    for (const wake of waiters) wake()
  }

  /** Waits for any state change (or `ms`, whichever first). */
  waitForChange(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#waiters.delete(done)
        resolve()
      }, ms)
      const done = (): void => {
        clearTimeout(timer)
        resolve()
      }
      this.#waiters.add(done)
    })
  }
}
