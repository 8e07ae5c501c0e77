// The DiLoCo round engine: a component built from (options, modules) with start/stop.
//
// One round r (phase p) runs like this on every peer:
//   1. the base is the adopted checkpoint of round r-1 in phase p (a genesis checkpoint for the
//      first round of a phase, signed by the publisher);
//   2. a trainer runs H local Adam steps from the base on its consented images, computes the
//      pseudo-gradient (base - local), compresses it, stores the payload blob, signs a
//      ContributionStatement and gossips it (payload bytes move by digest over the blob protocol);
//   3. the publisher freezes the set of accepted contributions at quorum or deadline (persisted
//      before any aggregation, so a crash re-aggregates the same set), aggregates, applies the
//      outer Nesterov step, writes and signs the checkpoint and gossips its provenance;
//   4. every other peer verifies the signature, fetches the listed payloads, recomputes the
//      checkpoint bit-exactly and adopts it only if the file digests agree.
// Everything a restart needs is in the store: accepted contributions, adopted checkpoints, this
// node's own finished contribution and the publisher's frozen close set.
import { compressDelta, type Codec } from '../../protocol/compression.ts'
import {
  createContribution,
  verifyContribution,
  type VerifiedContribution,
} from '../../protocol/contribution.ts'
import { sha256Digest } from '../../protocol/digest.ts'
import { envelopeBytes, type DsseEnvelope } from '../../protocol/dsse.ts'
import { canonicalBytes } from '../../protocol/jcs.ts'
import type { Ed25519PrivateKey } from '../../protocol/keys.ts'
import { merkleRoot } from '../../protocol/merkle.ts'
import {
  createProvenance,
  verifyProvenance,
  type ProvenancePredicate,
  type VerifiedProvenance,
} from '../../protocol/provenance.ts'
import { encodeSafetensors } from '../../protocol/safetensors.ts'
import type { CoopCharter } from '../../protocol/charter.ts'
import type { Logger } from 'pino'
import type { CoopHost } from '../p2p/host.ts'
import type { BatchPut, CoopStore } from '../store/store.ts'
import { writeSnapshot } from '../store/store.ts'
import { CONSENT_DOCUMENT_MAX_BYTES } from '../constants.ts'
import { encodeGossipMessage } from '../validation/messages.ts'
import { ignore, reject } from '../p2p/gossip-errors.ts'
import type { ChainContext } from '../validation/chain.ts'
import {
  CHECKPOINT_FILE_MAX_BYTES,
  CHECKPOINT_REANNOUNCE_MS,
  CONTRIBUTION_PAYLOAD_MAX_BYTES,
  CONTRIBUTION_REANNOUNCE_MS,
  CRASH_LOG_FLUSH_MS,
  FETCH_ATTEMPTS,
  FETCH_RETRY_MS,
  ROUND_POLL_MS,
  STATEMENT_BLOB_MAX_BYTES,
  STATUS_RECENT_LOSSES,
} from './constants.ts'
import { assertCharterComponent, type AutoencoderComponent } from './component.ts'
import type { ConsentBook } from '../consent/book.ts'
import { RoundError } from './errors.ts'
import {
  CHECKPOINT_FILES,
  checkpointDir,
  cleanCheckpointTemps,
  writeCheckpointDir,
  writeLatestPointers,
  type CheckpointPointer,
} from './layout.ts'
import {
  checkpointIdKey,
  checkpointKey,
  closeKey,
  contributionKey,
  localKey,
  peerKey,
  residualKey,
  type CheckpointRecord,
  type CloseRecord,
  type ContributionRecord,
  type LocalRoundRecord,
  type PeerRecord,
  type Verification,
} from './records.ts'
import { errorCode } from '../../protocol/coded-error.ts'
import { computeCheckpoint, encodeCheckpointFiles, type ContributionPayload } from './recompute.ts'
import { genesisRound, lastRoundOf, phaseOfRound, roundPlan, type Phase, type RoundPlan } from './schedule.ts'
import { decodeTensors, encodeTensors, pseudoGradient, zerosLike, type NamedTensor } from './tensors.ts'

/** The part of trainer/session.ts's TrainerSession the engine drives. */
export interface RoundTrainer {
  getWeights(): Promise<NamedTensor[]>
  setWeights(weights: NamedTensor[]): Promise<void>
  trainSteps(
    n: number,
    onStep?: (s: { step: number; loss: number; imgPerSec: number }) => void,
  ): Promise<{ lossMean: number; samples: number }>
  evalLoss(): Promise<number>
  excludeItems(sha256s: Iterable<string>): void
  dispose(): void
}

/** Builds a trainer for a phase; `autoencoder` is the adopted autoencoder weights for the U-Net phase. */
export type TrainerFactory = (phase: Phase, autoencoder: NamedTensor[] | undefined) => Promise<RoundTrainer>

export interface RoundEngineOptions {
  charter: CoopCharter
  coopId: string
  privateKey: Ed25519PrivateKey
  /** Close rounds and sign checkpoints (the key must be one of the charter's publishers). */
  publisher: boolean
  /** Run local training and contribute. */
  train: boolean
  /** Stop after the checkpoint of this global round is adopted (default: the charter's last round). */
  untilRound?: number
  /** Digests of the consented items the local dataset actually holds (what the trainer can see). */
  datasetItems: ReadonlySet<string>
  /** The signed charter (DSSE envelope), copied into every checkpoint directory. */
  charterEnvelope: DsseEnvelope
  /** The component autoencoder the charter pins, read from a checkpoint directory (imported at start). */
  autoencoderComponent?: AutoencoderComponent
}

export interface RoundEngineModules {
  store: CoopStore
  host: CoopHost
  consent: ConsentBook
  trainers: TrainerFactory
  log: Logger
}

interface PendingCheckpoint {
  verified: VerifiedProvenance
  envelope: DsseEnvelope
  from: string
}

type Waiter = () => void

const compareStrings = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0)

export class RoundEngine {
  readonly #options: RoundEngineOptions
  readonly #store: CoopStore
  readonly #host: CoopHost
  readonly #consent: ConsentBook
  readonly #trainers: TrainerFactory
  readonly #log: Logger
  readonly #plan: RoundPlan
  readonly #peerId: string
  readonly #untilRound: number

  /** Adopted checkpoints by phase and round. */
  readonly #checkpoints = new Map<string, CheckpointRecord>()
  readonly #checkpointsById = new Map<string, CheckpointRecord>()
  /** Accepted contributions per round, by statement digest. */
  readonly #contributions = new Map<number, Map<string, ContributionRecord>>()
  /** Payloads (by delta digest) known to be in the store. */
  readonly #payloadsStored = new Set<string>()
  /** Manifests being fetched from their custodian. */
  readonly #manifestFetches = new Set<string>()
  /** Contributions whose handler is storing them right now. */
  readonly #storing = new Set<string>()
  readonly #payloadFetches = new Map<string, Promise<boolean>>()
  #adoptQueue: Promise<void> = Promise.resolve()
  readonly #trainers_ = new Map<Phase, RoundTrainer>()
  readonly #waiters = new Set<Waiter>()
  readonly #recentLosses: { round: number; phase: Phase; loss: number; evalLoss?: number }[] = []
  readonly #timers: NodeJS.Timeout[] = []
  #running: Promise<void> | undefined
  #closer: Promise<void> | undefined
  #stopping = false
  #noConsentLogged = false
  #done = false
  #statusDirty = true
  #statusWriting = false

