// Checking and adopting the checkpoints other peers announce, one at a time in arrival order.
// A genesis is adopted on the publisher's signature (nothing to recompute); a checkpoint whose
// parent we hold is recomputed from its listed payloads and adopted only if the file digests
// equal the signed ones; one whose parent we missed is adopted on signature and file digests.
import type { Logger } from 'pino'
import { errorCode } from '../../protocol/coded-error.ts'
import { sha256Digest } from '../../protocol/digest.ts'
import type { DsseEnvelope } from '../../protocol/dsse.ts'
import { EXCLUSION_DETAILS_MAX_BYTES } from '../../protocol/constants.ts'
import { type ExclusionDetails, verifyExclusionDetails } from '../../protocol/exclusions.ts'
import type { VerifiedProvenance } from '../../protocol/provenance.ts'
import type { CoopHost } from '../p2p/host.ts'
import { STATEMENT_BLOB_MAX_BYTES } from './constants.ts'
import { RoundError } from './errors.ts'
import type { Fetcher } from './fetcher.ts'
import type { ConsentBook } from '../consent/book.ts'
import { verifyRollbackCheckpoint } from './rollback-verify.ts'
import { isRollbackShape } from './unlearning.ts'
import { computeCheckpoint, outerOptimizer, type ContributionPayload } from './recompute.ts'
import { signedFileDigests, type RoundState } from './state.ts'
import { decodeTensors } from './tensors.ts'

export interface PendingCheckpoint {
  verified: VerifiedProvenance
  envelope: DsseEnvelope
  /** The gossip author (a publisher): asked first for files, charged if its checkpoint is wrong. */
  from: string
}

export interface VerifierModules {
  state: RoundState
  fetcher: Fetcher
  host: Pick<CoopHost, 'penalize'>
  /** For rollback checkpoints: the revocations and manifests their receipts are checked against. */
  consent: Pick<ConsentBook, 'manifests' | 'revocations' | 'revokedItems'>
  log: Logger
}

export class Verifier {
  readonly #modules: VerifierModules
  #queue: Promise<void> = Promise.resolve()

  constructor(modules: VerifierModules) {
    this.#modules = modules
  }

  start(): void {}

  /** Waits for the checkpoint being verified; queued ones are skipped once the state is stopping. */
  async stop(): Promise<void> {
    await this.#queue
  }

