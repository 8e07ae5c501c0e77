// Checking and adopting the checkpoints other peers announce, one at a time in arrival order.
// A genesis is adopted on the publisher's signature (nothing to recompute); a checkpoint whose
// parent we hold is recomputed from its listed payloads and adopted only if the file digests
// equal the signed ones; one whose parent we missed is adopted on signature and file digests.
import type { Logger } from 'pino'
import {
  checkListedContribution,
  checkParent,
  verifyListedStatement,
  type ListedContribution,
} from '../../protocol/binding.ts'
import { errorCode } from '../../protocol/coded-error.ts'
import { sha256Digest } from '../../protocol/digest.ts'
import type { ContributionPredicate } from '../../protocol/contribution.ts'
import type { DsseEnvelope } from '../../protocol/dsse.ts'
import { isProtocolError } from '../../protocol/errors.ts'
import type { VerifiedProvenance } from '../../protocol/provenance.ts'
import type { CoopHost } from '../p2p/host.ts'
import { STATEMENT_BLOB_MAX_BYTES } from './constants.ts'
import { RoundError } from './errors.ts'
import { CHECKPOINT_FILES } from './layout.ts'
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
        log.error(
          { err, code, checkpoint: pending.verified.digest, from: pending.from },
          'checkpoint rejected',
        )
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
    if (p.parent === null) {
      // Genesis: nothing to recompute; the publisher's signature vouches for the initial weights.
      const model = await fetcher.requireBlob(files.model, [from, ...verified.signers])
      const momentum = await fetcher.requireBlob(files.momentum, [from, ...verified.signers])
      if (sha256Digest(config) !== files.config)
        throw new RoundError(
          'FILE_DIGEST_MISMATCH',
          'config.json of the genesis checkpoint differs from ours',
        )
      await state.adopt(verified, envelope, { model, momentum, config }, 'genesis')
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
      await verifyRollbackCheckpoint(this.#modules, pending)
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
      await state.adopt(verified, envelope, { model, momentum, config }, 'signature')
      return
    }
    const started = performance.now()
    // The parent we hold is the one it names (id, model digest, coop, phase, round before); its
    // momentum is the one its own provenance signed (the record keeps the signed digests, and the
    // store hands out only bytes that hash to them).
    this.#bound(from, () =>
      checkParent(p, {
        digest: parent.id,
        predicate: parent.predicate,
        files: new Map([
          [CHECKPOINT_FILES.model, parent.files.model],
          [CHECKPOINT_FILES.momentum, parent.files.momentum],
        ]),
      }),
    )
    // The publisher that signed the checkpoint holds every payload it aggregated: ask it first, all in parallel.
    const payloads: ContributionPayload[] = await Promise.all(
      p.contributions.map(async (c) => {
        const providers = [from, ...verified.signers, c.contributor]
        return {
          payloadDigest: c.delta,
          samples: (await this.#listedStatement(verified, c, from, providers)).samples,
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
   * The statement a listed contribution stands for, checked against the entry: the one we accepted
   * from gossip (its envelope verified, so the signer is bound too), or its statement bytes fetched
   * by the listed digest. A listed delta its contributor never signed is refused, whatever the
   * recomputation would say.
   */
  async #listedStatement(
    verified: VerifiedProvenance,
    entry: ListedContribution,
    from: string,
    providers: string[],
  ): Promise<ContributionPredicate> {
    const { state, fetcher } = this.#modules
    const known = state.contribution(verified.predicate.round, entry.statement)
    if (known !== undefined) {
      this.#bound(from, () =>
        checkListedContribution(verified.predicate, entry, {
          digest: known.id,
          delta: known.delta,
          predicate: known.predicate,
          contributor: known.contributor,
        }),
      )
      return known.predicate
    }
    const bytes = await fetcher.requireBlob(entry.statement, providers, STATEMENT_BLOB_MAX_BYTES)
    return this.#bound(from, () => verifyListedStatement(verified.predicate, entry, bytes))
  }

  /** Runs a binding check; a checkpoint that breaks one is the publisher's fault: charged, refused. */
  #bound<T>(from: string, check: () => T): T {
    try {
      return check()
    } catch (err) {
      if (!isProtocolError(err)) throw err
      const code = err.code === 'PARENT_MISMATCH' ? 'PARENT_MISMATCH' : 'CONTRIBUTION_MISMATCH'
      this.#modules.host.penalize(from, code)
      throw new RoundError(code, err.message, { cause: err })
    }
  }
}
