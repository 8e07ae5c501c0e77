// The node's walk through the rounds: for the open round it waits for the base, trains H local
// steps from it (when this node trains), compresses base - local, commits the contribution and
// gossips it; after the last round it reports all rounds done. Training is dropped as soon as
// the round closes without us, and a failed round is retried after a pause.
import { errorCode } from '../../protocol/coded-error.ts'
import { compressDelta, type Codec } from '../../protocol/compression.ts'
import { createContribution, verifyContribution } from '../../protocol/contribution.ts'
import { sha256Digest } from '../../protocol/digest.ts'
import { envelopeBytes } from '../../protocol/dsse.ts'
import type { Ed25519PrivateKey } from '../../protocol/keys.ts'
import { merkleRoot } from '../../protocol/merkle.ts'
import { encodeSafetensors } from '../../protocol/safetensors.ts'
import type { Logger } from 'pino'
import type { ConsentBook } from '../consent/book.ts'
import type { BatchPut } from '../store/store.ts'
import { FETCH_RETRY_MS, ROUND_POLL_MS } from './constants.ts'
import type { Fetcher } from './fetcher.ts'
import type { RoundGossip } from './gossip.ts'
import { localKey, residualKey, type CheckpointRecord, type LocalRoundRecord } from './records.ts'
import { isRollbackRecord } from './rollback.ts'
import { genesisRound, phaseOfRound, type Phase } from './schedule.ts'
import type { RoundState } from './state.ts'
import { decodeTensors, encodeTensors, pseudoGradient } from './tensors.ts'
import type { TrainerPool } from './trainers.ts'

export interface TrainerLoopOptions {
  privateKey: Ed25519PrivateKey
  /** Run local training and contribute (otherwise only follow the rounds). */
  train: boolean
  /** Digests of the consented items the local dataset actually holds (what the trainer can see). */
  datasetItems: ReadonlySet<string>
}

export interface TrainerLoopModules {
  state: RoundState
  fetcher: Fetcher
  trainers: TrainerPool
  gossip: RoundGossip
  consent: ConsentBook
  log: Logger
}

export class TrainerLoop {
  readonly #options: TrainerLoopOptions
  readonly #modules: TrainerLoopModules
  #running: Promise<void> | undefined
  #noConsentLogged = false

  constructor(options: TrainerLoopOptions, modules: TrainerLoopModules) {
    this.#options = options
    this.#modules = modules
  }

  /** Resolves when every round has an adopted checkpoint (or the loop stopped). */
  get finished(): Promise<void> {
    return this.#running ?? Promise.resolve()
  }