  constructor(options: RoundEngineOptions, modules: RoundEngineModules) {
    this.#options = options
    this.#store = modules.store
    this.#host = modules.host
    this.#consent = modules.consent
    this.#trainers = modules.trainers
    this.#log = modules.log
    this.#plan = roundPlan(options.charter)
    this.#peerId = modules.host.peerId
    if (options.publisher && !options.charter.publishers.includes(this.#peerId))
      throw new RoundError('NOT_A_PUBLISHER', `this node (${this.#peerId}) is not a publisher of the charter`)
    if (options.publisher && options.charter.threshold > 1)
      throw new RoundError(
        'UNSUPPORTED',
        'publishing with a signing threshold above 1 needs co-signing, which this node does not implement',
      )
    this.#untilRound = Math.min(options.untilRound ?? this.#plan.total, this.#plan.total)
  }

  get plan(): RoundPlan {
    return this.#plan
  }

  /** Resolves when the node has adopted the checkpoint of its last round (or stop() was called). */
  get finished(): Promise<void> {
    return this.#running ?? Promise.resolve()
  }

  async start(): Promise<void> {
    await cleanCheckpointTemps(this.#store.dir)
    await this.#loadState()
    if (this.#options.autoencoderComponent !== undefined)
      await this.#importComponent(this.#options.autoencoderComponent)
    if (
      this.#options.publisher &&
      this.#options.charter.phases.autoencoder.mode === 'component' &&
      this.#autoencoderComponent() === undefined &&
      this.checkpointAt('unet', genesisRound(this.#plan, 'unet')) === undefined
    )
      throw new RoundError(
        'MISSING_PARENT',
        'the charter pins a component autoencoder: start the publisher with --autoencoder <checkpoint dir>',
      )
    this.#host.onMessage('contributions', (msg) => this.#onContributionMessage(msg.data, msg.from))
    this.#host.onMessage('checkpoints', (msg) => this.#onCheckpointMessage(msg.data, msg.from))
    this.#consent.onRevocation((items) => {
      for (const trainer of this.#trainers_.values()) trainer.excludeItems(items)
      this.#log.info({ items: items.length }, 'revoked items excluded from training')
      this.#notify()
    })
    this.#timers.push(
      setInterval(
        () => void this.#reannounce(),
        Math.min(CHECKPOINT_REANNOUNCE_MS, CONTRIBUTION_REANNOUNCE_MS),
      ),
    )
    this.#timers.push(setInterval(() => void this.#writeStatus(), 1000))
    for (const t of this.#timers) t.unref()
    this.#running = this.#mainLoop().catch((err: unknown) => {
      if (this.#stopping) return
      this.#log.error({ err }, 'round engine failed')
      throw err
    })
    if (this.#options.publisher) {
      this.#closer = this.#closerLoop().catch((err: unknown) => {
        if (this.#stopping) return
        this.#log.error({ err }, 'round closer failed')
      })
    }
  }

  async stop(): Promise<void> {
    this.#stopping = true
    for (const t of this.#timers) clearInterval(t)
    this.#notify()
    await Promise.allSettled([this.#running, this.#closer, this.#adoptQueue])
    for (const trainer of this.#trainers_.values()) trainer.dispose()
    this.#trainers_.clear()
    this.#statusDirty = true
    await this.#writeStatus()
  }

  // ---------------------------------------------------------------- state

  async #loadState(): Promise<void> {
    for (const [key, value] of await this.#store.checkpoints.entries()) {
      if (key.startsWith('id/')) continue
      const record = value as CheckpointRecord
      this.#checkpoints.set(checkpointKey(record.phase, record.round), record)
      this.#checkpointsById.set(record.id, record)
    }
    for (const [, value] of await this.#store.contributions.entries()) {
      const record = value as ContributionRecord
      this.#rememberContribution(record)
      if (await this.#store.hasBlob(record.delta)) this.#payloadsStored.add(record.delta)
    }
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

  #rememberContribution(record: ContributionRecord): void {
    let round = this.#contributions.get(record.predicate.round)
    if (round === undefined) {
      round = new Map()
      this.#contributions.set(record.predicate.round, round)
    }
    round.set(record.id, record)
  }

  checkpointAt(phase: Phase, round: number): CheckpointRecord | undefined {
    return this.#checkpoints.get(checkpointKey(phase, round))
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

  /** The first round (1-based) whose checkpoint is not adopted yet, or undefined when all are. */
  openRound(): number | undefined {
    for (let round = 1; round <= this.#untilRound; round++) {
      if (this.checkpointAt(phaseOfRound(this.#plan, round), round) === undefined) return round
    }
    return undefined
  }

  contributionsFor(round: number): ContributionRecord[] {
    return [...(this.#contributions.get(round)?.values() ?? [])].sort((a, b) => compareStrings(a.id, b.id))
  }

  checkpoints(): CheckpointRecord[] {
    return [...this.#checkpoints.values()].sort(
      (a, b) => a.round - b.round || compareStrings(a.phase, b.phase),
    )
  }

  #notify(): void {
    const waiters = [...this.#waiters]
    this.#waiters.clear()
    for (const w of waiters) w()
  }

  /** Waits for any state change (or `ms`, whichever first). */
  #waitForChange(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#waiters.delete(done)
        resolve()
      }, ms)
      const done = () => {
        clearTimeout(timer)
        resolve()
      }
      this.#waiters.add(done)
    })
  }

  // ---------------------------------------------------------------- main loop

  async #mainLoop(): Promise<void> {
    let lastAnnounced: number | undefined
    while (!this.#stopping) {
      const round = this.openRound()
      if (round === undefined) {
        if (!this.#done) {
          this.#done = true
          this.#statusDirty = true
          this.#log.info(
            { rounds: this.#untilRound, checkpoint: this.latestCheckpoint()?.id },
            'all rounds done',
          )
        }
        return
      }
      const phase = phaseOfRound(this.#plan, round)
      const base = this.checkpointAt(phase, round - 1)
      if (base === undefined) {
        // Genesis is the publisher's job (closer loop); everyone else waits for it.
        await this.#waitForChange(ROUND_POLL_MS * 10)
        continue
      }
      if (lastAnnounced !== round) {
        lastAnnounced = round
        if (round === genesisRound(this.#plan, phase) + 1) this.#log.info({ phase, round }, 'phase started')
        this.#statusDirty = true
      }
      if (this.#options.train && (await this.#store.rounds.get(localKey(round))) === undefined) {
        try {
          await this.#trainRound(round, phase, base)
        } catch (err) {
          // A missing blob or a transient store/network failure must not end the node: log, back off, retry the round.
          if (this.#stopping) return
          this.#log.error({ round, phase, err, code: errorCode(err) }, 'local round failed; retrying')
          await this.#waitForChange(FETCH_RETRY_MS * 4)
        }
        continue
      }
      await this.#waitForChange(ROUND_POLL_MS * 10)
    }
  }

  async #trainerFor(phase: Phase): Promise<RoundTrainer> {
    const existing = this.#trainers_.get(phase)
    if (existing !== undefined) return existing
    let autoencoder: NamedTensor[] | undefined
    if (phase === 'unet') autoencoder = await this.#autoencoderWeights()
    // Only one phase trains at a time: free the other one's memory.
    for (const [other, trainer] of this.#trainers_) {
      trainer.dispose()
      this.#trainers_.delete(other)
    }
    const trainer = await this.#trainers(phase, autoencoder)
    trainer.excludeItems(this.#consent.revokedItems())
    this.#trainers_.set(phase, trainer)
    return trainer
  }

  /** The autoencoder the U-Net phase depends on: the last cooperative autoencoder checkpoint. */
  async #autoencoderWeights(): Promise<NamedTensor[]> {
    const record = this.#autoencoderComponent()
    if (record !== undefined) return decodeTensors(await this.#requireBlob(record.files.model, []))
    // A peer that joined during the U-Net phase never adopted the autoencoder checkpoint: the
    // adopted U-Net checkpoint names it (model digest, signed by the publisher), fetch it by that.
    const unet = this.latestCheckpoint('unet')
    const component = unet?.predicate.components.find((c) => c.role === 'autoencoder')
    if (unet === undefined || component === undefined)
      throw new RoundError('MISSING_PARENT', 'the U-Net phase needs the final autoencoder checkpoint')
    return decodeTensors(await this.#requireBlob(component.checkpoint, unet.signers))
  }

  /**
   * Stores the charter's component autoencoder as round 0 of the autoencoder phase: the model
   * blob (served to peers that fetch it by digest), its foreign provenance, and a checkpoint
   * directory. Its momentum and config are never needed (no autoencoder round follows), so the
   * record names their signed digests without holding them.
   */
  async #importComponent(component: AutoencoderComponent): Promise<void> {
    assertCharterComponent(this.#options.charter, component)
    if (this.checkpointAt('autoencoder', 0)?.id === component.verified.digest) return
    const files = this.#fileDigests(component.verified)
    const provenanceBytes = envelopeBytes(component.envelope)
    const [model, envelopeDigest, , dir] = await Promise.all([
      this.#store.putBlob(component.model),
      this.#store.putBlob(provenanceBytes),
      this.#store.putBlob(statementBytes(component.envelope)),
      writeCheckpointDir(this.#store.dir, 'autoencoder', 0, {
        [CHECKPOINT_FILES.model]: component.model,
        [CHECKPOINT_FILES.provenance]: provenanceBytes,
      }),
    ])
    const record: CheckpointRecord = {
      id: component.verified.digest,
      phase: 'autoencoder',
      round: 0,
      files: { model, momentum: files.momentum, config: files.config },
      envelope: envelopeDigest,
      predicate: component.verified.predicate,
      signers: component.verified.signers,
      verification: 'component',
      adoptedAt: new Date().toISOString(),
      dir,
    }
    await this.#store.batch([
      { type: 'put', table: 'checkpoints', key: checkpointKey('autoencoder', 0), value: record },
      {
        type: 'put',
        table: 'checkpoints',
        key: checkpointIdKey(record.id),
        value: { phase: 'autoencoder', round: 0 },
      },
    ])
    this.#checkpoints.set(checkpointKey('autoencoder', 0), record)
    this.#checkpointsById.set(record.id, record)
    await this.#writeLatest()
    this.#log.info(
      { checkpoint: record.id, model, signers: record.signers },
      'component autoencoder imported',
    )
  }

  #autoencoderComponent(): CheckpointRecord | undefined {
    if (this.#plan.autoencoderRounds === 0) {
      // A component autoencoder is imported into the store as round 0 of its phase.
      return this.checkpointAt('autoencoder', 0)
    }
    return this.checkpointAt('autoencoder', lastRoundOf(this.#plan, 'autoencoder'))
  }

  async #trainRound(round: number, phase: Phase, base: CheckpointRecord): Promise<void> {
    const roundsCfg = this.#options.charter.rounds
    if (this.#consent.localItemsInUse(this.#options.datasetItems).items.length === 0) {
      // Every local item was revoked: keep verifying and serving, but never train on nothing.
      if (!this.#noConsentLogged)
        this.#log.warn({ round, code: 'NO_CONSENT' }, 'no consented item left; not contributing')
      this.#noConsentLogged = true
      await this.#waitForChange(ROUND_POLL_MS * 10)
      return
    }
    const trainer = await this.#trainerFor(phase)
    const baseWeights = decodeTensors(await this.#requireBlob(base.files.model, this.#providers()))
    await trainer.setWeights(baseWeights)
    trainer.excludeItems(this.#consent.revokedItems())
    const steps = roundsCfg.innerSteps
    this.#log.info({ round, phase, steps, base: base.id }, 'round started')
    let lossSum = 0
    let samples = 0
    for (let step = 1; step <= steps; step++) {
      // The round may close without us (quorum reached) or we may be stopping: drop the work.
      if (this.#stopping || this.checkpointAt(phase, round) !== undefined) {
        this.#log.info({ round, phase, step }, 'local training abandoned')
        return
      }
      const result = await trainer.trainSteps(1, (s) => {
        this.#log.info({ round, phase, step, steps, loss: s.loss, imgPerSec: s.imgPerSec }, 'training step')
      })
      lossSum += result.lossMean
      samples += result.samples
    }
    if (this.checkpointAt(phase, round) !== undefined) return
    const lossMean = lossSum / steps
    const delta = pseudoGradient(baseWeights, await trainer.getWeights())
    const codec = roundsCfg.compression as Codec
    const residualRef = (await this.#store.rounds.get(residualKey(phase))) as { digest: string } | undefined
    const residual =
      residualRef === undefined ? undefined : decodeTensors(await this.#requireBlob(residualRef.digest, []))
    const compressed = compressDelta(delta, codec, codec.kind === 'topk' ? residual : undefined)
    const payload = encodeSafetensors(compressed.entries)
    const deltaDigest = await this.#store.putBlob(payload)
    this.#payloadsStored.add(deltaDigest)
    const residualDigest =
      codec.kind === 'topk' ? await this.#store.putBlob(encodeTensors(compressed.residual)) : undefined

    // Revocations that arrived during the round were applied before later steps; the statement
    // names what is consented now.
    const used = this.#consent.localItemsInUse(this.#options.datasetItems)
    if (used.items.length === 0) {
      this.#log.warn(
        { round, code: 'NO_CONSENT' },
        'consent withdrawn during the round; contribution dropped',
      )
      return
    }
    const envelope = createContribution(
      {
        coop: this.#options.coopId,
        round,
        phase,
        baseCheckpoint: base.id,
        manifests: used.manifests,
        itemsRoot: merkleRoot(used.items),
        itemCount: used.items.length,
        samples: Math.max(1, samples),
        localSteps: steps,
        loss: Number.isFinite(lossMean) ? lossMean : 0,
        codec,
        delta: deltaDigest,
      },
      this.#options.privateKey,
    )
    const verified = verifyContribution(envelope, { coopId: this.#options.coopId, round, deltaDigest })
    const local: LocalRoundRecord = {
      round,
      phase,
      base: base.id,
      contribution: verified.digest,
      envelope: sha256Digest(envelopeBytes(envelope)),
      delta: deltaDigest,
      samples: verified.predicate.samples,
      loss: verified.predicate.loss,
      createdAt: new Date().toISOString(),
    }
    // One atomic batch (contribution, local record, residual) is the commit point: after it a
    // restart republishes instead of retraining; before it, nothing of this round was published.
    await this.#persistContribution(verified, envelope, [
      { type: 'put', table: 'rounds', key: localKey(round), value: local },
      ...(residualDigest === undefined
        ? []
        : [
            {
              type: 'put' as const,
              table: 'rounds' as const,
              key: residualKey(phase),
              value: { digest: residualDigest },
            },
          ]),
    ])
    this.#recordLoss(round, phase, lossMean)
    this.#log.info(
      {
        round,
        phase,
        samples: local.samples,
        loss: lossMean,
        contribution: verified.digest,
        delta: deltaDigest,
        bytes: payload.byteLength,
        itemCount: used.items.length,
      },
      'contribution published',
    )
    await this.#publishContribution(envelope)
    this.#notify()
  }

  #recordLoss(round: number, phase: Phase, loss: number, evalLoss?: number): void {
    const existing = this.#recentLosses.find((l) => l.round === round && l.phase === phase)
    if (existing !== undefined) {
      if (evalLoss !== undefined) existing.evalLoss = evalLoss
    } else {
      this.#recentLosses.push({ round, phase, loss, ...(evalLoss === undefined ? {} : { evalLoss }) })
      if (this.#recentLosses.length > STATUS_RECENT_LOSSES) this.#recentLosses.shift()
    }
    this.#statusDirty = true
  }

  async #publishContribution(envelope: DsseEnvelope): Promise<void> {
    try {
      await this.#host.publish('contributions', encodeGossipMessage('contribution', envelope))
    } catch (err) {
      this.#log.warn({ err }, 'contribution publish failed; will retry')
    }
  }

  async #persistContribution(
    verified: VerifiedContribution,
    envelope: DsseEnvelope,
    extra: BatchPut[] = [],
  ): Promise<ContributionRecord> {
    const bytes = envelopeBytes(envelope)
    const envelopeDigest = await this.#store.putBlob(bytes)
    // The statement bytes are a blob too: a peer that missed the gossip fetches them by the
    // digest a provenance lists, and the publisher's signature over that list vouches for them.
    await this.#store.putBlob(statementBytes(envelope))
    const record: ContributionRecord = {
      id: verified.digest,
      contributor: verified.contributor,
      delta: verified.delta,
      predicate: verified.predicate,
      envelope: envelopeDigest,
      acceptedAt: new Date().toISOString(),
    }
    const peer = ((await this.#store.rounds.get(peerKey(verified.contributor))) as
      PeerRecord | undefined) ?? { contributions: 0 }
    const peerRecord: PeerRecord = {
      peerId: verified.contributor,
      lastSeen: record.acceptedAt,
      contributions: peer.contributions + 1,
    }
    await this.#store.batch([
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
    this.#statusDirty = true
    return record
  }

  // ---------------------------------------------------------------- gossip: contributions

  /**
   * Semantic stage for ContributionStatements (after size, decode, schema and signature).
   * `from` is the gossip author; the statement's signer must be that author.
   */
  contributionSemantics = async (
    verified: VerifiedContribution,
    ctx: Pick<ChainContext, 'from'>,
  ): Promise<void> => {
    const p = verified.predicate
    // A contribution travels under its own author's gossip signature, never relayed as someone else's.
    if (verified.contributor !== ctx.from)
      throw reject('SENDER_MISMATCH', 'statement signer is not the gossip author')
    // It is for this cooperative.
    if (p.coop !== this.#options.coopId) throw reject('WRONG_COOP', 'contribution for another coop')
    // Admission: an allowlist charter accepts only its listed peers.
    const admission = this.#options.charter.admission
    if (admission.mode === 'allowlist' && !admission.peers.includes(verified.contributor))
      throw reject('ADMISSION_DENIED', 'contributor is not on the allowlist')
    // Its round exists in the charter and its phase is that round's phase.
    if (p.round < 1 || p.round > this.#plan.total)
      throw reject('ROUND_OUT_OF_WINDOW', `round ${p.round} is outside the charter`)
    if (phaseOfRound(this.#plan, p.round) !== p.phase)
      throw reject('SCHEMA', `round ${p.round} is not in phase ${p.phase}`)
    // The codec is the charter's.
    if (JSON.stringify(p.codec) !== JSON.stringify(this.#options.charter.rounds.compression))
      throw reject('SCHEMA', 'codec differs from the charter')
    // Already accepted: a re-announcement. It is ACCEPTed again so gossipsub relays it to peers that
    // missed it (IGNORE would stop it here: a peer reachable only through us would never get it);
    // the handler drops it. The signature stage already proved it is the same signed statement.
    if (this.#contributions.get(p.round)?.has(verified.digest) === true) return
    // Only the open round is accepted: a closed round is history, a future one cannot have a base yet.
    if (this.checkpointAt(p.phase, p.round) !== undefined)
      throw ignore('ROUND_OUT_OF_WINDOW', `round ${p.round} is closed`)
    const base = this.checkpointAt(p.phase, p.round - 1)
    if (base === undefined) throw ignore('UNKNOWN_BASE', `no checkpoint for round ${p.round - 1} yet`)
    // It trained from the round's base checkpoint.
    if (base.id !== p.baseCheckpoint)
      throw reject('WRONG_BASE', 'contribution was not trained from the round base')
    // One contribution per peer per round: a second, different one is equivocation.
    for (const other of this.#contributions.get(p.round)?.values() ?? []) {
      if (other.contributor === verified.contributor)
        throw reject('CONFLICT', 'a second contribution from the same peer for the round')
    }
    // Each manifest is known, valid, held by the contributor, and not revoked before the round started.
    const chainRevocations = this.#chainRevocations(base)
    for (const manifestId of p.manifests) {
      try {
        this.#consent.checkManifestForContribution(manifestId, verified.contributor, chainRevocations)
      } catch (err) {
        // Its custodian serves every manifest it trains on by digest: fetch it, so the next
        // re-announcement of this contribution finds it (gossip of manifests may have missed us).
        if (errorCode(err) === 'UNKNOWN_MANIFEST') void this.#fetchManifest(manifestId, verified.contributor)
        throw err
      }
    }
  }

  async #fetchManifest(manifestId: string, custodian: string): Promise<void> {
    if (this.#manifestFetches.has(manifestId)) return
    this.#manifestFetches.add(manifestId)
    try {
      const bytes = await this.#requireBlob(manifestId, [custodian], CONSENT_DOCUMENT_MAX_BYTES)
      const { verified, added } = await this.#consent.addManifest(
        JSON.parse(new TextDecoder().decode(bytes)) as object,
        false,
      )
      if (added)
        this.#log.info({ manifest: verified.digest, custodian: verified.custodian }, 'manifest fetched')
    } catch (err) {
      this.#log.warn({ manifest: manifestId, code: errorCode(err), err }, 'manifest fetch failed')
    } finally {
      this.#manifestFetches.delete(manifestId)
    }
  }

  async #onContributionMessage(data: Uint8Array, from: string): Promise<void> {
    const envelope = JSON.parse(new TextDecoder().decode(data.subarray(1))) as DsseEnvelope
    const verified = verifyContribution(envelope, { coopId: this.#options.coopId })
    // Re-announcements validated while the first copy was being stored land here too.
    if (
      this.#contributions.get(verified.predicate.round)?.has(verified.digest) === true ||
      this.#storing.has(verified.digest)
    )
      return
    this.#storing.add(verified.digest)
    try {
      await this.#persistContribution(verified, envelope)
    } finally {
      this.#storing.delete(verified.digest)
    }
    this.#log.info(
      { round: verified.predicate.round, peer: from, contribution: verified.digest },
      'contribution accepted',
    )
    this.#notify()
    void this.#ensurePayload(verified.delta, [verified.contributor])
  }

  /** Fetches and stores a payload blob once; resolves to whether it is now in the store. */
  #ensurePayload(digest: string, preferred: string[]): Promise<boolean> {
    if (this.#payloadsStored.has(digest)) return Promise.resolve(true)
    const running = this.#payloadFetches.get(digest)
    if (running !== undefined) return running
    const fetching = (async () => {
      try {
        await this.#requireBlob(digest, preferred, this.#payloadMaxBytes())
        this.#payloadsStored.add(digest)
        this.#notify()
        return true
      } catch (err) {
        this.#log.warn({ delta: digest, code: errorCode(err), err }, 'contribution payload unavailable')
        return false
      } finally {
        this.#payloadFetches.delete(digest)
      }
    })()
    this.#payloadFetches.set(digest, fetching)
    return fetching
  }

  /** The most bytes we accept for one contribution payload (constants.ts gives the reason). */
  #payloadMaxBytes(): number {
    return CONTRIBUTION_PAYLOAD_MAX_BYTES
  }

  /**
   * Who to ask for a blob, best first: the preferred holders we are connected to, then the
   * publishers (they hold every payload they aggregated), then any connected peer, and only then
   * preferred holders we would have to dial (in a star topology trainers do not see each other).
   */
  #providers(preferred: string[] = []): string[] {
    const connected = new Set(this.#host.connectedPeers())
    const out: string[] = []
    const add = (p: string) => {
      if (p !== this.#peerId && !out.includes(p)) out.push(p)
    }
    for (const p of preferred) if (connected.has(p)) add(p)
    for (const p of this.#options.charter.publishers) if (connected.has(p)) add(p)
    for (const p of connected) add(p)
    for (const p of [...preferred, ...this.#options.charter.publishers]) add(p)
    return out
  }

  /** A blob from the store, or fetched from peers (verified against its digest) and stored. */
  async #requireBlob(
    digest: string,
    preferred: string[],
    maxBytes = CHECKPOINT_FILE_MAX_BYTES,
  ): Promise<Uint8Array> {
    const local = await this.#store.getBlob(digest)
    if (local !== undefined) return local
    let lastError: unknown
    for (let attempt = 0; attempt < FETCH_ATTEMPTS && !this.#stopping; attempt++) {
      const providers = this.#providers(preferred)
      if (providers.length > 0) {
        try {
          const bytes = await this.#host.fetchBlob(digest, { providers, maxBytes })
          await this.#store.putBlob(bytes, digest)
          return bytes
        } catch (err) {
          lastError = err
        }
      }
      await new Promise((resolve) => setTimeout(resolve, FETCH_RETRY_MS))
    }
    throw new RoundError('MISSING_PAYLOAD', `blob ${digest} is not available from any peer`, {
      cause: lastError,
    })
  }

  // ---------------------------------------------------------------- publisher

  async #closerLoop(): Promise<void> {
    while (!this.#stopping) {
      try {
        await this.#closeStep()
      } catch (err) {
        this.#log.error({ err, code: errorCode(err) }, 'closing the round failed; retrying')
        await this.#waitForChange(FETCH_RETRY_MS * 4)
      }
      if (this.openRound() === undefined && this.#done) return
      await this.#waitForChange(ROUND_POLL_MS)
    }
  }

  async #closeStep(): Promise<void> {
    const round = this.openRound()
    if (round === undefined) return
    const phase = phaseOfRound(this.#plan, round)
    const base = this.checkpointAt(phase, round - 1)
    if (base === undefined) {
      if (round - 1 === genesisRound(this.#plan, phase)) await this.#createGenesis(phase, round - 1)
      return
    }
    let close = (await this.#store.rounds.get(closeKey(round))) as CloseRecord | undefined
    if (close === undefined) {
      const ready = this.contributionsFor(round).filter(
        (c) => c.predicate.baseCheckpoint === base.id && this.#payloadsStored.has(c.delta),
      )
      for (const c of this.contributionsFor(round))
        if (!this.#payloadsStored.has(c.delta)) void this.#ensurePayload(c.delta, [c.contributor])
      const quorum = this.#options.charter.rounds.quorum
      const elapsed = (Date.now() - Date.parse(base.adoptedAt)) / 1000
      const deadlinePassed = elapsed >= this.#options.charter.rounds.deadlineSeconds
      if (ready.length < quorum && !(deadlinePassed && ready.length > 0)) return
      const exclusion = this.#exclusionSince(base)
      close = {
        round,
        phase,
        base: base.id,
        contributions: ready.map((c) => c.id).sort(compareStrings),
        excludedItems: exclusion.items,
        revocations: exclusion.revocations,
        closedAt: new Date().toISOString(),
      }
      // Frozen before aggregating: a crash from here on re-aggregates exactly this set.
      await this.#store.rounds.put(closeKey(round), close)
      this.#log.info(
        {
          round,
          phase,
          contributions: close.contributions,
          reason: ready.length >= quorum ? 'quorum' : 'deadline',
        },
        'round closing',
      )
      await crashPoint('after-close-frozen', round)
    }
    await this.#aggregateAndPublish(close, base)
  }

  /** Revocations recorded by `base` and its ancestors (and the components they depend on). */
  #chainRevocations(base: CheckpointRecord): Set<string> {
    const out = new Set<string>()
    for (let current: CheckpointRecord | undefined = base; current !== undefined;) {
      for (const r of current.predicate.revocations) out.add(r)
      const parent: { provenance: string } | null = current.predicate.parent
      current = parent === null ? undefined : this.#checkpointsById.get(parent.provenance)
    }
    return out
  }

  /** Revocations known now that no checkpoint of this chain has recorded yet. */
  #exclusionSince(base: CheckpointRecord): { items: string[]; revocations: string[] } {
    const recordedItems = new Set<string>()
    const recordedRevocations = new Set<string>()
    for (let current: CheckpointRecord | undefined = base; current !== undefined;) {
      for (const i of current.predicate.excludedItems) recordedItems.add(i)
      for (const r of current.predicate.revocations) recordedRevocations.add(r)
      const parent: { provenance: string } | null = current.predicate.parent
      current = parent === null ? undefined : this.#checkpointsById.get(parent.provenance)
    }
    const known = this.#consent.revocationSummary()
    return {
      items: known.items.filter((i) => !recordedItems.has(i)).sort(compareStrings),
      revocations: known.revocations.filter((r) => !recordedRevocations.has(r)).sort(compareStrings),
    }
  }

  async #createGenesis(phase: Phase, round: number): Promise<void> {
    const components = phase === 'unet' ? this.#componentsForUnet() : []
    if (phase === 'unet' && components === undefined) return
    const trainer = await this.#trainerFor(phase)
    const weights = await trainer.getWeights()
    const momentum = zerosLike(weights)
    const files = encodeCheckpointFiles(weights, momentum)
    const exclusion = this.#consent.revocationSummary()
    const predicate: ProvenancePredicate = {
      coop: this.#options.coopId,
      round,
      phase,
      parent: null,
      contributions: [],
      manifests: [],
      revocations: [...exclusion.revocations].sort(compareStrings),
      excludedItems: [...exclusion.items].sort(compareStrings),
      components: components ?? [],
      license: this.#consent.licenseOf([]),
      attribution: [],
    }
    await this.#signAndAdopt(predicate, files)
    this.#log.info({ phase, round }, 'genesis checkpoint published')
  }

  #componentsForUnet(): ProvenancePredicate['components'] | undefined {
    const ae = this.#autoencoderComponent()
    if (ae === undefined) return undefined
    return [{ role: 'autoencoder', checkpoint: ae.files.model, provenance: ae.id }]
  }

  async #aggregateAndPublish(close: CloseRecord, base: CheckpointRecord): Promise<void> {
    const records = close.contributions.map((id) => {
      const record = this.#contributions.get(close.round)?.get(id)
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
        payload: await this.#requireBlob(r.delta, [r.contributor]),
      })
    const parentWeights = decodeTensors(await this.#requireBlob(base.files.model, []))
    const parentMomentum = decodeTensors(await this.#requireBlob(base.files.momentum, []))
    const started = performance.now()
    const computed = computeCheckpoint(parentWeights, parentMomentum, payloads, this.#outer())
    const manifests = [...new Set(records.flatMap((r) => r.predicate.manifests))].sort(compareStrings)
    const lineageManifests = new Set([...this.#lineageManifests(base), ...manifests])
    const predicate: ProvenancePredicate = {
      coop: this.#options.coopId,
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
      revocations: close.revocations,
      excludedItems: close.excludedItems,
      components: base.predicate.components,
      license: this.#consent.licenseOf([...lineageManifests]),
      attribution: this.#consent.attributionOf([...lineageManifests]),
    }
    const record = await this.#signAndAdopt(predicate, computed)
    this.#log.info(
      {
        round: close.round,
        phase: close.phase,
        contributions: records.length,
        checkpoint: record.id,
        aggregateMs: Math.round(performance.now() - started),
      },
      'round closed',
    )
    void this.#evalAfterClose(record, computed.weights)
  }

  #lineageManifests(base: CheckpointRecord): string[] {
    const out = new Set<string>()
    for (let current: CheckpointRecord | undefined = base; current !== undefined;) {
      for (const m of current.predicate.manifests) out.add(m)
      const parent: { provenance: string } | null = current.predicate.parent
      current = parent === null ? undefined : this.#checkpointsById.get(parent.provenance)
    }
    for (const component of base.predicate.components) {
      const ae = this.#checkpointsById.get(component.provenance)
      if (ae !== undefined) for (const m of this.#lineageManifests(ae)) out.add(m)
    }
    return [...out]
  }

  async #evalAfterClose(record: CheckpointRecord, weights: NamedTensor[]): Promise<void> {
    const trainer = this.#trainers_.get(record.phase)
    if (trainer === undefined || this.#stopping) return
    try {
      await trainer.setWeights(weights)
      const evalLoss = await trainer.evalLoss()
      this.#recordLoss(record.round, record.phase, Number.NaN, evalLoss)
      this.#log.info({ round: record.round, phase: record.phase, evalLoss }, 'eval loss')
    } catch (err) {
      this.#log.warn({ err }, 'eval loss failed')
    }
  }

  #outer() {
    const r = this.#options.charter.rounds
    return { aggregator: r.aggregator, outerLr: r.outerLr, outerMomentum: r.outerMomentum }
  }

  async #signAndAdopt(
    predicate: ProvenancePredicate,
    files: { modelBytes: Uint8Array; momentumBytes: Uint8Array; modelDigest: string; momentumDigest: string },
  ): Promise<CheckpointRecord> {
    const config = this.#configBytes(predicate.phase, predicate.round, predicate.components)
    const envelope = createProvenance(
      {
        ...predicate,
        files: {
          [CHECKPOINT_FILES.model]: files.modelDigest,
          [CHECKPOINT_FILES.momentum]: files.momentumDigest,
          [CHECKPOINT_FILES.config]: sha256Digest(config),
        },
      },
      [this.#options.privateKey],
    )
    const verified = verifyProvenance(envelope, {
      publishers: this.#options.charter.publishers,
      threshold: this.#options.charter.threshold,
      coopId: this.#options.coopId,
    })
    // Announce first: peers recompute from the payloads (which we already hold), so they need
    // nothing written here. A crash before the adoption below re-aggregates the frozen set into
    // the same bytes (deterministic statement and Ed25519 signature), hence the same checkpoint id.
    await this.#publishCheckpoint(envelope)
    return await this.#adopt(
      verified,
      envelope,
      { model: files.modelBytes, momentum: files.momentumBytes, config },
      'published',
    )
  }

  /** config.json: canonical JSON, so every peer writes the same bytes for the same checkpoint. */
  #configBytes(phase: Phase, round: number, components: ProvenancePredicate['components']): Uint8Array {
    return canonicalBytes({
      coop: this.#options.coopId,
      phase,
      round,
      model: this.#options.charter.model,
      components,
    })
  }

  async #publishCheckpoint(envelope: DsseEnvelope): Promise<void> {
    try {
      await this.#host.publish('checkpoints', encodeGossipMessage('checkpoint', envelope))
    } catch (err) {
      this.#log.warn({ err }, 'checkpoint publish failed; will retry')
    }
  }

  // ---------------------------------------------------------------- gossip: checkpoints

  /** Semantic stage for CheckpointProvenance (after the signature stage verified the publishers). */
  checkpointSemantics = async (verified: VerifiedProvenance): Promise<void> => {
    const p = verified.predicate
    // It is for this cooperative.
    if (p.coop !== this.#options.coopId) throw reject('WRONG_COOP', 'checkpoint for another coop')
    // Its round and phase exist in the charter.
    const genesis = genesisRound(this.#plan, p.phase)
    if (p.round < genesis || p.round > lastRoundOf(this.#plan, p.phase))
      throw reject('ROUND_OUT_OF_WINDOW', `round ${p.round} is outside phase ${p.phase}`)
    // A re-announcement of what we adopted: ACCEPTed so it reaches peers behind us that missed it
    // (restarted or late peers catch up this way); the handler skips it.
    if (this.#checkpointsById.has(verified.digest)) return
    // Two different checkpoints for one round is a publisher equivocating: keep the first.
    if (this.checkpointAt(p.phase, p.round) !== undefined)
      throw reject('CONFLICT', `another checkpoint for ${p.phase} round ${p.round} is adopted`)
    // A genesis has no parent and no contributions; every other checkpoint has both.
    if (
      (p.round === genesis) !== (p.parent === null) ||
      (p.parent === null) !== (p.contributions.length === 0)
    )
      throw reject('SCHEMA', 'genesis checkpoints, and only they, have no parent and no contributions')
    const ae = this.#options.charter.phases.autoencoder
    if (ae.mode === 'component' && p.phase === 'unet') {
      const named = p.components.filter((c) => c.role === 'autoencoder')
      if (
        named.length !== 1 ||
        named[0]?.checkpoint !== ae.checkpoint ||
        named[0]?.provenance !== ae.provenance
      )
        throw reject('SCHEMA', "a U-Net checkpoint must name the charter's component autoencoder")
    }
  }

  async #onCheckpointMessage(data: Uint8Array, from: string): Promise<void> {
    const envelope = JSON.parse(new TextDecoder().decode(data.subarray(1))) as DsseEnvelope
    const verified = verifyProvenance(envelope, {
      publishers: this.#options.charter.publishers,
      threshold: this.#options.charter.threshold,
      coopId: this.#options.coopId,
    })
    if (this.#checkpointsById.has(verified.digest)) return
    this.#enqueueCheckpoint({ verified, envelope, from })
  }

  #enqueueCheckpoint(pending: PendingCheckpoint): void {
    this.#adoptQueue = this.#adoptQueue
      .then(() => this.#verifyAndAdopt(pending))
      .catch((err: unknown) => {
        this.#log.error(
          { err, code: errorCode(err), checkpoint: pending.verified.digest },
          'checkpoint rejected',
        )
      })
  }

  async #verifyAndAdopt(pending: PendingCheckpoint): Promise<void> {
    const { verified, envelope, from } = pending
    const p = verified.predicate
    if (this.#checkpointsById.has(verified.digest) || this.#stopping) return
    if (this.checkpointAt(p.phase, p.round) !== undefined) return
    const files = this.#fileDigests(verified)
    if (p.parent === null) {
      // Genesis: nothing to recompute; the publisher's signature vouches for the initial weights.
      const model = await this.#requireBlob(files.model, [from, ...verified.signers])
      const momentum = await this.#requireBlob(files.momentum, [from, ...verified.signers])
      const config = this.#configBytes(p.phase, p.round, p.components)
      if (sha256Digest(config) !== files.config)
        throw new RoundError(
          'FILE_DIGEST_MISMATCH',
          'config.json of the genesis checkpoint differs from ours',
        )
      await this.#adopt(verified, envelope, { model, momentum, config }, 'genesis')
      this.#log.info(
        {
          round: p.round,
          phase: p.phase,
          checkpoint: verified.digest,
          contributions: 0,
          verification: 'genesis',
        },
        'checkpoint adopted',
      )
      return
    }
    const parent = this.#checkpointsById.get(p.parent.provenance)
    if (parent === undefined) {
      // We missed the parent (joined late or were down): take the publisher's word for this
      // one, with its files checked against the signed digests, and recompute from here on.
      const model = await this.#requireBlob(files.model, [from, ...verified.signers])
      const momentum = await this.#requireBlob(files.momentum, [from, ...verified.signers])
      const config = this.#configBytes(p.phase, p.round, p.components)
      if (sha256Digest(config) !== files.config)
        throw new RoundError('FILE_DIGEST_MISMATCH', 'config.json differs from ours')
      this.#log.warn(
        { round: p.round, phase: p.phase, checkpoint: verified.digest },
        'parent checkpoint unknown; adopted on signature and file digests',
      )
      await this.#adopt(verified, envelope, { model, momentum, config }, 'signature')
      return
    }
    const started = performance.now()
    // The publisher that signed the checkpoint holds every payload it aggregated: ask it first, all in parallel.
    const payloads: ContributionPayload[] = await Promise.all(
      p.contributions.map(async (c) => ({
        payloadDigest: c.delta,
        samples: await this.#samplesOf(c.statement, p.round, [from, ...verified.signers, c.contributor]),
        // Joins a prefetch still in flight instead of starting a second transfer of the same bytes.
        payload: (await this.#ensurePayload(c.delta, [from, ...verified.signers, c.contributor]))
          ? ((await this.#store.getBlob(c.delta)) ??
            (await this.#requireBlob(c.delta, [from, ...verified.signers], this.#payloadMaxBytes())))
          : await this.#requireBlob(
              c.delta,
              [from, ...verified.signers, c.contributor],
              this.#payloadMaxBytes(),
            ),
      })),
    )
    const parentWeights = decodeTensors(await this.#requireBlob(parent.files.model, []))
    const parentMomentum = decodeTensors(await this.#requireBlob(parent.files.momentum, []))
    const computed = computeCheckpoint(parentWeights, parentMomentum, payloads, this.#outer())
    const config = this.#configBytes(p.phase, p.round, p.components)
    // Bit-exact check: the recomputed files must hash to what the publisher signed.
    if (
      computed.modelDigest !== files.model ||
      computed.momentumDigest !== files.momentum ||
      sha256Digest(config) !== files.config
    ) {
      this.#host.penalize(from, 'CONFLICT')
      throw new RoundError(
        'RECOMPUTE_MISMATCH',
        `recomputed ${p.phase} round ${p.round} does not match the signed file digests`,
      )
    }
    await this.#adopt(
      verified,
      envelope,
      { model: computed.modelBytes, momentum: computed.momentumBytes, config },
      'recomputed',
    )
    this.#log.info(
      {
        round: p.round,
        phase: p.phase,
        checkpoint: verified.digest,
        contributions: p.contributions.length,
        verifyMs: Math.round(performance.now() - started),
      },
      'checkpoint adopted',
    )
  }

  /** The sample count a contribution claimed: from our record, or from its statement fetched by digest. */
  async #samplesOf(statement: string, round: number, providers: string[]): Promise<number> {
    const known = this.#contributions.get(round)?.get(statement)
    if (known !== undefined) return known.predicate.samples
    const bytes = await this.#requireBlob(statement, providers, STATEMENT_BLOB_MAX_BYTES)
    const parsed = JSON.parse(new TextDecoder().decode(bytes)) as {
      predicate?: { samples?: unknown; round?: unknown }
    }
    const samples = parsed.predicate?.samples
    if (
      typeof samples !== 'number' ||
      !Number.isSafeInteger(samples) ||
      samples < 1 ||
      parsed.predicate?.round !== round
    )
      throw new RoundError(
        'MISSING_CONTRIBUTION',
        `statement ${statement} is not a contribution to round ${round}`,
      )
    return samples
  }

  #fileDigests(verified: VerifiedProvenance): { model: string; momentum: string; config: string } {
    const model = verified.files.get(CHECKPOINT_FILES.model)
    const momentum = verified.files.get(CHECKPOINT_FILES.momentum)
    const config = verified.files.get(CHECKPOINT_FILES.config)
    if (model === undefined || momentum === undefined || config === undefined)
      throw new RoundError('MISSING_FILE', 'provenance does not list model, momentum and config files')
    return { model, momentum, config }
  }

  async #adopt(
    verified: VerifiedProvenance,
    envelope: DsseEnvelope,
    files: { model: Uint8Array; momentum: Uint8Array; config: Uint8Array },
    verification: Verification,
  ): Promise<CheckpointRecord> {
    const p = verified.predicate
    const provenanceBytes = envelopeBytes(envelope)
    // Independent durable writes, issued together so their fsyncs overlap.
    const [model, momentum, config, envelopeDigest, , dir] = await Promise.all([
      this.#store.putBlob(files.model),
      this.#store.putBlob(files.momentum),
      this.#store.putBlob(files.config),
      this.#store.putBlob(provenanceBytes),
      this.#store.putBlob(statementBytes(envelope)),
      writeCheckpointDir(this.#store.dir, p.phase, p.round, {
        [CHECKPOINT_FILES.model]: files.model,
        [CHECKPOINT_FILES.momentum]: files.momentum,
        [CHECKPOINT_FILES.config]: files.config,
        [CHECKPOINT_FILES.provenance]: provenanceBytes,
        [CHECKPOINT_FILES.charter]: canonicalBytes(this.#options.charterEnvelope),
      }),
    ])
    const digests = { model, momentum, config }
    const record: CheckpointRecord = {
      id: verified.digest,
      phase: p.phase,
      round: p.round,
      files: digests,
      envelope: envelopeDigest,
      predicate: p,
      signers: verified.signers,
      verification,
      adoptedAt: new Date().toISOString(),
      dir,
    }
    // The record is the commit point of an adoption; files and blobs were written first.
    await this.#store.batch([
      { type: 'put', table: 'checkpoints', key: checkpointKey(p.phase, p.round), value: record },
      {
        type: 'put',
        table: 'checkpoints',
        key: checkpointIdKey(record.id),
        value: { phase: p.phase, round: p.round },
      },
    ])
    this.#checkpoints.set(checkpointKey(p.phase, p.round), record)
    this.#checkpointsById.set(record.id, record)
    await this.#writeLatest()
    this.#statusDirty = true
    this.#notify()
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
          dir: checkpointDir(this.#store.dir, phase, latest.round),
        }
    }
    await writeLatestPointers(this.#store.dir, pointers)
  }

  // ---------------------------------------------------------------- re-announcements and status

  async #reannounce(): Promise<void> {
    if (this.#stopping) return
    try {
      // Publishers re-announce the newest checkpoint so restarted peers and joiners catch up.
      if (this.#options.publisher) {
        const latest = this.latestCheckpoint()
        // A component's provenance is another cooperative's: our peers' validators would refuse it.
        if (latest !== undefined && latest.verification !== 'component') {
          const bytes = await this.#store.getBlob(latest.envelope)
          if (bytes !== undefined)
            await this.#publishCheckpoint(JSON.parse(new TextDecoder().decode(bytes)) as DsseEnvelope)
        }
      }
      // Trainers re-announce their contribution to the open round until it closes, so a
      // publisher that restarted (and never stored it) still receives it.
      const round = this.openRound()
      if (round !== undefined) {
        const local = (await this.#store.rounds.get(localKey(round))) as LocalRoundRecord | undefined
        if (local !== undefined) {
          const bytes = await this.#store.getBlob(local.envelope)
          if (bytes !== undefined)
            await this.#publishContribution(JSON.parse(new TextDecoder().decode(bytes)) as DsseEnvelope)
        }
      }
    } catch (err) {
      this.#log.debug({ err }, 're-announcement failed')
    }
  }

  statusSnapshot(): Record<string, unknown> {
    const latest = this.latestCheckpoint()
    const round = this.openRound()
    return {
      peerId: this.#peerId,
      coop: this.#options.coopId,
      pid: process.pid,
      updatedAt: new Date().toISOString(),
      publisher: this.#options.publisher,
      state: this.#stopping ? 'stopped' : this.#done ? 'done' : 'running',
      round: round ?? null,
      phase: round === undefined ? null : phaseOfRound(this.#plan, round),
      totalRounds: this.#untilRound,
      contributionsThisRound: round === undefined ? 0 : this.contributionsFor(round).length,
      latestCheckpoint:
        latest === undefined
          ? null
          : {
              id: latest.id,
              phase: latest.phase,
              round: latest.round,
              verification: latest.verification,
              dir: latest.dir,
            },
      checkpoints: this.checkpoints().map((c) => ({
        id: c.id,
        phase: c.phase,
        round: c.round,
        contributions: c.predicate.contributions.length,
        verification: c.verification,
      })),
      peers: this.#host.connectedPeers(),
      recentLosses: [...this.#recentLosses],
    }
  }

  async #writeStatus(): Promise<void> {
    if (!this.#statusDirty || this.#statusWriting) return
    this.#statusDirty = false
    this.#statusWriting = true
    try {
      await writeSnapshot(this.#store.dir, 'status', this.statusSnapshot())
    } catch (err) {
      this.#log.debug({ err }, 'status snapshot failed')
    } finally {
      this.#statusWriting = false
    }
  }
}

/**
 * Fault injection for the crash-recovery tests: COOP_CRASH_AT=<point>:<round> makes the process
 * SIGKILL itself at that point, the only way to hit a window of a few milliseconds
 * deterministically. Unset in normal runs; the points are listed in CRASH_POINTS.
 */
export const CRASH_POINTS = ['after-close-frozen'] as const
async function crashPoint(point: (typeof CRASH_POINTS)[number], round: number): Promise<void> {
  if (process.env.COOP_CRASH_AT !== `${point}:${round}`) return
  await new Promise((resolve) => setTimeout(resolve, CRASH_LOG_FLUSH_MS))
  process.kill(process.pid, 'SIGKILL')
}

/** The exact signed statement bytes of an envelope: their digest is the statement's id. */
function statementBytes(envelope: DsseEnvelope): Uint8Array {
  return new Uint8Array(Buffer.from(envelope.payload, 'base64'))
}
