// The TrainerSession facade as the node uses it: determinism given the seed, weights in and
// out, excluded items never reaching a batch, a fixed evalLoss, and bit-exact resume from
// exported state.
import { beforeAll, describe, expect, it } from 'vitest'
import { initBackend } from '../../trainer/backend.ts'
import type { ImageDataset } from '../../trainer/data.ts'
import { TrainerError } from '../../trainer/errors.ts'
import { createTrainerSession } from '../../trainer/session.ts'
import type { NamedTensor } from '../../trainer/types.ts'
import { smallConfig, twemojiDataset } from './helpers.ts'

let dataset: ImageDataset
const config = smallConfig()

beforeAll(async () => {
  await initBackend('auto')
  dataset = (await twemojiDataset(2, 16, ['flags', 'food-drink', 'objects', 'symbols'])).dataset
})

function expectSameWeights(a: NamedTensor[], b: NamedTensor[]): void {
  expect(a.map((t) => t.name)).toEqual(b.map((t) => t.name))
  a.forEach((t, i) =>
    expect(
      Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength).equals(
        Buffer.from(
          (b[i] as NamedTensor).data.buffer,
          (b[i] as NamedTensor).data.byteOffset,
          (b[i] as NamedTensor).data.byteLength,
        ),
      ),
    ).toBe(true),
  )
}

function differs(a: NamedTensor[], b: NamedTensor[]): boolean {
  return a.some((t, i) => t.data.some((v, j) => v !== (b[i] as NamedTensor).data[j]))
}

describe('TrainerSession', () => {
  it('same seed, same data -> bit-identical weights and losses; another seed -> different ones', async () => {
    const run = async (seed: number) => {
      const session = await createTrainerSession({ config, phase: 'autoencoder', dataset, seed })
      const losses: number[] = []
      await session.trainSteps(4, (s) => losses.push(s.loss))
      const weights = await session.getWeights()
      session.dispose()
      return { losses, weights }
    }
    const a = await run(7)
    const b = await run(7)
    const c = await run(8)
    expect(b.losses).toEqual(a.losses)
    expectSameWeights(a.weights, b.weights)
    expect(differs(a.weights, c.weights)).toBe(true)
  })

  it('getWeights returns sorted copies; setWeights replaces exactly and rejects mismatched tensors', async () => {
    const session = await createTrainerSession({ config, phase: 'autoencoder', dataset, seed: 1 })
    const weights = await session.getWeights()
    expect(weights.map((w) => w.name)).toEqual([...weights.map((w) => w.name)].sort())
    ;(weights[0] as NamedTensor).data[0] = 1234 // a copy: the session is unaffected
    expect((await session.getWeights())[0]?.data[0]).not.toBe(1234)
    const other = await createTrainerSession({ config, phase: 'autoencoder', dataset, seed: 2 })
    await session.setWeights(await other.getWeights())
    expectSameWeights(await session.getWeights(), await other.getWeights())
    const missing = (await other.getWeights()).slice(1)
    await expect(session.setWeights(missing)).rejects.toThrow(TrainerError)
    const wrongShape = (await other.getWeights()).map((w) =>
      w.shape.length === 4 ? { ...w, shape: [w.data.length], data: w.data } : w,
    )
    await expect(session.setWeights(wrongShape)).rejects.toThrow(/shape/)
    session.dispose()
    other.dispose()
  })

  it('evalLoss is fixed: same weights -> same value, whatever the training stream did in between', async () => {
    const session = await createTrainerSession({ config, phase: 'autoencoder', dataset, seed: 3 })
    const start = await session.getWeights()
    const before = await session.evalLoss()
    expect(await session.evalLoss()).toBe(before)
    await session.trainSteps(2)
    expect(await session.evalLoss()).not.toBe(before)
    await session.setWeights(start)
    expect(await session.evalLoss()).toBe(before)
    session.dispose()
  })

  it('excluded items never reach a batch again, in training or evaluation', async () => {
    // Poison one image with NaN: if it is ever used, the loss is NaN and the session throws.
    const poisoned = structuredClone(dataset)
    const stride = 16 * 16 * 3
    poisoned.pixels.fill(Number.NaN, 0, stride)
    const victim = (poisoned.items[0] as { sha256: string }).sha256
    const ae = await createTrainerSession({ config, phase: 'autoencoder', dataset, seed: 5 })
    const autoencoder = await ae.getWeights()
    ae.dispose()
    for (const phase of ['autoencoder', 'unet'] as const) {
      const clean = await createTrainerSession({ config, phase, dataset: poisoned, seed: 5, autoencoder })
      clean.excludeItems([victim])
      await clean.trainSteps(12) // 48 draws over 7 eligible images: every one is drawn
      expect(Number.isFinite(await clean.evalLoss())).toBe(true)
      clean.dispose()
      const control = await createTrainerSession({ config, phase, dataset: poisoned, seed: 5, autoencoder })
      await expect(control.trainSteps(12)).rejects.toMatchObject({ code: 'NON_FINITE_LOSS' })
      control.dispose()
    }
  })

  it('exportState/importState resume bit-exactly: k + k steps equal 2k uninterrupted (both phases)', async () => {
    const ae = await createTrainerSession({ config, phase: 'autoencoder', dataset, seed: 11 })
    await ae.trainSteps(3)
    const autoencoder = await ae.getEmaWeights()
    ae.dispose()
    for (const phase of ['autoencoder', 'unet'] as const) {
      const options = { config, phase, dataset, seed: 4, autoencoder }
      const straight = await createTrainerSession(options)
      await straight.trainSteps(6)
      const first = await createTrainerSession(options)
      await first.trainSteps(3)
      const state = await first.exportState()
      first.dispose()
      const resumed = await createTrainerSession(options)
      await resumed.importState(state)
      expect(resumed.step()).toBe(3)
      await resumed.trainSteps(3)
      expectSameWeights(await resumed.getWeights(), await straight.getWeights())
      expectSameWeights(await resumed.getEmaWeights(), await straight.getEmaWeights())
      expect(resumed.samplesSeen()).toBe(straight.samplesSeen())
      straight.dispose()
      resumed.dispose()
    }
  })

  it('refuses the U-Net phase without an autoencoder and a resume onto other data', async () => {
    await expect(createTrainerSession({ config, phase: 'unet', dataset, seed: 1 })).rejects.toMatchObject({
      code: 'AUTOENCODER_REQUIRED',
    })
    const a = await createTrainerSession({ config, phase: 'autoencoder', dataset, seed: 1 })
    const state = await a.exportState()
    a.dispose()
    const fewer = { ...dataset, items: dataset.items.slice(1), pixels: dataset.pixels.slice(16 * 16 * 3) }
    const b = await createTrainerSession({ config, phase: 'autoencoder', dataset: fewer, seed: 1 })
    await expect(b.importState(state)).rejects.toMatchObject({ code: 'RESUME_MISMATCH' })
    b.dispose()
  })

  it('rejects dataset classes the model does not know', async () => {
    const renamed = { ...dataset, classes: ['flags', 'food-drink', 'objects', 'no-such-class'] }
    await expect(
      createTrainerSession({ config, phase: 'autoencoder', dataset: renamed, seed: 1 }),
    ).rejects.toMatchObject({ code: 'UNKNOWN_CLASS' })
  })
})
