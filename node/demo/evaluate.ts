// Measures what the demo shows about the model itself: the eval loss of each averaged
// checkpoint on one fixed batch of the pooled data (so every round is judged on the same
// images, all categories included), and class-conditional sample grids of the U-Net rounds.
import { mkdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { Logger } from 'pino'
import type { CoopConfig } from '../../configs/index.ts'
import { initBackend } from '../../trainer/backend.ts'
import { loadImageFolder } from '../../trainer/data.ts'
import type { ImageDataset } from '../../trainer/data.ts'
import { renderGrid, sampleImages } from '../../trainer/sample.ts'
import {
  bytesToPixels,
  heldOutReference,
  loadQualityModel,
  scoreImages,
  scoreModel,
} from '../../trainer/quality/index.ts'
import type { QualityModel } from '../../trainer/quality/index.ts'
import { createTrainerSession } from '../../trainer/session.ts'
import type { TrainerSession } from '../../trainer/session.ts'
import { CHECKPOINT_FILES } from '../round/layout.ts'
import { decodeTensors } from '../round/tensors.ts'
import type { NamedTensor } from '../round/tensors.ts'
import {
  QUALITY_PER_CLASS,
  QUALITY_SEED,
  SAMPLE_AVERAGE_FRACTION,
  SAMPLE_AVERAGE_MAX_ROUNDS,
  SAMPLE_GUIDANCE,
  SAMPLE_SEED,
  SAMPLE_STEPS,
  SAMPLES_PER_CLASS,
} from './constants.ts'
import type { CollectedCheckpoint } from './collect.ts'
import { writeFileDurable } from '../store/durable.ts'

/** Sample quality of one model (trainer/quality), as metrics.json records it. */
export interface DemoQuality {
  classAccuracy: number
  frechetDistance: number
  samples: number
  round: number
  precision?: number
  recall?: number
  perClassAccuracy?: Record<string, number>
}

export interface Evaluator {
  backend: string
  /** Eval loss of a checkpoint's weights; U-Net checkpoints are judged in their own autoencoder's latent space. */
  evalLoss(checkpoint: CollectedCheckpoint): Promise<number>
  /**
   * Writes samples/<round>.png for a U-Net checkpoint (the averaged model of its window) and
   * scores those same samples with the quality classifier: the per-round quality figure.
   */
  sampleGrid(checkpoint: CollectedCheckpoint, outPath: string, classes: string[]): Promise<DemoQuality>
  /** Quality of the same averaged model from QUALITY_PER_CLASS fresh samples per class: metrics.json's headline. */
  scoreFinal(checkpoint: CollectedCheckpoint, classes: string[]): Promise<DemoQuality>
  dispose(): void
}

async function weightsOf(checkpoint: CollectedCheckpoint): Promise<NamedTensor[]> {
  return decodeTensors(new Uint8Array(await readFile(join(checkpoint.storeDir, CHECKPOINT_FILES.model))))
}

/** The U-Net checkpoints a grid of `checkpoint` may average: same phase and autoencoder, not genesis, up to its round. */
function sameLine(
  checkpoints: readonly CollectedCheckpoint[],
  checkpoint: CollectedCheckpoint,
): CollectedCheckpoint[] {
  return checkpoints.filter(
    (c) =>
      c.phase === checkpoint.phase &&
      c.parentId !== null &&
      c.autoencoderId === checkpoint.autoencoderId &&
      c.round <= checkpoint.round,
  )
}

/**
 * How many rounds the grid of `checkpoint` averages: the last SAMPLE_AVERAGE_FRACTION of the
 * rounds of its line so far (rounded up), at least 1 and at most SAMPLE_AVERAGE_MAX_ROUNDS.
 */
export function averagingRounds(
  checkpoints: readonly CollectedCheckpoint[],
  checkpoint: CollectedCheckpoint,
): number {
  const rounds = sameLine(checkpoints, checkpoint).length
  return Math.min(SAMPLE_AVERAGE_MAX_ROUNDS, Math.max(1, Math.ceil(rounds * SAMPLE_AVERAGE_FRACTION)))
}

/**
 * The checkpoints whose mean the grid of `checkpoint` samples from: the non-genesis checkpoints of
 * the same phase and autoencoder, in rounds (round - window, round], oldest first.
 */
export function samplingWindow(
  checkpoints: readonly CollectedCheckpoint[],
  checkpoint: CollectedCheckpoint,
  window: number,
): CollectedCheckpoint[] {
  return sameLine(checkpoints, checkpoint)
    .filter((c) => c.round > checkpoint.round - window)
    .sort((a, b) => a.round - b.round)
}

/** Element-wise mean of same-layout weight sets, accumulated in float64. */
export function meanWeights(sets: readonly NamedTensor[][]): NamedTensor[] {
  const first = sets[0]
  if (first === undefined) throw new Error('meanWeights needs at least one weight set')
  return first.map((tensor, i) => {
    const sum = new Float64Array(tensor.data.length)
    for (const set of sets) {
      const other = set[i]
      if (other === undefined || other.name !== tensor.name || other.data.length !== tensor.data.length)
        throw new Error(`weight sets differ at tensor '${tensor.name}'`)
      for (let j = 0; j < sum.length; j++) sum[j] = (sum[j] as number) + (other.data[j] as number)
    }
    const data = new Float32Array(sum.length)
    for (let j = 0; j < sum.length; j++) data[j] = (sum[j] as number) / sets.length
    return { name: tensor.name, shape: [...tensor.shape], data }
  })
}

export async function createEvaluator(options: {
  config: CoopConfig
  /** The pooled data, one folder per category. */
  dataDir: string
  backend: string
  checkpoints: CollectedCheckpoint[]
  log?: Logger
}): Promise<Evaluator> {
  const choice = await initBackend(options.backend, options.log)
  // Only the eval loss needs the pooled images: an evaluator that only samples (the grid worker,
  // a resumed run whose losses are cached) never reads them.
  let dataset: Promise<ImageDataset> | undefined
  const pooledData = (): Promise<ImageDataset> =>
    (dataset ??= loadImageFolder({
      dir: options.dataDir,
      size: options.config.image.size,
      ...(options.log ? { log: options.log } : {}),
    }))
  const byId = new Map(options.checkpoints.map((c) => [c.id, c]))
  let quality: QualityModel | undefined
  const qualityModel = async (): Promise<QualityModel> => {
    quality ??= await loadQualityModel()
    return quality
  }
  const averagedUnet = async (checkpoint: CollectedCheckpoint): Promise<NamedTensor[]> =>
    meanWeights(
      await Promise.all(
        samplingWindow(options.checkpoints, checkpoint, averagingRounds(options.checkpoints, checkpoint)).map(
          weightsOf,
        ),
      ),
    )
  const sessions = new Map<string, TrainerSession>()
  const autoencoderWeights = new Map<string, NamedTensor[]>()

  const autoencoderOf = async (checkpoint: CollectedCheckpoint): Promise<NamedTensor[]> => {
    const id = checkpoint.autoencoderId
    const ae = id === undefined ? undefined : byId.get(id)
    if (ae === undefined)
      throw new Error(`U-Net checkpoint of round ${checkpoint.round} names no known autoencoder checkpoint`)
    let weights = autoencoderWeights.get(ae.id)
    if (weights === undefined) {
      weights = await weightsOf(ae)
      autoencoderWeights.set(ae.id, weights)
    }
    return weights
  }

  const sessionFor = async (checkpoint: CollectedCheckpoint): Promise<TrainerSession> => {
    const key = `${checkpoint.phase}/${checkpoint.autoencoderId ?? ''}`
    let session = sessions.get(key)
    if (session === undefined) {
      session = await createTrainerSession({
        config: options.config,
        phase: checkpoint.phase,
        dataset: await pooledData(),
        // The seed only initialises weights, which are replaced; the eval batch is fixed by design.
        seed: 0,
        ...(checkpoint.phase === 'unet' ? { autoencoder: await autoencoderOf(checkpoint) } : {}),
      })
      sessions.set(key, session)
    }
    return session
  }

  return {
    backend: choice.name,
    async evalLoss(checkpoint) {
      const session = await sessionFor(checkpoint)
      await session.setWeights(await weightsOf(checkpoint))
      return await session.evalLoss()
    },
    async sampleGrid(checkpoint, outPath, classes) {
      await mkdir(join(outPath, '..'), { recursive: true })
      const config = options.config
      const labels = classes.flatMap((name) =>
        new Array<number>(SAMPLES_PER_CLASS).fill(config.classes.indexOf(name)),
      )
      const bytes = await sampleImages({
        config,
        autoencoder: await autoencoderOf(checkpoint),
        unet: await averagedUnet(checkpoint),
        labels,
        guidance: SAMPLE_GUIDANCE,
        steps: SAMPLE_STEPS,
        seed: SAMPLE_SEED,
      })
      const png = await renderGrid(bytes, labels.length, config.image.size, SAMPLES_PER_CLASS, 2)
      await writeFileDurable(outPath, png)
      const model = await qualityModel()
      const reference = await heldOutReference(model, config.image.size, classes)
      const names = classes.flatMap((name) => new Array<string>(SAMPLES_PER_CLASS).fill(name))
      const score = scoreImages(model, reference, bytesToPixels(bytes), names, config.image.size)
      return {
        classAccuracy: score.classAccuracy,
        frechetDistance: score.frechetDistance,
        samples: score.samples,
        round: checkpoint.round,
      }
    },
    async scoreFinal(checkpoint, classes) {
      const score = await scoreModel(await qualityModel(), {
        config: options.config,
        autoencoder: await autoencoderOf(checkpoint),
        unet: await averagedUnet(checkpoint),
        classes,
        perClass: QUALITY_PER_CLASS,
        guidance: SAMPLE_GUIDANCE,
        steps: SAMPLE_STEPS,
        seed: QUALITY_SEED,
      })
      return {
        classAccuracy: score.classAccuracy,
        frechetDistance: score.frechetDistance,
        samples: score.samples,
        round: checkpoint.round,
        precision: score.precision,
        recall: score.recall,
        perClassAccuracy: score.perClassAccuracy,
      }
    },
    dispose() {
      for (const session of sessions.values()) session.dispose()
      sessions.clear()
      quality?.dispose()
      quality = undefined
    },
  }
}
