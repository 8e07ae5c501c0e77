// It learns: on a small real Twemoji subset with the `tiny` config, the autoencoder's held-out
// reconstruction MSE falls under a quarter of its initial value, then the U-Net's denoising
// loss at fixed timesteps and noise on a held-out batch falls by at least 30%.
import { beforeAll, describe, expect, it } from 'vitest'
import { loadConfig } from '../../configs/index.ts'
import { initBackend } from '../../trainer/backend.ts'
import type { ImageDataset } from '../../trainer/data.ts'
import { createTrainerSession } from '../../trainer/session.ts'
import type { NamedTensor } from '../../trainer/types.ts'
import { twemojiDataset } from './helpers.ts'

const config = loadConfig('tiny')
const STEPS = 150
let dataset: ImageDataset
let autoencoder: NamedTensor[]

beforeAll(async () => {
  await initBackend('auto')
  // 6 per category x 9 categories = 54 images: enough that 5 are held out of training.
  dataset = (await twemojiDataset(6, config.image.size)).dataset
})

describe('tiny on Twemoji', () => {
  it(`autoencoder: held-out reconstruction MSE < 1/4 of initial after ${STEPS} steps`, async () => {
    const session = await createTrainerSession({ config, phase: 'autoencoder', dataset, seed: 1 })
    const initial = await session.evalLoss()
    await session.trainSteps(STEPS)
    const final = await session.evalLoss()
    autoencoder = await session.getEmaWeights()
    session.dispose()
    console.log(
      `autoencoder held-out MSE ${initial.toFixed(4)} -> ${final.toFixed(4)} (${((final / initial) * 100).toFixed(1)}%)`,
    )
    expect(final).toBeLessThan(initial / 4)
  })

  it(`U-Net: held-out denoising loss at fixed timesteps falls by >= 30% after ${STEPS} steps`, async () => {
    const session = await createTrainerSession({ config, phase: 'unet', dataset, seed: 1, autoencoder })
    const initial = await session.evalLoss()
    await session.trainSteps(STEPS)
    const final = await session.evalLoss()
    session.dispose()
    console.log(
      `U-Net held-out loss ${initial.toFixed(4)} -> ${final.toFixed(4)} (${((1 - final / initial) * 100).toFixed(1)}% lower)`,
    )
    expect(final).toBeLessThanOrEqual(initial * 0.7)
  })
})
