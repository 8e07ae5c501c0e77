// Measures what the demo shows about the model itself: the eval loss of each averaged
// checkpoint on one fixed batch of the pooled data (so every round is judged on the same
// images, all categories included), and class-conditional sample grids of the U-Net rounds.
import { existsSync } from 'node:fs'
import { mkdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { Logger } from 'pino'
import type { CoopConfig } from '../../configs/index.ts'
import { initBackend } from '../../trainer/backend.ts'
import { loadImageFolder } from '../../trainer/data.ts'
import type { ImageDataset } from '../../trainer/data.ts'
import { sampleGrid } from '../../trainer/sample.ts'
import { createTrainerSession } from '../../trainer/session.ts'
import type { TrainerSession } from '../../trainer/session.ts'
import { CHECKPOINT_FILES } from '../round/layout.ts'
import { decodeTensors } from '../round/tensors.ts'
import type { NamedTensor } from '../round/tensors.ts'
import {
  SAMPLE_AVERAGE_ROUNDS,
  SAMPLE_GUIDANCE,
  SAMPLE_SEED,
  SAMPLE_STEPS,
  SAMPLES_PER_CLASS,
} from './constants.ts'
import type { CollectedCheckpoint } from './collect.ts'
import { writeFileDurable } from '../store/durable.ts'

export interface Evaluator {
  backend: string
  /** Eval loss of a checkpoint's weights; U-Net checkpoints are judged in their own autoencoder's latent space. */
  evalLoss(checkpoint: CollectedCheckpoint): Promise<number>
  /** Writes samples/<round>.png for a U-Net checkpoint unless it exists; returns its path. */
  sampleGrid(checkpoint: CollectedCheckpoint, outPath: string, classes: string[]): Promise<string>
  dispose(): void
}

async function weightsOf(checkpoint: CollectedCheckpoint): Promise<NamedTensor[]> {
  return decodeTensors(new Uint8Array(await readFile(join(checkpoint.storeDir, CHECKPOINT_FILES.model))))
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
  return checkpoints
    .filter(
      (c) =>
        c.phase === checkpoint.phase &&
        c.parentId !== null &&
        c.autoencoderId === checkpoint.autoencoderId &&
        c.round <= checkpoint.round &&
        c.round > checkpoint.round - window,
    )
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
  const dataset: ImageDataset = await loadImageFolder({
    dir: options.dataDir,
    size: options.config.image.size,
    ...(options.log ? { log: options.log } : {}),
  })
  const byId = new Map(options.checkpoints.map((c) => [c.id, c]))
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
        dataset,
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
      if (existsSync(outPath)) return outPath
      await mkdir(join(outPath, '..'), { recursive: true })
      const png = await sampleGrid({
        config: options.config,
        autoencoder: await autoencoderOf(checkpoint),
        unet: meanWeights(
          await Promise.all(
            samplingWindow(options.checkpoints, checkpoint, SAMPLE_AVERAGE_ROUNDS).map(weightsOf),
          ),
        ),
        classes,
        perClass: SAMPLES_PER_CLASS,
        guidance: SAMPLE_GUIDANCE,
        steps: SAMPLE_STEPS,
        seed: SAMPLE_SEED,
      })
      await writeFileDurable(outPath, png)
      return outPath
    },
    dispose() {
      for (const session of sessions.values()) session.dispose()
      sessions.clear()
    },
  }
}
