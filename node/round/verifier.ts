// Checking and adopting the checkpoints other peers announce, one at a time in arrival order.
// A genesis is adopted on the publisher's signature (it has no inputs to recompute); every other
// checkpoint is recomputed from its parent and its listed payloads and adopted only if the file
// digests equal the signed ones. A peer that missed checkpoints (it restarted, or joined late)
// walks the announced checkpoint's chain back to the last one it holds, fetching each missing
// provenance envelope by the statement digest its child names (signatures verified, the digest
// chain binding it to the announced one), and the autoencoder chain a U-Net checkpoint names,
// then verifies and adopts them oldest first, each by recomputation. Nothing is adopted on a
// signature alone except a genesis.
//
// Equivocation: a second, different checkpoint signed for a round that has one is kept as
// evidence (both envelopes, durably), reported (log, event, status) and never adopted: the first
// adopted wins. Since a checkpoint is adopted only once it verified, a checkpoint that verifies
// beats one that arrived first but does not.
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
import { EXCLUSION_DETAILS_MAX_BYTES } from '../../protocol/constants.ts'
import { type ExclusionDetails, verifyExclusionDetails } from '../../protocol/exclusions.ts'
import { envelopeBytes } from '../../protocol/dsse.ts'
import { layoutOf } from '../../protocol/compression.ts'
import { isProtocolError } from '../../protocol/errors.ts'
import { verifyProvenance, type VerifiedProvenance } from '../../protocol/provenance.ts'
import { PENALTY_EQUIVOCATION } from '../constants.ts'
import { isGossipValidationError } from '../p2p/gossip-errors.ts'
import type { CoopHost } from '../p2p/host.ts'
import {
  EQUIVOCATION_EVIDENCE_PER_ROUND,
  STATEMENT_BLOB_MAX_BYTES,
  VERIFY_FAILURES_TRACKED,
  VERIFY_RETRY_MAX_MS,
  VERIFY_RETRY_MIN_MS,
} from './constants.ts'
import { RoundError } from './errors.ts'
import { CHECKPOINT_FILES } from './layout.ts'
import type { Fetcher } from './fetcher.ts'
import type { ConsentBook } from '../consent/book.ts'
import { verifyRollbackCheckpoint } from './rollback-verify.ts'
import { isRollbackShape } from './unlearning.ts'
import { payloadLimit } from './limits.ts'
import { computeCheckpoint, outerOptimizer, type ContributionPayload } from './recompute.ts'
import type { CheckpointRecord } from './records.ts'
import { signedFileDigests, type RoundState } from './state.ts'
import { decodeTensors } from './tensors.ts'
import { validateCheckpoint } from './validate.ts'

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
  /** Checkpoints waiting in the queue: the publisher re-announces its latest every few seconds, and one catch-up is enough. */
  readonly #queued = new Set<string>()
  /** Checkpoints that failed verification: when each may be tried again. */
  readonly #failed = new Map<string, { pauseMs: number; retryAt: number }>()

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
    const id = pending.verified.digest
    const p = pending.verified.predicate
    if (this.#queued.has(id)) return
    // One that failed is tried again only after a pause that doubles each time: a publisher
    // re-announcing an unverifiable checkpoint cannot keep peers verifying (and waiting) forever.
    const failed = this.#failed.get(id)
    if (failed !== undefined && Date.now() < failed.retryAt) return
    this.#queued.add(id)
    // From now until it is settled, the round it closes may be closed: training waits (state.verifying).
    const head = [{ phase: p.phase, round: p.round }]
    state.beginVerifying(head)
    this.#queue = this.#queue
      .then(async () => {
        await this.#verifyAndAdopt(pending)
        this.#failed.delete(id)
      })
      .catch((err: unknown) => {
        const code = errorCode(err)
        log.error({ err, code, checkpoint: id, from: pending.from }, 'checkpoint rejected')
        state.events.emit('checkpointRejected', { checkpoint: id, code })
        this.#rememberFailure(id)
      })
      .finally(() => {
        this.#queued.delete(id)
        state.endVerifying(head)
      })
  }

  #rememberFailure(id: string): void {
    const previous = this.#failed.get(id)
    const pauseMs = Math.min(
      previous === undefined ? VERIFY_RETRY_MIN_MS : previous.pauseMs * 2,
      VERIFY_RETRY_MAX_MS,
    )
    this.#failed.delete(id)
    this.#failed.set(id, { pauseMs, retryAt: Date.now() + pauseMs })
    // Oldest first (insertion order): a flood of distinct forgeries cannot grow this without bound.
    if (this.#failed.size > VERIFY_FAILURES_TRACKED)
      this.#failed.delete(this.#failed.keys().next().value as string)
  }

  /**
   * Evidence of equivocation: `conflicting` is validly signed for a round that already has
   * `adopted`. Both envelopes are kept (a bounded number per round), the signers are charged
   * (never the relay, which may not have adopted either yet), and it is reported.
   */
  async recordEquivocation(adopted: CheckpointRecord, conflicting: PendingCheckpoint): Promise<void> {
    const { state, host, log } = this.#modules
    const { verified, envelope, from } = conflicting
    const p = verified.predicate
    if (adopted.id === verified.digest || state.evidence.hasEquivocation(p.phase, p.round, verified.digest))
      return
    for (const signer of verified.signers) host.penalize(signer, 'EQUIVOCATION', PENALTY_EQUIVOCATION)
    if (state.evidence.equivocationCount(p.phase, p.round) >= EQUIVOCATION_EVIDENCE_PER_ROUND) return
    const conflictingEnvelope = await state.store.putBlob(envelopeBytes(envelope))
    await state.evidence.recordEquivocation({
      phase: p.phase,
      round: p.round,
      adopted: adopted.id,
      adoptedEnvelope: adopted.envelope,
      conflicting: verified.digest,
      conflictingEnvelope,
      signers: verified.signers,
      from,
      seenAt: new Date().toISOString(),
    })
    log.error(
      {
        round: p.round,
        phase: p.phase,
        adopted: adopted.id,
        conflicting: verified.digest,
        signers: verified.signers,
      },
      'checkpoint equivocation',
    )
    state.events.emit('equivocation', {
      round: p.round,
      phase: p.phase,
      adopted: adopted.id,
      conflicting: verified.digest,
      signers: verified.signers,
    })
    state.changed()
  }

  async #verifyAndAdopt(pending: PendingCheckpoint): Promise<void> {
    const { state } = this.#modules
    const p = pending.verified.predicate
    if (state.checkpointById(pending.verified.digest) !== undefined || state.stopping) return
    const existing = state.checkpointAt(p.phase, p.round)
    if (existing !== undefined) {
      await this.recordEquivocation(existing, pending)
      return
    }
    const chain = await this.#missingChain(pending)
    const links = chain.map((l) => ({ phase: l.verified.predicate.phase, round: l.verified.predicate.round }))
    state.beginVerifying(links)
    try {
      // Oldest first: every link's parent is adopted (or it is a genesis) when its turn comes.
      for (const link of chain) {
        if (state.stopping) return
        await this.#adoptOne(link)
      }
    } finally {
      state.endVerifying(links)
    }
  }

  /**
   * The chain from the last checkpoint this node holds to `head`, oldest first, `head` last.
   * Each missing parent is fetched as a provenance envelope by the statement digest its child
   * names, its signatures verified against the charter; a U-Net chain also brings the
   * cooperative autoencoder chain its components name. Bounded by the charter's rounds.
   */
  async #missingChain(head: PendingCheckpoint): Promise<PendingCheckpoint[]> {
    const { state } = this.#modules
    const chain: PendingCheckpoint[] = [head]
    const seen = new Set<string>([head.verified.digest])
    let current = head
    for (;;) {
      const parent = current.verified.predicate.parent
      if (parent === null || state.checkpointById(parent.provenance) !== undefined) break
      if (seen.has(parent.provenance) || chain.length > state.plan.total + 2)
        throw new RoundError('MISSING_PARENT', 'the announced chain loops or outgrows the charter')
      const link = await this.#fetchLink(parent.provenance, head)
      const lp = link.verified.predicate
      // A parent is the previous round of the same phase (a rollback's: an earlier round of it).
      const rolledBack = isRollbackShape(current.verified.predicate, current.verified.files)
      if (
        lp.phase !== current.verified.predicate.phase ||
        (rolledBack
          ? lp.round >= current.verified.predicate.round
          : lp.round !== current.verified.predicate.round - 1)
      )
        throw new RoundError(
          'MISSING_PARENT',
          `the parent of ${lp.phase} round ${lp.round + 1} is out of sequence`,
        )
      seen.add(link.verified.digest)
      chain.unshift(link)
      current = link
    }
    // The U-Net phase depends on the cooperative autoencoder chain its checkpoints name.
    const oldest = chain[0] as PendingCheckpoint
    const component = oldest.verified.predicate.components.find((c) => c.role === 'autoencoder')
    if (
      oldest.verified.predicate.phase === 'unet' &&
      component !== undefined &&
      state.charter.phases.autoencoder.mode === 'cooperative' &&
      state.checkpointById(component.provenance) === undefined
    ) {
      const ae = await this.#fetchLink(component.provenance, head)
      if (ae.verified.predicate.phase !== 'autoencoder')
        throw new RoundError(
          'MISSING_PARENT',
          'a U-Net checkpoint names a component that is not an autoencoder',
        )
      if (state.checkpointById(ae.verified.digest) === undefined)
        chain.unshift(...(await this.#missingChain(ae)))
    }
    return chain
  }

  /** A checkpoint this node does not hold, by its statement digest: envelope fetched, signatures verified. */
  async #fetchLink(statementDigest: string, head: PendingCheckpoint): Promise<PendingCheckpoint> {
    const { state, fetcher } = this.#modules
    const providers = [head.from, ...head.verified.signers]
    const bytes = await fetcher.envelope(statementDigest, providers)
    if (bytes.byteLength > STATEMENT_BLOB_MAX_BYTES)
      throw new RoundError('MISSING_PARENT', `the envelope of ${statementDigest} is too large`)
    let verified: VerifiedProvenance
    try {
      verified = verifyProvenance(bytes, {
        publishers: state.charter.publishers,
        threshold: state.charter.threshold,
        coopId: state.coopId,
      })
    } catch (err) {
      if (isProtocolError(err))
        throw new RoundError(
          'BAD_SIGNATURE',
          `the provenance of ${statementDigest} does not verify: ${err.code}`,
          {
            cause: err,
          },
        )
      throw err
    }
    // The digest chain: the envelope carries exactly the statement its child named.
    if (verified.digest !== statementDigest)
      throw new RoundError('MISSING_PARENT', `fetched provenance is not ${statementDigest}`)
    const envelope = JSON.parse(new TextDecoder().decode(bytes)) as DsseEnvelope
    return { verified, envelope, from: head.from }
  }

  /** Verifies one checkpoint whose parent is adopted (or a genesis) and adopts it. */
  async #adoptOne(pending: PendingCheckpoint): Promise<void> {
    const { state, fetcher, host, log } = this.#modules
    const { verified, envelope, from } = pending
    const p = verified.predicate
    if (state.checkpointById(verified.digest) !== undefined) return
    const existing = state.checkpointAt(p.phase, p.round)
    if (existing !== undefined) {
      // The announced chain forks from ours below its head: ours stays (first adopted wins).
      await this.recordEquivocation(existing, pending)
      throw new RoundError(
        'MISSING_PARENT',
        `the announced chain forks from ours at ${p.phase} round ${p.round}`,
      )
    }
    try {
      validateCheckpoint(state, verified)
    } catch (err) {
      if (isGossipValidationError(err))
        throw new RoundError('BAD_CHECKPOINT', `${err.code}: ${err.message}`, { cause: err })
      throw err
    }
    const files = signedFileDigests(verified)
    const config = state.configBytes(p.phase, p.round, p.components)
    const providers = [from, ...verified.signers]
    // What the checkpoint excludes, checked against the summary it signs before anything is adopted.
    const exclusions = await this.#exclusions(pending)
    if (p.parent === null) {
      // Genesis: nothing to recompute; the publisher's signature vouches for the initial weights.
      const model = await fetcher.requireBlob(files.model, providers)
      const momentum = await fetcher.requireBlob(files.momentum, providers)
      if (sha256Digest(model) !== files.model || sha256Digest(momentum) !== files.momentum)
        throw new RoundError('FILE_DIGEST_MISMATCH', 'genesis files do not match their signed digests')
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
    if (parent === undefined)
      throw new RoundError('MISSING_PARENT', `parent ${p.parent.provenance} is not adopted`)
    const started = performance.now()
    // Whoever signed a checkpoint that breaks a binding is charged: the sender when it is one of
    // them (the head, from gossip), else its signers (a link fetched while catching up, which the
    // relay of the head did not necessarily sign).
    const liable = verified.signers.includes(from) ? [from] : verified.signers
    // The parent we hold is the one it names (id, model digest, coop, phase, round before); its
    // momentum is the one its own provenance signed (the record keeps the signed digests, and the
    // store hands out only bytes that hash to them). Checked for every adopted checkpoint,
    // including the links of a catch-up, before any weight is loaded.
    this.#bound(liable, () =>
      checkParent(p, {
        digest: parent.id,
        predicate: parent.predicate,
        files: new Map([
          [CHECKPOINT_FILES.model, parent.files.model],
          [CHECKPOINT_FILES.momentum, parent.files.momentum],
        ]),
      }),
    )
    const parentWeights = decodeTensors(await fetcher.requireBlob(parent.files.model, []))
    const parentMomentum = decodeTensors(await fetcher.requireBlob(parent.files.momentum, []))
    // No payload larger than this model and codec produce is fetched or decoded.
    const maxBytes = payloadLimit(state.charter, layoutOf(parentWeights))
    // The publisher that signed the checkpoint holds every payload it aggregated: ask it first, all in parallel.
    const payloads: ContributionPayload[] = await Promise.all(
      p.contributions.map(async (c) => {
        const holders = [...providers, c.contributor]
        return {
          payloadDigest: c.delta,
          samples: (await this.#listedStatement(verified, c, liable, holders)).samples,
          payload: await fetcher.payload(c.delta, holders, maxBytes),
        }
      }),
    )
    const computed = computeCheckpoint(
      parentWeights,
      parentMomentum,
      payloads,
      outerOptimizer(state.charter, p.phase, p.round),
    )
    // Bit-exact check: the recomputed files must hash to what the publisher signed.
    if (
      computed.modelDigest !== files.model ||
      computed.momentumDigest !== files.momentum ||
      sha256Digest(config) !== files.config
    ) {
      for (const signer of verified.signers) host.penalize(signer, 'CONFLICT')
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
   * The statement a listed contribution stands for, checked against the entry: the one we accepted
   * from gossip (its envelope verified, so the signer is bound too), or its statement bytes fetched
   * by the listed digest. A listed delta its contributor never signed is refused, whatever the
   * recomputation would say.
   */
  async #listedStatement(
    verified: VerifiedProvenance,
    entry: ListedContribution,
    liable: readonly string[],
    providers: string[],
  ): Promise<ContributionPredicate> {
    const { state, fetcher } = this.#modules
    const known = state.contribution(verified.predicate.round, entry.statement)
    if (known !== undefined) {
      this.#bound(liable, () =>
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
    return this.#bound(liable, () => verifyListedStatement(verified.predicate, entry, bytes))
  }

  /** Runs a binding check; a checkpoint that breaks one is its signers' fault: charged, refused. */
  #bound<T>(liable: readonly string[], check: () => T): T {
    try {
      return check()
    } catch (err) {
      if (!isProtocolError(err)) throw err
      const code = err.code === 'PARENT_MISMATCH' ? 'PARENT_MISMATCH' : 'CONTRIBUTION_MISMATCH'
      for (const peer of liable) this.#modules.host.penalize(peer, code)
      throw new RoundError(code, err.message, { cause: err })
    }
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
}
