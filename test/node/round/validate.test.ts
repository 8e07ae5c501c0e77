// The round's semantic checks (node/round/validate.ts), one table row per code, on real signed
// statements and a real RoundState and ConsentBook over LevelDB in a temp dir.
import { readFile, rm } from 'node:fs/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createContribution, verifyContribution } from '../../../protocol/contribution.ts'
import { generateKey, peerIdString, type Ed25519PrivateKey } from '../../../protocol/keys.ts'
import { manifestDigest, type ConsentManifest } from '../../../protocol/manifest.ts'
import type { ProvenancePredicate } from '../../../protocol/provenance.ts'
import { verifyRevocation } from '../../../protocol/revocation.ts'
import { ConsentBook } from '../../../node/consent/book.ts'
import { componentLogger } from '../../../node/log.ts'
import { GossipValidationError } from '../../../node/p2p/gossip-errors.ts'
import type { RoundState } from '../../../node/round/state.ts'
import { validateCheckpoint, validateContribution } from '../../../node/round/validate.ts'
import { loadConfig } from '../../../configs/index.ts'
import type { CoopCharter } from '../../../protocol/charter.ts'
import { charterContent } from '../../protocol/fixtures.ts'
import { manifestFor, randomDigest, revocationOf } from '../helpers/consent.ts'
import { adopt, openState, publisher, signProvenance } from '../helpers/round.ts'

const log = componentLogger('test')
const holder = generateKey()

type Outcome = 'accept' | `${'IGNORE' | 'REJECT'} ${string}`

function outcome(check: () => void): Outcome {
  try {
    check()
    return 'accept'
  } catch (err) {
    if (!(err instanceof GossipValidationError)) throw err
    return `${err.action} ${err.code}`
  }
}

/** Every outcome the tables below assert, to check that each code validate.ts throws has a row. */
const contributionCodes: Outcome[] = []
const checkpointCodes: Outcome[] = []

interface ContributionRow {
  /** The statement already accepted (a re-announcement). */
  same?: true
  key?: Ed25519PrivateKey
  round?: number
  phase?: 'autoencoder' | 'unet'
  /** Default: the adopted checkpoint of round - 1. */
  base?: string
  manifests?: ConsentManifest[]
  codec?: object
  samples?: number
  now?: number
}

