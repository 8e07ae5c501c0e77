// A peer checks an announced rollback checkpoint against its own lineage before adopting it
// (node/round/rollback.ts), over a real RoundState in LevelDB. The honest rollback is adopted;
// each way a publisher could lie (a base that used the items, a base older than needed, a
// superseded list that hides a checkpoint, a receipt that disagrees with the provenance) is
// refused with BAD_ROLLBACK and a penalty; a revocation not yet received is a retry, not a fault.
// A receipt must answer exactly what the checkpoint's exclusion details list (or, with only the
// signed summary at hand, its counts and items root).
import { rm } from 'node:fs/promises'
import { afterEach, describe, expect, it } from 'vitest'
import { sha256Digest } from '../../../protocol/digest.ts'
import { envelopeBytes } from '../../../protocol/dsse.ts'
import { summarizeExclusions } from '../../../protocol/exclusions.ts'
import { createReceipt } from '../../../protocol/receipt.ts'
import type { Fetcher } from '../../../node/round/fetcher.ts'
import { componentLogger } from '../../../node/log.ts'
import type { CheckpointRecord } from '../../../node/round/records.ts'
import { verifyRollbackCheckpoint } from '../../../node/round/rollback-verify.ts'
import type { RoundState } from '../../../node/round/state.ts'
import { RECEIPT_FILE } from '../../../node/round/unlearning.ts'
import { receiptMatchesExclusions } from '../../../node/round/unlearning-files.ts'
import { charterContent, publisherA } from '../../protocol/fixtures.ts'
import { randomDigest } from '../helpers/consent.ts'
import { adopt, openState, publisher, signProvenance } from '../helpers/round.ts'

const charter = charterContent({
  threshold: 1,
  publishers: [publisher],
  phases: { autoencoder: { mode: 'cooperative', rounds: 1 }, unet: { rounds: 4 } },
  onRevocation: 'rollback',
})

const [X, Y, Z] = [randomDigest(), randomDigest(), randomDigest()].sort()
const ALICE = randomDigest() // manifest holding X and Y
const BOB = randomDigest() // manifest holding Z
const REVOCATION = randomDigest()

const consent = (known: string[] = [REVOCATION]) => ({
  manifests: () =>
    [
      { id: ALICE, items: [X, Y] },
      { id: BOB, items: [Z] },
    ].map((m) => ({ verified: { digest: m.id, items: m.items.map((digest) => ({ digest })) } })) as never,
  revocations: () => known.map((digest) => ({ digest })) as never,
  revokedItems: () => new Set(known.length > 0 ? [X] : []),
})

const contribution = (manifests: string[]) => ({
  statement: randomDigest(),
  contributor: publisher,
  delta: randomDigest(),
  manifests,
})

/** unet genesis g (round 1) -> u2 (used `second`) -> u3 (used `third`). */
async function history(second: string[], third: string[]) {
  const { state, store, dir } = await openState(charter)
  const { record: g } = await adopt(state, { round: 1 })
  const link = (c: CheckpointRecord) => ({ checkpoint: c.files.model, provenance: c.id })
  const { record: u2 } = await adopt(state, {
    round: 2,
    parent: link(g),
    contributions: [contribution(second)],
    manifests: second,
  })
  const { record: u3 } = await adopt(state, {
    round: 3,
    parent: link(u2),
    contributions: [contribution(third)],
    manifests: third,
  })
  return { state, store, dir, g, u2, u3 }
}

/** A rollback checkpoint for round 4 onto `base`, with its receipt stored as a blob. */
async function rollbackTo(
  state: RoundState,
  base: CheckpointRecord,
  superseded: CheckpointRecord[],
  change: { receiptItems?: string[] } = {},
) {
  const receipt = createReceipt(
    {
      files: {
        'model.safetensors': base.files.model,
        'momentum.safetensors': base.files.momentum,
        'config.json': base.files.config,
      },
      coop: state.coopId,
      phase: 'unet',
      round: 4,
      newBase: { checkpoint: base.files.model, provenance: base.id, round: base.round },
      superseded: superseded.map((c) => ({ provenance: c.id, round: c.round })),
      revocations: [REVOCATION],
      revokedItems: change.receiptItems ?? [X],
      createdAt: '2026-06-01T00:00:00Z',
    },
    [publisherA],
  )
  const receiptBytes = envelopeBytes(receipt)
  await state.store.putBlob(receiptBytes)
  return signProvenance(
    state,
    {
      round: 4,
      parent: { checkpoint: base.files.model, provenance: base.id },
      files: {
        'model.safetensors': base.files.model,
        'momentum.safetensors': base.files.momentum,
        'config.json': sha256Digest(state.configBytes('unet', 4, [])),
        [RECEIPT_FILE]: sha256Digest(receiptBytes),
      },
    },
    { revocations: [REVOCATION], items: [X] },
  )
}

