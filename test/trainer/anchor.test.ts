// Null-label anchoring (trainer/anchor.ts): a U-Net session given a round's base trains without
// class dropout and holds its null-label predictions at that base. Real tfjs wasm sessions on real
// Twemoji images, on one thread and two (the worker thread gets the base too).
import * as tf from '@tensorflow/tfjs-core'
import { beforeAll, describe, expect, it } from 'vitest'
import { initBackend } from '../../trainer/backend.ts'
import type { ImageDataset } from '../../trainer/data.ts'
import { Rng } from '../../trainer/rng.ts'
import { createTrainerSession } from '../../trainer/session.ts'
import type { NamedTensor } from '../../trainer/types.ts'
import { createUnet, nullClass, unetForward } from '../../trainer/unet.ts'
import { latentSize } from '../../trainer/autoencoder.ts'
import { maxAbsDifference, smallConfig, twemojiDataset } from './helpers.ts'

const plain = smallConfig({ 'unet.batchSize': 8 })
const noDropout = smallConfig({ 'unet.batchSize': 8, 'unet.classDropProb': 0 })
const anchored = smallConfig({ 'unet.batchSize': 8, 'unet.nullAnchor': 1 })
let dataset: ImageDataset
let autoencoder: NamedTensor[]
let base: NamedTensor[]

beforeAll(async () => {
  await initBackend('wasm')
  dataset = (await twemojiDataset(2, 16, ['flags', 'food-drink', 'objects', 'symbols'])).dataset
  const ae = await createTrainerSession({ config: plain, phase: 'autoencoder', dataset, seed: 2, threads: 1 })
  await ae.trainSteps(2)
  autoencoder = await ae.getEmaWeights()
  ae.dispose()
  // A base with a non-trivial function: the output conv (and every residual branch's last conv) is
  // zero-initialised, which would make every label's prediction the same.
  const store = createUnet(plain, 5)
  base = (await store.read()).map((t) => ({
    ...t,
    data: t.data.map((v, i) => (v === 0 ? Math.sin(i) * 0.05 : v)),
  }))
  store.dispose()
})

async function train(
  config: typeof plain,
  options: { threads: number; steps: number; setBase: boolean },
): Promise<{ losses: number[]; weights: NamedTensor[] }> {
  const session = await createTrainerSession({
    config,
    phase: 'unet',
    dataset,
    seed: 9,
    autoencoder,
    threads: options.threads,
  })
  try {
    if (options.setBase) await session.setWeights(base, { roundBase: true })
    const losses: number[] = []
    await session.trainSteps(options.steps, (s) => losses.push(s.loss))
    return { losses, weights: await session.getWeights() }
  } finally {
    session.dispose()
  }
}

/** RMS difference of the predictions of two weight sets (for these labels, and labelsB for b), on fixed noised latents. */
function predictionChange(
  config: typeof plain,
  a: NamedTensor[],
  b: NamedTensor[],
  labels: number[],
  labelsB: number[] = labels,
): number {
  const load = (weights: NamedTensor[]) => {
    const store = createUnet(config, 0)
    store.write(weights)
    return store
  }
  const [sa, sb] = [load(a), load(b)]
  try {
    const s = latentSize(config)
    const z = config.autoencoder.latentChannels
    const x = new Rng(3).normals(labels.length * s * s * z)
    const timesteps = labels.map((_, i) => (i * 97) % config.diffusion.timesteps)
    return tf.tidy(() => {
      const input = tf.tensor4d(x, [labels.length, s, s, z])
      const pa = unetForward(sa, config, input, timesteps, labels)
      const pb = unetForward(sb, config, input, timesteps, labelsB)
      return Math.sqrt(tf.mean(tf.squaredDifference(pa, pb)).dataSync()[0] as number)
    })
  } finally {
    sa.dispose()
    sb.dispose()
  }
}

describe('a U-Net session with nullAnchor', () => {
  it('trains exactly as without it until it is given a base (central training)', async () => {
    const a = await train(anchored, { threads: 1, steps: 3, setBase: false })
    const b = await train(plain, { threads: 1, steps: 3, setBase: false })
    expect(a.losses).toEqual(b.losses)
    a.weights.forEach((t, i) => expect(maxAbsDifference(t.data, b.weights[i]!.data)).toBe(0))
  })

  it('given a base: no class dropout, nothing added at the base, then a positive term', async () => {
    const a = await train(anchored, { threads: 1, steps: 3, setBase: true })
    const b = await train(noDropout, { threads: 1, steps: 3, setBase: true })
    // Step 1 starts at the base: the null-label predictions are the base's, exactly, and the rows
    // keep their labels as with no dropout at all (the same batches: the dropout draw is still made).
    expect(a.losses[0]).toBe(b.losses[0])
    // Later steps pay for moving them.
    expect(a.losses[2]).toBeGreaterThan(b.losses[2] as number)
    const moved = Math.max(...a.weights.map((t, i) => maxAbsDifference(t.data, b.weights[i]!.data)))
    expect(moved).toBeGreaterThan(1e-5)
  })

  it('holds the null label near the base, so its own classes learn apart from it', async () => {
    const steps = 12
    const a = await train(anchored, { threads: 1, steps, setBase: true })
    const b = await train(plain, { threads: 1, steps, setBase: true })
    const classes = plain.classes
    const own = ['flags', 'food-drink', 'objects', 'symbols'].map((c) => classes.indexOf(c))
    const labels = Array.from({ length: 16 }, (_, i) => own[i % own.length] as number)
    const nulls = labels.map(() => nullClass(plain))
    const nullMoved = {
      anchored: predictionChange(plain, a.weights, base, nulls),
      plain: predictionChange(plain, b.weights, base, nulls),
    }
    const ownVsNull = {
      anchored: predictionChange(plain, a.weights, a.weights, labels, nulls),
      plain: predictionChange(plain, b.weights, b.weights, labels, nulls),
    }
    console.log(
      `after ${steps} steps: null-label change ${nullMoved.anchored.toFixed(4)} anchored vs ${nullMoved.plain.toFixed(4)}; own labels against null ${ownVsNull.anchored.toFixed(4)} vs ${ownVsNull.plain.toFixed(4)}`,
    )
    expect(nullMoved.anchored).toBeLessThan(0.7 * nullMoved.plain)
    expect(ownVsNull.anchored).toBeGreaterThan(ownVsNull.plain)
  })

  it('gives the worker thread the base: 1 thread and 2 threads agree to float rounding', async () => {
    const one = await train(anchored, { threads: 1, steps: 3, setBase: true })
    const two = await train(anchored, { threads: 2, steps: 3, setBase: true })
    one.losses.forEach((loss, i) => expect(Math.abs(loss - (two.losses[i] as number))).toBeLessThan(1e-5))
    const lr = anchored.unet.lr
    one.weights.forEach((t, i) =>
      expect(maxAbsDifference(t.data, two.weights[i]!.data)).toBeLessThan(lr * 0.05),
    )
    // And the 2-thread run anchored: it differs from an unanchored one as the 1-thread run does.
    const plainTwo = await train(noDropout, { threads: 2, steps: 3, setBase: true })
    expect(Math.abs((two.losses[2] as number) - (plainTwo.losses[2] as number))).toBeGreaterThan(1e-5)
  })
})
