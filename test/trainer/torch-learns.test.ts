// It learns on the torch backend too: trainer/learns.test.ts's `tiny` run on real Twemoji, with every step
// computed by the PyTorch worker. The autoencoder's held-out MSE falls under a quarter of its initial value,
// then the U-Net's held-out denoising loss falls by at least 30%.
import { beforeAll, describe, expect, it } from 'vitest'
import { loadConfig } from '../../configs/index.ts'
import { initBackend } from '../../trainer/backend.ts'
import type { ImageDataset } from '../../trainer/data.ts'
import { createTorchSession } from '../../trainer/torch/session.ts'
import type { TorchRuntime } from '../../trainer/torch/probe.ts'
import type { NamedTensor } from '../../trainer/types.ts'
import { twemojiDataset } from './helpers.ts'
import { TORCH_TEST_TIMEOUT_MS, torchRuntime } from './torch-helpers.ts'

const config = loadConfig('tiny')
const STEPS = 150
let dataset: ImageDataset
let runtime: TorchRuntime
let autoencoder: NamedTensor[]

beforeAll(async () => {
  await initBackend('wasm')
  runtime = await torchRuntime()
  dataset = (await twemojiDataset(6, config.image.size)).dataset
}, TORCH_TEST_TIMEOUT_MS)

describe('tiny on Twemoji, torch backend', { timeout: TORCH_TEST_TIMEOUT_MS }, () => {
  it(`autoencoder: held-out reconstruction MSE < 1/4 of initial after ${STEPS} steps`, async () => {
    const session = await createTorchSession({ config, phase: 'autoencoder', dataset, seed: 1 }, runtime)
    const initial = await session.evalLoss()
    await session.trainSteps(STEPS)
    const final = await session.evalLoss()
    autoencoder = await session.getEmaWeights()
    session.dispose()
    console.log(
      `torch autoencoder held-out MSE ${initial.toFixed(4)} -> ${final.toFixed(4)} (${((final / initial) * 100).toFixed(1)}%)`,
    )
    expect(final).toBeLessThan(initial / 4)
  })

  it(`U-Net: held-out denoising loss at fixed timesteps falls by >= 30% after ${STEPS} steps`, async () => {
    const session = await createTorchSession(
      { config, phase: 'unet', dataset, seed: 1, autoencoder },
      runtime,
    )
    const initial = await session.evalLoss()
    await session.trainSteps(STEPS)
    const final = await session.evalLoss()
    session.dispose()
    console.log(
      `torch U-Net held-out loss ${initial.toFixed(4)} -> ${final.toFixed(4)} (${((1 - final / initial) * 100).toFixed(1)}% lower)`,
    )
    expect(final).toBeLessThanOrEqual(initial * 0.7)
  })
})
