// Payload admission: a contribution counts toward a quorum, and can enter a close set, only once
// its payload has been fetched, decoded and checked against the model layout of its base
// checkpoint and the charter's codec (names, shapes, dtypes, top-k counts, finite values), and
// once it moves the model by more than the trivial-delta floor. The bytes are bounded before
// they are read (payloadLimit) and every declared shape before anything dense is allocated
// (protocol/compression.ts), so one payload costs at most a small multiple of the model's size.
// A payload that fails is refused durably, its contributor (who signed the statement naming it)
// is charged, and the round closes with the rest.
import type { Logger } from 'pino'
import { errorCode } from '../../protocol/coded-error.ts'
import { carriedRms, layoutOf, type TensorLayout } from '../../protocol/compression.ts'
import { sha256Digest } from '../../protocol/digest.ts'
import { isProtocolError } from '../../protocol/errors.ts'
import type { CoopHost } from '../p2p/host.ts'
import type { GossipErrorCode } from '../p2p/gossip-errors.ts'
import { PENALTY_BAD_PAYLOAD, PENALTY_TRIVIAL_DELTA } from '../constants.ts'
import { REFUSAL_REASON_MAX_CHARS } from './constants.ts'
import type { Fetcher } from './fetcher.ts'
import { charterCodec, deltaRmsFloor, payloadLimit } from './limits.ts'
import { decodeContributionPayload } from './recompute.ts'
import type { CheckpointRecord, ContributionRecord } from './records.ts'
import type { RoundState } from './state.ts'
import { decodeTensors } from './tensors.ts'

export type AdmissionResult = 'admitted' | 'refused' | 'pending'

export interface AdmissionModules {
  state: RoundState
  fetcher: Fetcher
  host: Pick<CoopHost, 'penalize'>
  log: Logger
}

export class PayloadAdmission {
  readonly #modules: AdmissionModules
  readonly #running = new Map<string, Promise<AdmissionResult>>()
  /** Model layouts by checkpoint id: names and shapes only, a few KB per checkpoint. */
  readonly #layouts = new Map<string, TensorLayout[]>()

  constructor(modules: AdmissionModules) {
    this.#modules = modules
  }

  /** The names and shapes of a checkpoint's model: what every delta trained from it must fit. */
  async layout(checkpoint: CheckpointRecord): Promise<TensorLayout[]> {
    let layout = this.#layouts.get(checkpoint.id)
    if (layout === undefined) {
      const { fetcher } = this.#modules
      layout = layoutOf(decodeTensors(await fetcher.requireBlob(checkpoint.files.model, fetcher.providers())))
      this.#layouts.set(checkpoint.id, layout)
    }
    return layout
  }

  /**
   * Admits a contribution's payload: from the store or fetched (not stored until it passes),
   * decoded against its base's layout, above the floor. Single-flight by delta digest. Resolves
   * `pending` when the payload cannot be had yet (no provider has it): the caller asks again.
   */
  admit(contribution: ContributionRecord): Promise<AdmissionResult> {
    const running = this.#running.get(contribution.id)
    if (running !== undefined) return running
    const admitting = this.#admitOnce(contribution).finally(() => this.#running.delete(contribution.id))
    this.#running.set(contribution.id, admitting)
    return admitting
  }

  async #admitOnce(contribution: ContributionRecord): Promise<AdmissionResult> {
    const { state } = this.#modules
    const known = state.admission(contribution.delta)
    if (known === 'admitted') return known
    if (known === 'refused') {
      // The same bytes were refused before: a statement naming them again answers for them too.
      if (state.evidence.refusal(contribution.id) === undefined) {
        const code = state.evidence.refusedPayload(contribution.delta) as GossipErrorCode
        return await this.#refuse(contribution, code, 'the payload was refused before')
      }
      return known
    }
    return await this.#admit(contribution)
  }

  async #admit(contribution: ContributionRecord): Promise<AdmissionResult> {
    const { state, fetcher, log } = this.#modules
    const p = contribution.predicate
    const base = state.checkpointById(p.baseCheckpoint)
    // Validation admitted it against the round's base, which this node adopted; a record from an
    // older run may name a base we never adopted: it can never be aggregated here.
    if (base === undefined) return 'pending'
    const layout = await this.layout(base)
    const maxBytes = payloadLimit(state.charter, layout)
    let bytes = await state.store.getBlob(contribution.delta)
    if (bytes === undefined) {
      try {
        bytes = await fetcher.fetchBytes(contribution.delta, [contribution.contributor], maxBytes)
      } catch (err) {
        // The contributor itself says its payload is larger than any this model produces.
        const tooLarge = (err as { tooLarge?: string[] }).tooLarge ?? []
        if (tooLarge.includes(contribution.contributor))
          return await this.#refuse(contribution, 'TOO_LARGE', `payload larger than ${maxBytes} bytes`)
        log.warn(
          { delta: contribution.delta, round: p.round, code: errorCode(err) },
          'contribution payload unavailable',
        )
        return 'pending'
      }
    }
    // The store quarantines a damaged blob and the fetcher checks digests, so this never holds;
    // if it did, the bytes came from our disk or a provider, not from the contributor: no charge.
    if (sha256Digest(bytes) !== contribution.delta) {
      log.warn({ delta: contribution.delta, round: p.round }, 'contribution payload unavailable')
      return 'pending'
    }
    const codec = charterCodec(state.charter)
    let rms: number
    try {
      rms = carriedRms(decodeContributionPayload(bytes, layout, codec), codec)
    } catch (err) {
      if (!isProtocolError(err)) throw err
      return await this.#refuse(
        contribution,
        err.code === 'TOO_LARGE' ? 'TOO_LARGE' : 'BAD_PAYLOAD',
        `${err.code}: ${err.message}`,
      )
    }
    const floor = deltaRmsFloor(state.charter, p.phase)
    if (!(rms >= floor))
      return await this.#refuse(
        contribution,
        'TRIVIAL_DELTA',
        `delta RMS ${rms.toExponential(3)} is below the floor ${floor.toExponential(3)}`,
      )
    if (!state.hasPayload(contribution.delta)) {
      await state.store.putBlob(bytes, contribution.delta)
      state.payloadStored(contribution.delta)
    }
    state.payloadAdmitted(contribution.delta, rms)
    state.changed()
    return 'admitted'
  }

  async #refuse(contribution: ContributionRecord, code: GossipErrorCode, reason: string): Promise<'refused'> {
    const { state, host, log } = this.#modules
    const p = contribution.predicate
    await state.evidence.refuse({
      delta: contribution.delta,
      round: p.round,
      contribution: contribution.id,
      contributor: contribution.contributor,
      code,
      reason: reason.slice(0, REFUSAL_REASON_MAX_CHARS),
      refusedAt: new Date().toISOString(),
    })
    // The contributor signed the statement that names this payload: it, not a relay, answers for it.
    if (contribution.contributor !== state.peerId)
      host.penalize(
        contribution.contributor,
        code,
        code === 'TRIVIAL_DELTA' ? PENALTY_TRIVIAL_DELTA : PENALTY_BAD_PAYLOAD,
      )
    log.warn(
      { round: p.round, contributor: contribution.contributor, contribution: contribution.id, code },
      'contribution payload refused',
    )
    // The reason quotes the payload (tensor names): peer-supplied, so only at debug.
    log.debug({ contribution: contribution.id, reason }, 'contribution payload refusal reason')
    state.events.emit('payloadRefused', {
      round: p.round,
      phase: p.phase,
      contribution: contribution.id,
      contributor: contribution.contributor,
      code,
    })
    state.changed()
    return 'refused'
  }
}