describe('validateContribution', () => {
  // One autoencoder round (1) and three U-Net rounds (2..4); the U-Net genesis is round 1.
  // A real model configuration: the samples bound is inner steps x the phase's batch size.
  const charter = charterContent({
    threshold: 1,
    model: loadConfig('tiny') as unknown as CoopCharter['model'],
    phases: { autoencoder: { mode: 'cooperative', rounds: 1 }, unet: { rounds: 3 } },
  })
  const maxSamples = charter.rounds.innerSteps * loadConfig('tiny').unet.batchSize
  const trainerKey = generateKey()
  const trainer = peerIdString(trainerKey.publicKey)
  const earlyKey = generateKey()
  let opened: Awaited<ReturnType<typeof openState>>
  let consent: ConsentBook
  let first: ReturnType<typeof statement>
  const manifests = {
    ok: manifestFor(holder, trainer),
    early: manifestFor(holder, peerIdString(earlyKey.publicKey)),
    foreign: manifestFor(holder, peerIdString(generateKey().publicKey)),
    revokedBefore: manifestFor(holder, trainer),
    revokedDuring: manifestFor(holder, trainer),
    expiring: manifestFor(holder, trainer, { validUntil: new Date(Date.now() + 3_600_000) }),
    expiredRecorded: manifestFor(holder, trainer, { validUntil: new Date(Date.now() + 3_600_000) }),
    notYetValid: manifestFor(holder, trainer, { validFrom: new Date(Date.now() + 86_400_000) }),
  }
  /** The charter's round deadline: a manifest may have expired that long ago and still be cited. */
  const graceMs = charter.rounds.deadlineSeconds * 1000

  beforeAll(async () => {
    opened = await openState(charter)
    const { state, store } = opened
    consent = new ConsentBook(
      { peerId: publisher, acceptedLicenses: ['CC-BY-4.0'], intendedUse: charter.intendedUse },
      { store, log },
    )
    // Fetched by digest, as a contribution citing them would make the node do: windows are judged below.
    for (const m of Object.values(manifests)) await consent.addManifest(m, false, { validityWindow: 'skip' })
    const revokedBefore = revocationOf(holder, manifests.revokedBefore)
    await consent.addRevocation(revokedBefore)
    await consent.addRevocation(revocationOf(holder, manifests.revokedDuring))
    // Chain: autoencoder genesis (0) and round 1, U-Net genesis (1) and round 2, which recorded
    // the first revocation and the end of one manifest's consent. Round 3 is open.
    const { record: aeGenesis } = await adopt(state, { phase: 'autoencoder', round: 0 })
    await adopt(state, {
      phase: 'autoencoder',
      round: 1,
      parent: { checkpoint: aeGenesis.files.model, provenance: aeGenesis.id },
    })
    const { record: unetGenesis } = await adopt(state, { phase: 'unet', round: 1 })
    await adopt(
      state,
      {
        phase: 'unet',
        round: 2,
        parent: { checkpoint: unetGenesis.files.model, provenance: unetGenesis.id },
      },
      {
        revocations: [verifyRevocation(revokedBefore).digest],
        expiredManifests: [manifestDigest(manifests.expiredRecorded)],
      },
    )
    // Another trainer already contributed to round 3.
    first = statement(state, { key: earlyKey, manifests: [manifests.early] })
    await state.persistContribution(first.verified, first.envelope)
  })

  afterAll(async () => {
    await opened.store.close()
    await rm(opened.dir, { recursive: true, force: true })
  })

  function statement(state: RoundState, row: ContributionRow) {
    const round = row.round ?? 3
    const phase = row.phase ?? 'unet'
    const base = row.base ?? state.checkpointAt(phase, round - 1)?.id ?? randomDigest()
    const envelope = createContribution(
      {
        coop: state.coopId,
        round,
        phase,
        baseCheckpoint: base,
        manifests: (row.manifests ?? [manifests.ok]).map((m) => manifestDigest(m)),
        itemsRoot: randomDigest(),
        itemCount: 3,
        samples: row.samples ?? 96,
        localSteps: 8,
        loss: 0.25,
        codec: (row.codec ?? { kind: 'int8' }) as { kind: 'int8' },
        delta: randomDigest(),
      },
      row.key ?? trainerKey,
    )
    return { envelope, verified: verifyContribution(envelope) }
  }

  const rows: [string, () => ContributionRow, Outcome][] = [
    ['a contribution to the open round, from its base, on valid consent', () => ({}), 'accept'],
    ['a re-announcement of an accepted contribution', () => ({ same: true }), 'accept'],
    [
      'a manifest revoked during the round (not yet recorded by the chain)',
      () => ({ manifests: [manifests.revokedDuring] }),
      'accept',
    ],
    ['exactly the samples the charter allows a round', () => ({ samples: maxSamples }), 'accept'],
    [
      'more samples than inner steps x batch size (an inflated weight)',
      () => ({ samples: maxSamples + 1 }),
      'REJECT SAMPLES_OUT_OF_RANGE',
    ],
    ['a round beyond the charter', () => ({ round: 5 }), 'REJECT ROUND_OUT_OF_WINDOW'],
    ['a phase that is not the round’s', () => ({ round: 1, phase: 'unet' }), 'REJECT SCHEMA'],
    [
      'a codec other than the charter’s',
      () => ({ codec: { kind: 'topk', fraction: 0.01 } }),
      'REJECT SCHEMA',
    ],
    ['a closed round', () => ({ round: 2 }), 'IGNORE ROUND_OUT_OF_WINDOW'],
    ['a round whose base is not adopted yet', () => ({ round: 4 }), 'IGNORE UNKNOWN_BASE'],
    ['another base than the round’s', () => ({ base: randomDigest() }), 'REJECT WRONG_BASE'],
    [
      'a second, different contribution from the same peer',
      () => ({ key: earlyKey, manifests: [manifests.early] }),
      'REJECT CONFLICT',
    ],
    [
      'a manifest this node has not seen',
      () => ({ manifests: [manifestFor(holder, trainer)] }),
      'IGNORE UNKNOWN_MANIFEST',
    ],
    [
      'a manifest naming another custodian',
      () => ({ manifests: [manifests.foreign] }),
      'REJECT FOREIGN_CUSTODIAN',
    ],
    [
      'a manifest whose consent ended during the round (the next checkpoint records it)',
      () => ({ manifests: [manifests.expiring], now: Date.now() + 3_600_000 + graceMs / 2 }),
      'accept',
    ],
    [
      'a manifest that ended more than a round ago by our clock (clocks differ: no charge)',
      () => ({ manifests: [manifests.expiring], now: Date.now() + 3_600_000 + graceMs + 60_000 }),
      'IGNORE EXPIRED',
    ],
    [
      'a manifest the chain recorded as expired before the round started',
      () => ({ manifests: [manifests.expiredRecorded] }),
      'REJECT EXPIRED',
    ],
    [
      'a manifest not valid yet by our clock',
      () => ({ manifests: [manifests.notYetValid] }),
      'IGNORE NOT_YET_VALID',
    ],
    [
      'a manifest revoked before the round started',
      () => ({ manifests: [manifests.revokedBefore] }),
      'REJECT REVOKED',
    ],
  ]

  it.each(rows.map(([name, row, expected]) => [name, expected, row] as const))(
    '%s: %s',
    (_, expected, row) => {
      const r = row()
      const { verified } = r.same === true ? first : statement(opened.state, r)
      expect(outcome(() => validateContribution(opened.state, consent, verified, r.now))).toBe(expected)
    },
  )

  it('names the unknown manifest and its custodian, for the handler to fetch after validation', () => {
    const unknown = manifestFor(holder, trainer)
    const { verified } = statement(opened.state, { manifests: [unknown] })
    try {
      validateContribution(opened.state, consent, verified)
      expect.unreachable('accepted')
    } catch (err) {
      expect(err).toMatchObject({
        code: 'UNKNOWN_MANIFEST',
        detail: { manifest: manifestDigest(unknown), custodian: trainer },
      })
    }
  })

  contributionCodes.push(...rows.map(([, , expected]) => expected))
})

