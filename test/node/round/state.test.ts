// The round state's commit points and its one ancestors() walk, over a real LevelDB: what is
// committed survives a reopen, and lineage queries stop at the first parent this node lacks.
import { readFile, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { createContribution, verifyContribution } from '../../../protocol/contribution.ts'
import { generateKey } from '../../../protocol/keys.ts'
import { componentLogger } from '../../../node/log.ts'
import { RoundState } from '../../../node/round/state.ts'
import { openStore } from '../../../node/store/store.ts'
import { charterContent } from '../../protocol/fixtures.ts'
import { randomDigest } from '../helpers/consent.ts'
import { adopt, openState, publisher } from '../helpers/round.ts'

const charter = charterContent({
  threshold: 1,
  phases: { autoencoder: { mode: 'cooperative', rounds: 1 }, unet: { rounds: 3 } },
})

describe('RoundState', () => {
  const dirs: string[] = []
  afterEach(async () => {
    for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true })
  })

  it('walks ancestors newest first, stops at a missing parent, and unions their exclusions', async () => {
    const { state, store, dir } = await openState(charter)
    dirs.push(dir)
    const [r1, r2] = [randomDigest(), randomDigest()]
    const [m1, i1] = [randomDigest(), randomDigest()]
    const { record: genesis } = await adopt(state, { round: 1 }, { revocations: [r1], items: [i1] })
    const { record: second } = await adopt(
      state,
      {
        round: 2,
        parent: { checkpoint: genesis.files.model, provenance: genesis.id },
        contributions: [
          { statement: randomDigest(), contributor: publisher, delta: randomDigest(), manifests: [] },
        ],
      },
      { revocations: [r2], expiredManifests: [m1] },
    )
    // A checkpoint whose parent this node never adopted (it was down for that round).
    const { record: orphan } = await adopt(state, {
      round: 4,
      parent: { checkpoint: randomDigest(), provenance: randomDigest() },
      contributions: [
        { statement: randomDigest(), contributor: publisher, delta: randomDigest(), manifests: [] },
      ],
    })
    expect([...state.ancestors(second)].map((c) => c.id)).toEqual([second.id, genesis.id])
    expect([...state.ancestors(orphan)].map((c) => c.id)).toEqual([orphan.id])
    const chain = state.chainExclusions(second)
    expect([...chain.revocations].sort()).toEqual([r1, r2].sort())
    expect([...chain.expiredManifests]).toEqual([m1])
    expect([...chain.items]).toEqual([i1])
    expect(state.openRound()).toBe(1)
    await store.close()
  })

  it('keeps what its commit points wrote across a reopen, and points latest.json at the newest checkpoint', async () => {
    const { state, store, dir } = await openState(charter)
    dirs.push(dir)
    const { record: aeGenesis } = await adopt(state, { phase: 'autoencoder', round: 0 })
    const { record: ae1 } = await adopt(state, {
      phase: 'autoencoder',
      round: 1,
      parent: { checkpoint: aeGenesis.files.model, provenance: aeGenesis.id },
      contributions: [
        { statement: randomDigest(), contributor: publisher, delta: randomDigest(), manifests: [] },
      ],
    })
    const envelope = createContribution(
      {
        coop: state.coopId,
        round: 2,
        phase: 'unet',
        baseCheckpoint: randomDigest(),
        manifests: [randomDigest()],
        itemsRoot: randomDigest(),
        itemCount: 3,
        samples: 96,
        localSteps: 8,
        loss: 0.25,
        codec: { kind: 'int8' },
        delta: randomDigest(),
      },
      generateKey(),
    )
    const contribution = await state.persistContribution(verifyContribution(envelope), envelope)
    const latest = JSON.parse(await readFile(join(dir, 'checkpoints', 'latest.json'), 'utf8')) as {
      autoencoder?: { id: string }
    }
    expect(latest.autoencoder?.id).toBe(ae1.id)
    await store.close()

    const reopened = await openStore(dir)
    const again = new RoundState(
      {
        charter,
        coopId: state.coopId,
        charterEnvelope: { payload: '', payloadType: 'x', signatures: [] },
        peerId: 'p',
      },
      { store: reopened, log: componentLogger('test') },
    )
    await again.load()
    expect(again.checkpoints().map((c) => c.id)).toEqual([aeGenesis.id, ae1.id])
    expect(again.contributionsFor(2).map((c) => c.id)).toEqual([contribution.id])
    expect(again.autoencoderCheckpoint()?.id).toBe(ae1.id)
    // The U-Net genesis is the publisher's to sign: round 2 is open only once it exists.
    expect(again.openRound()).toBe(2)
    await reopened.close()
  })
})
