// Named configurations. Each is checked against the schema when loaded, like a JSON file.
import type { CoopConfig } from './schema.ts'

/** The Twemoji categories as `coop data twemoji` lays them out (slugs of emoji.json's `category`); 'Component' (skin-tone swatches) is left out. */
export const TWEMOJI_CLASSES = [
  'activities',
  'animals-nature',
  'flags',
  'food-drink',
  'objects',
  'people-body',
  'smileys-emotion',
  'symbols',
  'travel-places',
]

/** For tests: 16x16 images, 4x4x4 latents, a two-level U-Net; about a second per ten steps on one CPU core. */
const tiny: CoopConfig = {
  name: 'tiny',
  image: { size: 16, channels: 3 },
  classes: TWEMOJI_CLASSES,
  autoencoder: {
    channels: [8, 16, 16],
    latentChannels: 4,
    klWeight: 1e-4,
    groups: 4,
    lr: 3e-3,
    batchSize: 16,
    steps: 300,
    emaDecay: 0.99,
  },
  unet: {
    channels: [16, 32],
    resBlocksPerLevel: 1,
    attention: true,
    attentionHeads: 2,
    groups: 4,
    timeEmbedDim: 32,
    classDropProb: 0.1,
    lr: 2e-3,
    batchSize: 32,
    steps: 300,
    emaDecay: 0.99,
  },
  diffusion: {
    timesteps: 1000,
    schedule: 'linear',
    betaStart: 1e-4,
    betaEnd: 0.02,
    prediction: 'epsilon',
    lossWeighting: 'min_snr',
    minSnrGamma: 5,
    samplingSteps: 25,
    guidance: 2,
  },
  training: { evalBatch: 16, checkpointEvery: 100, logEvery: 10 },
}

/**
 * The demo: 32x32 Twemoji, class-conditional on the emoji category, 8x8x4 latents.
 * Sized so that four peers sharing two CPU cores reach emoji-like samples in about 15 minutes.
 */
const emoji32: CoopConfig = {
  name: 'emoji32',
  image: { size: 32, channels: 3 },
  classes: TWEMOJI_CLASSES,
  autoencoder: {
    channels: [16, 32, 64],
    latentChannels: 4,
    klWeight: 1e-4,
    groups: 8,
    lr: 2e-3,
    batchSize: 32,
    // Held-out MSE 0.037 at 250 steps, 0.019 at 1000 (wasm, full Twemoji): reconstructions are sharp by then.
    steps: 1000,
    emaDecay: 0.995,
  },
  unet: {
    channels: [32, 64],
    resBlocksPerLevel: 1,
    attention: true,
    attentionHeads: 4,
    groups: 8,
    timeEmbedDim: 64,
    classDropProb: 0.1,
    // 3e-3 reached the held-out loss of 1e-3 in about half the steps (0.167 at 500 vs 0.160 at 750).
    lr: 3e-3,
    batchSize: 32,
    steps: 3000,
    emaDecay: 0.995,
  },
  diffusion: {
    timesteps: 1000,
    schedule: 'linear',
    betaStart: 1e-4,
    betaEnd: 0.02,
    prediction: 'epsilon',
    lossWeighting: 'min_snr',
    minSnrGamma: 5,
    samplingSteps: 50,
    guidance: 3,
  },
  training: { evalBatch: 64, checkpointEvery: 250, logEvery: 10 },
}

/**
 * For a volunteer's GPU (tfjs-node-gpu): 256x256 images, 32x32x4 latents (SD-like factor 8),
 * a four-level U-Net with two ResBlocks per level. Documented, not run in CI: one step is
 * far beyond a CPU's budget.
 */
const gpu256: CoopConfig = {
  name: 'gpu256',
  image: { size: 256, channels: 3 },
  classes: [],
  autoencoder: {
    channels: [64, 128, 256, 256],
    latentChannels: 4,
    klWeight: 1e-6,
    groups: 32,
    lr: 4.5e-4,
    batchSize: 16,
    steps: 100_000,
    emaDecay: 0.9999,
  },
  unet: {
    channels: [128, 256, 256, 512],
    resBlocksPerLevel: 2,
    attention: true,
    attentionHeads: 8,
    groups: 32,
    timeEmbedDim: 512,
    classDropProb: 0.1,
    lr: 1e-4,
    batchSize: 64,
    steps: 400_000,
    emaDecay: 0.9999,
  },
  diffusion: {
    timesteps: 1000,
    schedule: 'scaled_linear',
    betaStart: 0.00085,
    betaEnd: 0.012,
    prediction: 'v',
    lossWeighting: 'min_snr',
    minSnrGamma: 5,
    samplingSteps: 50,
    guidance: 5,
  },
  training: { evalBatch: 64, checkpointEvery: 2000, logEvery: 50 },
}

export const PRESETS: Readonly<Record<string, CoopConfig>> = { tiny, emoji32, gpu256 }