interface CheckpointRow {
  /** The state the checkpoint arrives in. */
  on: 'running' | 'fresh' | 'component'
  predicate?: Partial<ProvenancePredicate>
  /** The adopted U-Net round 2 itself (a re-announcement). */
  same?: true
}

describe('validateCheckpoint', () => {
  const pinned = { checkpoint: randomDigest(), provenance: randomDigest() }
  const charters = {
    cooperative: charterContent({
      threshold: 1,
      phases: { autoencoder: { mode: 'cooperative', rounds: 1 }, unet: { rounds: 3 } },
    }),
    component: charterContent({
      threshold: 1,
      phases: { autoencoder: { mode: 'component', ...pinned }, unet: { rounds: 3 } },
    }),
  }
  const states: Partial<Record<CheckpointRow['on'], Awaited<ReturnType<typeof openState>>>> = {}
  let adopted: Awaited<ReturnType<typeof adopt>>

  beforeAll(async () => {
    states.running = await openState(charters.cooperative)
    states.fresh = await openState(charters.cooperative)
    states.component = await openState(charters.component)
    const { record: genesis } = await adopt(states.running.state, { phase: 'unet', round: 1 })
    adopted = await adopt(states.running.state, {
      phase: 'unet',
      round: 2,
      parent: { checkpoint: genesis.files.model, provenance: genesis.id },
      contributions: [
        { statement: randomDigest(), contributor: publisher, delta: randomDigest(), manifests: [] },
      ],
    })
  })

  afterAll(async () => {
    for (const opened of Object.values(states)) {
      await opened.store.close()
      await rm(opened.dir, { recursive: true, force: true })
    }
  })

  const child = (): Partial<ProvenancePredicate> => ({
    round: 3,
    parent: { checkpoint: adopted.record.files.model, provenance: adopted.record.id },
    contributions: [
      { statement: randomDigest(), contributor: publisher, delta: randomDigest(), manifests: [] },
    ],
  })
  const rows: [string, () => CheckpointRow, Outcome][] = [
    ['the next checkpoint of the chain', () => ({ on: 'running', predicate: child() }), 'accept'],
    ['a genesis on a fresh node', () => ({ on: 'fresh', predicate: { round: 1 } }), 'accept'],
    ['a re-announcement of an adopted checkpoint', () => ({ on: 'running', same: true }), 'accept'],
    [
      'a round before its phase’s genesis',
      () => ({ on: 'fresh', predicate: { round: 0 } }),
      'REJECT ROUND_OUT_OF_WINDOW',
    ],
    [
      'a round after its phase’s last',
      () => ({ on: 'fresh', predicate: { round: 5 } }),
      'REJECT ROUND_OUT_OF_WINDOW',
    ],
    [
      'a second, different checkpoint for an adopted round',
      () => ({ on: 'running', predicate: { ...child(), round: 2 } }),
      'IGNORE EQUIVOCATION',
    ],
    [
      'a genesis with a parent',
      () => ({
        on: 'fresh',
        predicate: { round: 1, parent: { checkpoint: randomDigest(), provenance: randomDigest() } },
      }),
      'REJECT SCHEMA',
    ],
    [
      'a later round without parent or contributions',
      () => ({ on: 'running', predicate: { round: 3 } }),
      'REJECT SCHEMA',
    ],
    [
      'a later round with a parent but no contributions',
      () => ({ on: 'running', predicate: { ...child(), contributions: [] } }),
      'REJECT SCHEMA',
    ],
    [
      'a U-Net checkpoint naming the charter’s component autoencoder',
      () => ({
        on: 'component',
        predicate: { round: 0, components: [{ role: 'autoencoder', ...pinned }] },
      }),
      'accept',
    ],
    [
      'a U-Net checkpoint naming another autoencoder than the charter pins',
      () => ({
        on: 'component',
        predicate: {
          round: 0,
          components: [{ role: 'autoencoder', checkpoint: randomDigest(), provenance: pinned.provenance }],
        },
      }),
      'REJECT SCHEMA',
    ],
  ]

  it.each(rows.map(([name, row, expected]) => [name, expected, row] as const))(
    '%s: %s',
    (_, expected, row) => {
      const r = row()
      const state = states[r.on]?.state as RoundState
      const verified = r.same === true ? adopted.verified : signProvenance(state, r.predicate ?? {}).verified
      expect(outcome(() => validateCheckpoint(state, verified))).toBe(expected)
    },
  )
  checkpointCodes.push(...rows.map(([, , expected]) => expected))
})

describe('the validate.ts tables', () => {
  it('have a row for every code validate.ts throws, and for acceptance', async () => {
    const source = await readFile(new URL('../../../node/round/validate.ts', import.meta.url), 'utf8')
    const thrown = new Set(
      [...source.matchAll(/\b(reject|ignore)\('([A-Z_]+)'/g)].map((m) => `${m[1]?.toUpperCase()} ${m[2]}`),
    )
    const covered = new Set([...contributionCodes, ...checkpointCodes])
    expect([...thrown].filter((code) => !covered.has(code as Outcome))).toEqual([])
    expect(covered.has('accept')).toBe(true)
  })
})