async function check(state: RoundState, signed: ReturnType<typeof signProvenance>, known?: string[]) {
  const penalties: string[] = []
  const fetcher = {
    async requireBlob(digest: string) {
      const bytes = await state.store.getBlob(digest)
      if (bytes === undefined) throw new Error(`no blob ${digest}`)
      return bytes
    },
  } as unknown as Fetcher
  const outcome = await verifyRollbackCheckpoint(
    {
      state,
      fetcher,
      consent: consent(known),
      host: { penalize: (peer: string) => void penalties.push(peer) },
      log: componentLogger('test'),
    },
    { ...signed, from: publisher },
    signed.exclusions,
  ).then(
    (record) => ({ record, code: undefined }),
    (err: { code?: string }) => ({ record: undefined, code: err.code }),
  )
  return { ...outcome, penalties }
}

describe('checking a rollback checkpoint', () => {
  const dirs: string[] = []
  afterEach(async () => {
    for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true })
  })

  it('adopts a rollback to the newest clean checkpoint, superseding exactly the ones after it', async () => {
    const h = await history([ALICE], [ALICE, BOB])
    dirs.push(h.dir)
    const result = await check(h.state, await rollbackTo(h.state, h.g, [h.u2, h.u3]))
    expect(result.code).toBeUndefined()
    expect(result.record?.verification).toBe('rollback')
    expect(h.state.checkpointAt('unet', 4)?.predicate.parent?.provenance).toBe(h.g.id)
    expect(await h.state.store.getBlob(result.record!.files.model)).toBeDefined()
  })

  const refused: [
    string,
    (h: Awaited<ReturnType<typeof history>>) => Promise<ReturnType<typeof signProvenance>>,
    string[],
    string[],
  ][] = [
    ['a new base whose lineage used the item', (h) => rollbackTo(h.state, h.u2, [h.u3]), [ALICE], [ALICE]],
    [
      'a new base older than the newest clean one',
      (h) => rollbackTo(h.state, h.g, [h.u2, h.u3]),
      [BOB],
      [ALICE],
    ],
    ['a superseded list that hides a checkpoint', (h) => rollbackTo(h.state, h.g, [h.u2]), [ALICE], [ALICE]],
    [
      'a receipt whose items differ from the provenance',
      (h) => rollbackTo(h.state, h.g, [h.u2, h.u3], { receiptItems: [X, Y] }),
      [ALICE],
      [ALICE],
    ],
  ]
  for (const [name, forge, second, third] of refused)
    it(`refuses ${name}, and penalises the publisher`, async () => {
      const h = await history(second, third)
      dirs.push(h.dir)
      const result = await check(h.state, await forge(h))
      expect(result.code).toBe('BAD_ROLLBACK')
      expect(result.penalties).toEqual([publisher])
      expect(h.state.checkpointAt('unet', 4)).toBeUndefined()
    })

  it('waits for a revocation it has not received yet, without blaming the publisher', async () => {
    const h = await history([ALICE], [ALICE])
    dirs.push(h.dir)
    const result = await check(h.state, await rollbackTo(h.state, h.g, [h.u2, h.u3]), [])
    expect(result.code).toBe('ROLLBACK_PENDING')
    expect(result.penalties).toEqual([])
  })
})

describe('a receipt against the exclusions its rollback checkpoint signs', () => {
  const [R1, R2] = [randomDigest(), randomDigest()].sort()
  const signed = summarizeExclusions({ revocations: [R1!], expiredManifests: [], items: [X!, Y!] })
  const receipt = { revocations: [R1!], revokedItems: [X!, Y!] }
  const table: [string, { revocations: string[]; revokedItems: string[] }, boolean, boolean][] = [
    // name, receipt, with the checked details, with the summary only
    ['the same revocations and items', receipt, true, true],
    ['an item missing', { ...receipt, revokedItems: [X!] }, false, false],
    ['an item swapped for another', { ...receipt, revokedItems: [X!, Z!] }, false, false],
    ['another revocation of the same count', { ...receipt, revocations: [R2!] }, false, true],
    ['an extra revocation', { ...receipt, revocations: [R1!, R2!] }, false, false],
  ]
  for (const [name, r, withDetails, summaryOnly] of table)
    it(`${name}: details ${withDetails}, summary only ${summaryOnly}`, () => {
      expect(receiptMatchesExclusions(r, signed.summary, signed.details)).toBe(withDetails)
      expect(receiptMatchesExclusions(r, signed.summary, undefined)).toBe(summaryOnly)
    })
})
