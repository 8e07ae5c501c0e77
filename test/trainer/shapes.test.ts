// The output shape of every block of both networks, for each named configuration:
// image -> latent is a factor 2^(levels-1) per side, the U-Net returns its input's shape,
// and the skip connections pair up level by level.
import * as tf from '@tensorflow/tfjs-core'
import { beforeAll, describe, expect, it } from 'vitest'
import { loadConfig } from '../../configs/index.ts'
import { createAutoencoder, decode, encode, latentSize } from '../../trainer/autoencoder.ts'
import { initBackend } from '../../trainer/backend.ts'
import { createUnet, nullClass, unetForward } from '../../trainer/unet.ts'

beforeAll(async () => {
  await initBackend('auto')
})

function trace(run: (record: (block: string, shape: number[]) => void) => void): Map<string, number[]> {
  const shapes = new Map<string, number[]>()
  tf.tidy(() => run((block, shape) => shapes.set(block, shape)))
  return shapes
}

describe('block shapes', () => {
  it('tiny: 16x16x3 -> 4x4x4 latents; every block as designed', () => {
    const config = loadConfig('tiny')
    const ae = createAutoencoder(config, 1)
    const aeShapes = trace((record) => {
      const { mean, logvar } = encode(ae, config.autoencoder, tf.zeros([2, 16, 16, 3]) as tf.Tensor4D, record)
      expect(mean.shape).toEqual([2, 4, 4, 4])
      expect(logvar.shape).toEqual([2, 4, 4, 4])
      decode(ae, config.autoencoder, mean, record)
    })
    expect(Object.fromEntries(aeShapes)).toEqual({
      'encoder.conv_in': [2, 16, 16, 8],
      'encoder.down.1': [2, 8, 8, 16],
      'encoder.down.2': [2, 4, 4, 16],
      'encoder.mid': [2, 4, 4, 16],
      'encoder.conv_out': [2, 4, 4, 8],
      'decoder.conv_in': [2, 4, 4, 16],
      'decoder.mid': [2, 4, 4, 16],
      'decoder.up.2': [2, 8, 8, 16],
      'decoder.up.1': [2, 16, 16, 8],
      'decoder.conv_out': [2, 16, 16, 3],
    })
    const unet = createUnet(config, 1)
    const unetShapes = trace((record) => {
      unetForward(
        unet,
        config,
        tf.zeros([2, 4, 4, 4]) as tf.Tensor4D,
        [0, 999],
        [0, nullClass(config)],
        record,
      )
    })
    expect(Object.fromEntries(unetShapes)).toEqual({
      embedding: [2, 32],
      conv_in: [2, 4, 4, 16],
      'down.0.res.0': [2, 4, 4, 16],
      'down.0.downsample': [2, 2, 2, 16],
      'down.1.res.0': [2, 2, 2, 32],
      'mid.res.0': [2, 2, 2, 32],
      'mid.attention': [2, 2, 2, 32],
      'mid.res.1': [2, 2, 2, 32],
      'up.1.res.0': [2, 2, 2, 32],
      'up.1.res.1': [2, 2, 2, 32],
      'up.1.upsample': [2, 4, 4, 16],
      'up.0.res.0': [2, 4, 4, 16],
      'up.0.res.1': [2, 4, 4, 16],
      conv_out: [2, 4, 4, 4],
    })
    ae.dispose()
    unet.dispose()
  })

  for (const name of ['emoji32', 'gpu256']) {
    it(`${name}: latents are image/2^(levels-1), the U-Net keeps the latent shape, resolutions step by 2`, () => {
      const config = loadConfig(name)
      const size = config.image.size
      const s = latentSize(config)
      const z = config.autoencoder.latentChannels
      expect(s).toBe(size / 2 ** (config.autoencoder.channels.length - 1))
      // The autoencoder is fully convolutional: gpu256's is traced on a 32px input (a 256px pass is a GPU job);
      // every block must still scale by exactly 2 per level and carry the configured channels.
      const side = Math.min(size, 32)
      const latentSide = side / 2 ** (config.autoencoder.channels.length - 1)
      const ae = createAutoencoder(config, 1)
      const aeShapes = trace((record) => {
        const { mean } = encode(ae, config.autoencoder, tf.zeros([1, side, side, 3]) as tf.Tensor4D, record)
        expect(decode(ae, config.autoencoder, mean, record).shape).toEqual([1, side, side, 3])
      })
      expect(aeShapes.get('encoder.conv_in')).toEqual([1, side, side, config.autoencoder.channels[0]])
      expect(aeShapes.get('encoder.conv_out')).toEqual([1, latentSide, latentSide, 2 * z])
      config.autoencoder.channels.forEach((c, level) => {
        if (level === 0) return
        expect(aeShapes.get(`encoder.down.${level}`)).toEqual([1, side / 2 ** level, side / 2 ** level, c])
        expect(aeShapes.get(`decoder.up.${level}`)).toEqual([
          1,
          side / 2 ** (level - 1),
          side / 2 ** (level - 1),
          config.autoencoder.channels[level - 1],
        ])
      })
      expect(aeShapes.get('decoder.conv_out')).toEqual([1, side, side, 3])
      ae.dispose()
      // The U-Net is convolutional too: gpu256's 32px latents are traced at 8px to keep the test short.
      const ls = Math.min(s, 8)
      const unet = createUnet(config, 1)
      const shapes = trace((record) => {
        unetForward(unet, config, tf.zeros([1, ls, ls, z]) as tf.Tensor4D, [500], [nullClass(config)], record)
      })
      expect(shapes.get('conv_out')).toEqual([1, ls, ls, z])
      expect(shapes.get('embedding')).toEqual([1, config.unet.timeEmbedDim])
      const levels = config.unet.channels.length
      config.unet.channels.forEach((c, level) => {
        const side = ls / 2 ** level
        for (let block = 0; block < config.unet.resBlocksPerLevel; block++)
          expect(shapes.get(`down.${level}.res.${block}`)).toEqual([1, side, side, c])
        for (let block = 0; block <= config.unet.resBlocksPerLevel; block++)
          expect(shapes.get(`up.${level}.res.${block}`)).toEqual([1, side, side, c])
      })
      const lowest = ls / 2 ** (levels - 1)
      expect(shapes.get('mid.attention')).toEqual([1, lowest, lowest, config.unet.channels[levels - 1]])
      unet.dispose()
    })
  }
})
