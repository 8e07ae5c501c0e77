// Scores a diffusion model (autoencoder + U-Net weights): draws `perClass` class-conditional
// samples of every class with a fixed seed and scores them against the held-out real Twemoji.
// The simulator, the demo, `coop sample --score` and the benchmarks all call this. The samples are
// drawn on the active training backend (the PyTorch worker after `--backend torch`).
import type { CoopConfig } from '../../configs/index.ts'
import { TrainerError } from '../errors.ts'
import { samplePixels } from '../sample.ts'
import type { NamedTensor } from '../types.ts'
import { bytesToPixels } from './resize.ts'
import { heldOutReference, scoreImages } from './score.ts'
import type { QualityModel, QualityScore } from './score.ts'

export interface ScoreModelOptions {
  config: CoopConfig
  autoencoder: NamedTensor[]
  unet: NamedTensor[]
  /** Classes to sample (default: every class of the config). */
  classes?: readonly string[]
  perClass: number
  guidance: number
  steps: number
  seed: number
}

export interface ModelQuality extends QualityScore {
  perClass: number
  guidance: number
  steps: number
  seed: number
}

export async function scoreModel(model: QualityModel, options: ScoreModelOptions): Promise<ModelQuality> {
  const { config } = options
  const classes = [...(options.classes ?? config.classes)]
  if (classes.length === 0)
    throw new TrainerError('INVALID_ARGUMENT', 'the quality metric needs a class-conditional model')
  const labels: string[] = []
  const indices: number[] = []
  for (const name of classes) {
    const index = config.classes.indexOf(name)
    if (index < 0)
      throw new TrainerError('UNKNOWN_CLASS', `class '${name}' is not one of the model's classes`)
    for (let i = 0; i < options.perClass; i++) {
      labels.push(name)
      indices.push(index)
    }
  }
  const reference = await heldOutReference(model, config.image.size, classes)
  const bytes = await samplePixels({
    config,
    autoencoder: options.autoencoder,
    unet: options.unet,
    labels: indices,
    guidance: options.guidance,
    steps: options.steps,
    seed: options.seed,
  })
  const score = scoreImages(model, reference, bytesToPixels(bytes), labels, config.image.size)
  return {
    ...score,
    perClass: options.perClass,
    guidance: options.guidance,
    steps: options.steps,
    seed: options.seed,
  }
}