  start(): void {
    const { state, log } = this.#modules
    this.#running = this.#loop().catch((err: unknown) => {
      if (state.stopping) return
      log.error({ err }, 'round engine failed')
      throw err
    })
  }

  /** Waits for the loop, which drops its training at the next step once the state is stopping. */
  async stop(): Promise<void> {
    await Promise.allSettled([this.#running])
  }

  async #loop(): Promise<void> {
    const { state, log } = this.#modules
    let lastAnnounced: number | undefined
    while (!state.stopping) {
      const round = state.openRound()
      if (round === undefined) {
        if (!state.done) {
          state.done = true
          const checkpoint = state.latestCheckpoint()?.id
          log.info({ rounds: state.untilRound, checkpoint }, 'all rounds done')
          state.events.emit('allRoundsDone', { rounds: state.untilRound, checkpoint })
        }
        return
      }
      const phase = phaseOfRound(state.plan, round)
      const base = state.checkpointAt(phase, round - 1)
      if (base === undefined) {
        // Genesis is the publisher's job (closer loop); everyone else waits for it.
        await state.waitForChange(ROUND_POLL_MS * 10)
        continue
      }
      if (lastAnnounced !== round) {
        lastAnnounced = round
        if (round === genesisRound(state.plan, phase) + 1) {
          log.info({ phase, round }, 'phase started')
          state.events.emit('phaseStarted', { phase, round })
        }
        state.events.emit('roundOpened', { phase, round })
      }
      // Until we know where the cooperative is, or while a checkpoint at or past this round is
      // being verified, the round may already be closed (we restarted or joined late): training
      // it could be wasted, so wait for the verifier to catch the chain up.
      if (!state.tipKnown || state.verifying(phase, round)) {
        await state.waitForChange(ROUND_POLL_MS * 10)
        continue
      }
      if (this.#options.train && (await state.store.rounds.get(localKey(round))) === undefined) {
        try {
          await this.#trainRound(round, phase, base)
        } catch (err) {
          // A missing blob or a transient store/network failure must not end the node: log, back off, retry the round.
          if (state.stopping) return
          log.error({ round, phase, err, code: errorCode(err) }, 'local round failed; retrying')
          await state.waitForChange(FETCH_RETRY_MS * 4)
        }
        continue
      }
      await state.waitForChange(ROUND_POLL_MS * 10)
    }
  }

  async #trainRound(round: number, phase: Phase, base: CheckpointRecord): Promise<void> {
    const { state, fetcher, trainers, gossip, consent, log } = this.#modules
    const { datasetItems, privateKey } = this.#options
    const roundsCfg = state.charter.rounds
    const usedAtStart = consent.localItemsInUse(datasetItems)
    if (usedAtStart.items.length === 0) {
      // Every local item was revoked: keep verifying and serving, but never train on nothing.
      if (!this.#noConsentLogged)
        log.warn({ round, code: 'NO_CONSENT' }, 'no consented item left; not contributing')
      this.#noConsentLogged = true
      await state.waitForChange(ROUND_POLL_MS * 10)
      return
    }
    // A rollback base: nothing learned in the superseded rounds may carry over (optimizer, EMA).
    if (isRollbackRecord(base)) trainers.discard(phase)
    const trainer = await trainers.forPhase(phase)
    const baseWeights = decodeTensors(await fetcher.requireBlob(base.files.model, fetcher.providers()))
    await trainer.setWeights(baseWeights)
    trainer.excludeItems(consent.withdrawnItems())
    const steps = roundsCfg.innerSteps
    log.info({ round, phase, steps, base: base.id }, 'round started')
    state.events.emit('roundStarted', { round, phase, steps, base: base.id })
    let lossSum = 0
    let samples = 0
    for (let step = 1; step <= steps; step++) {
      // The round may close without us (quorum reached, or we catch up on rounds closed while we
      // were away) or we may be stopping: drop the work.
      if (state.stopping || state.checkpointAt(phase, round) !== undefined) {
        log.info({ round, phase, step }, 'local training abandoned')
        return
      }
      const result = await trainer.trainSteps(1, (s) => {
        log.info({ round, phase, step, steps, loss: s.loss, imgPerSec: s.imgPerSec }, 'training step')
        state.events.emit('trainingStep', { round, phase, step, steps, loss: s.loss, imgPerSec: s.imgPerSec })
      })
      lossSum += result.lossMean
      samples += result.samples
    }
    // Never publish into a closed round: if a checkpoint at or past it is being verified, wait for
    // the outcome (an unverifiable one lets the work through; a verified one closes the round).
    while (
      !state.stopping &&
      state.checkpointAt(phase, round) === undefined &&
      !state.mayContribute(phase, round)
    )
      await state.waitForChange(ROUND_POLL_MS * 10)
    if (state.stopping || state.checkpointAt(phase, round) !== undefined) {
      log.info({ round, phase, step: steps }, 'local training abandoned')
      return
    }
    const lossMean = lossSum / steps
    const delta = pseudoGradient(baseWeights, await trainer.getWeights())
    const codec = roundsCfg.compression as Codec
    // After a rollback the residual holds what rounds now superseded learned: drop it.
    const residualRef = isRollbackRecord(base)
      ? undefined
      : ((await state.store.rounds.get(residualKey(phase))) as { digest: string } | undefined)
    const residual =
      residualRef === undefined ? undefined : decodeTensors(await fetcher.requireBlob(residualRef.digest, []))
    const compressed = compressDelta(delta, codec, codec.kind === 'topk' ? residual : undefined)
    const payload = encodeSafetensors(compressed.entries)
    const deltaDigest = await state.store.putBlob(payload)
    state.payloadStored(deltaDigest)
    const residualDigest =
      codec.kind === 'topk' ? await state.store.putBlob(encodeTensors(compressed.residual)) : undefined

    // Revocations and expiries during the round were applied before later steps. The statement
    // names every manifest the round's steps may have used (the first steps saw what was
    // consented at the start), so the provenance traces them; the next checkpoint records what
    // was withdrawn. Nothing is published when every item was withdrawn during the round.
    const usedAtEnd = consent.localItemsInUse(datasetItems)
    if (usedAtEnd.items.length === 0) {
      log.warn({ round, code: 'NO_CONSENT' }, 'consent withdrawn during the round; contribution dropped')
      return
    }
    const used = usedAtStart
    const envelope = createContribution(
      {
        coop: state.coopId,
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
      privateKey,
    )
    const verified = verifyContribution(envelope, { coopId: state.coopId, round, deltaDigest })
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
    const residualPut: BatchPut[] =
      residualDigest === undefined
        ? []
        : [{ type: 'put', table: 'rounds', key: residualKey(phase), value: { digest: residualDigest } }]
    // One atomic batch (contribution, local record, residual) is the commit point: after it a
    // restart republishes instead of retraining; before it, nothing of this round was published.
    await state.persistContribution(verified, envelope, [
      { type: 'put', table: 'rounds', key: localKey(round), value: local },
      ...residualPut,
    ])
    log.info(
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
    state.events.emit('contributionPublished', {
      round,
      phase,
      contribution: verified.digest,
      samples: local.samples,
      loss: lossMean,
      bytes: payload.byteLength,
    })
    // Never gossip into a closed round: the record stays (it is what we did), the message does not go out.
    if (state.mayContribute(phase, round)) await gossip.publishContribution(envelope)
    state.changed()
  }
}