  enqueue(pending: PendingCheckpoint): void {
    const { state, log } = this.#modules
    this.#queue = this.#queue
      .then(() => this.#verifyAndAdopt(pending))
      .catch((err: unknown) => {
        const code = errorCode(err)
        log.error({ err, code, checkpoint: pending.verified.digest }, 'checkpoint rejected')
        state.events.emit('checkpointRejected', { checkpoint: pending.verified.digest, code })
      })
  }

  async #verifyAndAdopt(pending: PendingCheckpoint): Promise<void> {
    const { state, fetcher, host, log } = this.#modules
    const { verified, envelope, from } = pending
    const p = verified.predicate
    if (state.checkpointById(verified.digest) !== undefined || state.stopping) return
    if (state.checkpointAt(p.phase, p.round) !== undefined) return
    const files = signedFileDigests(verified)
    const config = state.configBytes(p.phase, p.round, p.components)
    // What the checkpoint excludes, checked against the summary it signs before anything is adopted.
    const exclusions = await this.#exclusions(pending)
    if (p.parent === null) {
      // Genesis: nothing to recompute; the publisher's signature vouches for the initial weights.
      const model = await fetcher.requireBlob(files.model, [from, ...verified.signers])
      const momentum = await fetcher.requireBlob(files.momentum, [from, ...verified.signers])
      if (sha256Digest(config) !== files.config)
        throw new RoundError(
          'FILE_DIGEST_MISMATCH',
          'config.json of the genesis checkpoint differs from ours',
        )
      await state.adopt(verified, envelope, { model, momentum, config }, 'genesis', exclusions)
      log.info(
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
    // A rollback checkpoint (unlearning, node/round/rollback.ts): checked against its receipt.
    if (isRollbackShape(p, verified.files)) {
      await verifyRollbackCheckpoint(this.#modules, pending, exclusions)
      return
    }
    const parent = state.checkpointById(p.parent.provenance)
    if (parent === undefined) {
      // We missed the parent (joined late or were down): take the publisher's word for this
      // one, with its files checked against the signed digests, and recompute from here on.
      const model = await fetcher.requireBlob(files.model, [from, ...verified.signers])
      const momentum = await fetcher.requireBlob(files.momentum, [from, ...verified.signers])
      if (sha256Digest(config) !== files.config)
        throw new RoundError('FILE_DIGEST_MISMATCH', 'config.json differs from ours')
      log.warn(
        { round: p.round, phase: p.phase, checkpoint: verified.digest },
        'parent checkpoint unknown; adopted on signature and file digests',
      )
      await state.adopt(verified, envelope, { model, momentum, config }, 'signature', exclusions)
      return
    }
    const started = performance.now()
    // The publisher that signed the checkpoint holds every payload it aggregated: ask it first, all in parallel.
    const payloads: ContributionPayload[] = await Promise.all(
      p.contributions.map(async (c) => {
        const providers = [from, ...verified.signers, c.contributor]
        return {
          payloadDigest: c.delta,
          samples: await this.#samplesOf(c.statement, p.round, providers),
          payload: await fetcher.payload(c.delta, providers),
        }
      }),
    )
    const parentWeights = decodeTensors(await fetcher.requireBlob(parent.files.model, []))
    const parentMomentum = decodeTensors(await fetcher.requireBlob(parent.files.momentum, []))
    const computed = computeCheckpoint(parentWeights, parentMomentum, payloads, outerOptimizer(state.charter))
    // Bit-exact check: the recomputed files must hash to what the publisher signed.
    if (
      computed.modelDigest !== files.model ||
      computed.momentumDigest !== files.momentum ||
      sha256Digest(config) !== files.config
    ) {
      host.penalize(from, 'CONFLICT')
      throw new RoundError(
        'RECOMPUTE_MISMATCH',
        `recomputed ${p.phase} round ${p.round} does not match the signed file digests`,
      )
    }
    await state.adopt(
      verified,
      envelope,
      { model: computed.modelBytes, momentum: computed.momentumBytes, config },
      'recomputed',
      exclusions,
    )
    log.info(
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

  /**
   * The exclusion details a provenance summarises, fetched by digest from the publisher (the
   * fetch checks the digest) and checked against the signed counts and items root. Details that
   * do not match are the publisher's fault: it is charged, and nothing is adopted.
   */
  async #exclusions(pending: PendingCheckpoint): Promise<ExclusionDetails> {
    const { fetcher, host } = this.#modules
    const summary = pending.verified.predicate.exclusions
    const bytes =
      summary.details === null
        ? undefined
        : await fetcher.requireBlob(
            summary.details,
            [pending.from, ...pending.verified.signers],
            EXCLUSION_DETAILS_MAX_BYTES,
          )
    try {
      return verifyExclusionDetails(bytes, summary)
    } catch (err) {
      host.penalize(pending.from, 'SCHEMA')
      throw new RoundError('BAD_EXCLUSIONS', `exclusion details: ${errorCode(err)}`, { cause: err })
    }
  }

  /** The sample count a contribution claimed: from our record, or from its statement fetched by digest. */
  async #samplesOf(statement: string, round: number, providers: string[]): Promise<number> {
    const { state, fetcher } = this.#modules
    const known = state.contribution(round, statement)
    if (known !== undefined) return known.predicate.samples
    const bytes = await fetcher.requireBlob(statement, providers, STATEMENT_BLOB_MAX_BYTES)
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
}
