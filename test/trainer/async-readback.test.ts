// No synchronous readback on the train, eval and sample paths: every step, evaluation, weight read,
// state export, latent encoding and sampling runs with Tensor.dataSync/arraySync/bufferSync made to
// throw. On WebGPU such a read either stalls the device pipeline or fails in Node (test/trainer/
// webgpu.test.ts runs the same paths there); here the cpu and wasm backends run them quickly.
import { beforeAll, describe, expect, it } from 'vitest'
import * as tf from '@tensorflow/tfjs-core'
import { initBackend } from '../../trainer/backend.ts'
import type { ImageDataset } from '../../trainer/data.ts'
import { reconstructionGrid, sampleGrid } from '../../trainer/sample.ts'
import { createTrainerSession } from '../../trainer/session.ts'
import { smallConfig, twemojiDataset } from './helpers.ts'
import { withoutSyncReadback } from './helpers-sync.ts'

const config = smallConfig({ 'diffusion.samplingSteps': 2 })
let dataset: ImageDataset

beforeAll(async () => {
  await initBackend('cpu')
  dataset = (await twemojiDataset(2, 16, ['flags', 'food-drink', 'objects', 'symbols'])).dataset
})

describe('no synchronous readback', () => {
  it('the guard itself: a dataSync inside it throws', async () => {
    await expect(withoutSyncReadback(async () => tf.scalar(1).dataSync())).rejects.toThrow(
      /synchronous readback/,
    )
    expect(tf.scalar(2).dataSync()[0]).toBe(2)
  })

  for (const [backend, threads] of [
    ['cpu', 1],
    ['wasm', 1],
    ['wasm', 2],
  ] as const) {
    it(`${backend} (${threads} thread${threads > 1 ? 's' : ''}): training, eval, weights, state, latents and sampling`, async () => {
      await initBackend(backend, undefined, { threads })
      await withoutSyncReadback(async () => {
        const ae = await createTrainerSession({ config, phase: 'autoencoder', dataset, seed: 3 })
        await ae.trainSteps(2)
        expect(Number.isFinite(await ae.evalLoss())).toBe(true)
        expect(Number.isFinite(await ae.evalLoss({ ema: true }))).toBe(true)
        const autoencoder = await ae.getEmaWeights()
        await ae.getWeights()
        await ae.exportState()
        const reconstructions = await reconstructionGrid(config, autoencoder, dataset.pixels, 2)
        ae.dispose()
        // The U-Net session encodes the dataset to latents when it starts.
        const unet = await createTrainerSession({ config, phase: 'unet', dataset, seed: 3, autoencoder })
        await unet.trainSteps(2)
        expect(Number.isFinite(await unet.evalLoss({ ema: true }))).toBe(true)
        const grid = await sampleGrid({
          config,
          autoencoder,
          unet: await unet.getEmaWeights(),
          classes: [config.classes[0] as string],
          perClass: 2,
          guidance: 2,
          steps: 2,
          seed: 1,
        })
        await unet.exportState()
        unet.dispose()
        // PNG signatures: both grids were rendered.
        for (const png of [grid, reconstructions])
          expect(Array.from(png.subarray(1, 4))).toEqual([0x50, 0x4e, 0x47])
      })
    })
  }
})
