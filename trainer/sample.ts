// Sampling to images: DDIM in latent space with the U-Net (EMA weights in practice), decode
// with the autoencoder, lay the images out as a PNG grid. Deterministic: the same weights,
// labels and seed give the same PNG bytes (sharp's PNG encoder is deterministic).
import * as tf from '@tensorflow/tfjs-core'
import sharp from 'sharp'
import type { CoopConfig } from '../configs/index.ts'
import { createAutoencoder, decode, decodeFromDiffusion, encode, latentSize } from './autoencoder.ts'
import { sample } from './diffusion.ts'
import { TrainerError } from './errors.ts'
import { Rng } from './rng.ts'
import { makeSchedule } from './schedule.ts'
import type { NamedTensor } from './types.ts'
import { createUnet, nullClass } from './unet.ts'
import { selectedTorchRuntime } from './torch/selection.ts'

/** Pixels between grid cells, in the background colour. */
const GRID_GAP = 2
/** Images are generated in chunks of this many to bound memory on big grids. */
const SAMPLE_CHUNK = 64

export interface SampleImagesOptions {
  config: CoopConfig
  autoencoder: NamedTensor[]
  unet: NamedTensor[]
  /** Model class index per image; `nullClass(config)` for unconditional. */
  labels: number[]
  guidance: number
  steps: number
  seed: number
}

/** Generates images; returns RGB bytes, labels.length * size * size * 3 (read back without blocking). */
export async function sampleImages(options: SampleImagesOptions): Promise<Uint8Array> {
  const { config, labels } = options
  const nullLabel = nullClass(config)
  for (const label of labels)
    if (!Number.isInteger(label) || label < 0 || label > nullLabel)
      throw new TrainerError('INVALID_ARGUMENT', `class index ${label} out of range`)
  const ae = createAutoencoder(config, 0)
  const unet = createUnet(config, 0)
  try {
    ae.write(options.autoencoder)
    unet.write(options.unet)
    const schedule = makeSchedule(config.diffusion)
    const rng = new Rng(options.seed)
    const size = config.image.size
    const out = new Uint8Array(labels.length * size * size * 3)
    for (let start = 0; start < labels.length; start += SAMPLE_CHUNK) {
      const chunk = labels.slice(start, start + SAMPLE_CHUNK)
      const latents = sample(unet, config, schedule, {
        labels: chunk,
        guidance: options.guidance,
        samplingSteps: options.steps,
        rng,
        size: latentSize(config),
        channels: config.autoencoder.latentChannels,
      })
      const images = tf.tidy(() =>
        tf.clipByValue(
          tf.round(tf.mul(tf.add(decodeFromDiffusion(ae, config.autoencoder, latents), 1), 127.5)),
          0,
          255,
        ),
      )
      latents.dispose()
      try {
        out.set(Uint8Array.from(await images.data()), start * size * size * 3)
      } finally {
        images.dispose()
      }
    }
    return out
  } finally {
    ae.dispose()
    unet.dispose()
  }
}

/**
 * sampleImages on the active training backend: in the PyTorch worker after initBackend('torch'), else
 * with tfjs. Both draw the same starting noise from the seed, so they give the same images up to rounding.
 */
export async function samplePixels(options: SampleImagesOptions): Promise<Uint8Array> {
  const torch = selectedTorchRuntime()
  if (torch === undefined) return sampleImages(options)
  return (await import('./torch/sample.ts')).sampleImagesOnTorch(options, torch)
}

/** Lays `count` RGB images of side `size` out in rows of `columns`, upscaled by `scale` (nearest), as PNG bytes. */
export async function renderGrid(
  pixels: Uint8Array,
  count: number,
  size: number,
  columns: number,
  scale = 1,
): Promise<Uint8Array> {
  const rows = Math.ceil(count / columns)
  const cell = size * scale
  const width = columns * cell + (columns + 1) * GRID_GAP
  const height = rows * cell + (rows + 1) * GRID_GAP
  const canvas = new Uint8Array(width * height * 3).fill(255)
  for (let i = 0; i < count; i++) {
    const x0 = GRID_GAP + (i % columns) * (cell + GRID_GAP)
    const y0 = GRID_GAP + Math.floor(i / columns) * (cell + GRID_GAP)
    for (let y = 0; y < cell; y++)
      for (let x = 0; x < cell; x++) {
        const source = ((i * size + Math.floor(y / scale)) * size + Math.floor(x / scale)) * 3
        const target = ((y0 + y) * width + x0 + x) * 3
        canvas[target] = pixels[source] as number
        canvas[target + 1] = pixels[source + 1] as number
        canvas[target + 2] = pixels[source + 2] as number
      }
  }
  const png = await sharp(canvas, { raw: { width, height, channels: 3 } })
    .png({ compressionLevel: 9 })
    .toBuffer()
  return new Uint8Array(png)
}

export interface SampleGridOptions {
  config: CoopConfig
  autoencoder: NamedTensor[]
  unet: NamedTensor[]
  /** One grid row per entry: a class name of the config, or null for unconditional samples. */
  classes: (string | null)[]
  perClass: number
  guidance: number
  steps: number
  seed: number
  /** Nearest-neighbour upscaling of each cell, so 32px samples are visible (default 2). */
  scale?: number
}

/** A PNG grid: one row per requested class, `perClass` samples each. */
export async function sampleGrid(options: SampleGridOptions): Promise<Uint8Array> {
  const { config } = options
  if (!Number.isInteger(options.perClass) || options.perClass < 1)
    throw new TrainerError('INVALID_ARGUMENT', 'perClass must be a positive integer')
  const labels: number[] = []
  for (const name of options.classes) {
    const label = name === null ? nullClass(config) : config.classes.indexOf(name)
    if (label < 0)
      throw new TrainerError(
        'UNKNOWN_CLASS',
        `class '${name}' is not one of the model's classes (${config.classes.join(', ') || 'none: unconditional'})`,
      )
    for (let i = 0; i < options.perClass; i++) labels.push(label)
  }
  const pixels = await samplePixels({ ...options, labels })
  return renderGrid(pixels, labels.length, config.image.size, options.perClass, options.scale ?? 2)
}

/**
 * A two-row PNG: `images` (float pixels in [-1, 1], NHWC) on top, their reconstructions through
 * the autoencoder's posterior mean below, so a user can judge the autoencoder by eye.
 */
export async function reconstructionGrid(
  config: CoopConfig,
  autoencoder: NamedTensor[],
  images: Float32Array,
  count: number,
): Promise<Uint8Array> {
  const size = config.image.size
  const torch = selectedTorchRuntime()
  if (torch !== undefined) {
    const { reconstructOnTorch } = await import('./torch/sample.ts')
    return renderGrid(
      await reconstructOnTorch(config, autoencoder, images, count, torch),
      2 * count,
      size,
      count,
      2,
    )
  }
  const ae = createAutoencoder(config, 0)
  try {
    ae.write(autoencoder)
    const toBytes = (x: tf.Tensor) =>
      tf.tidy(() => tf.clipByValue(tf.round(tf.mul(tf.add(x, 1), 127.5)), 0, 255))
    const both = tf.tidy(() => {
      const x = tf.tensor4d(images.subarray(0, count * size * size * 3), [count, size, size, 3])
      return toBytes(
        tf.concat([x, decode(ae, config.autoencoder, encode(ae, config.autoencoder, x).mean)], 0),
      )
    })
    let pixels: Uint8Array
    try {
      pixels = Uint8Array.from(await both.data())
    } finally {
      both.dispose()
    }
    return renderGrid(pixels, 2 * count, size, count, 2)
  } finally {
    ae.dispose()
  }
}
