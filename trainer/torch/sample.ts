// Sampling and reconstruction on the torch backend: the same DDIM (trainer/diffusion.ts sample) and the
// same starting noise (drawn here from the seed's Rng, as sampleImages draws it), computed by a
// short-lived worker. Same checkpoint and seed: the same images as the tfjs path, up to float rounding.
import type { CoopConfig } from '../../configs/index.ts'
import { latentSize } from '../autoencoder.ts'
import { TrainerError } from '../errors.ts'
import { Rng } from '../rng.ts'
import type { SampleImagesOptions } from '../sample.ts'
import { ddimTimesteps, makeSchedule } from '../schedule.ts'
import type { NamedTensor } from '../types.ts'
import { nullClass } from '../unet.ts'
import { TORCH_SAMPLE_CHUNK } from './constants.ts'
import type { WireTensor } from './frames.ts'
import type { TorchRuntime } from './probe.ts'
import { NET_CONSTANTS } from './wire.ts'
import { TorchWorker } from './worker-process.ts'

function wire(prefix: string, tensors: readonly NamedTensor[]): WireTensor[] {
  return tensors.map((t) => ({ name: `${prefix}${t.name}`, shape: t.shape, data: t.data }))
}

async function withWorker<T>(runtime: TorchRuntime, work: (worker: TorchWorker) => Promise<T>): Promise<T> {
  const worker = await TorchWorker.start({
    python: runtime.python,
    device: runtime.device,
    threads: runtime.threads,
  })
  try {
    return await work(worker)
  } finally {
    worker.close()
  }
}

/** sampleImages on the torch worker: RGB bytes, labels.length * size * size * 3. */
export async function sampleImagesOnTorch(
  options: SampleImagesOptions,
  runtime: TorchRuntime,
): Promise<Uint8Array> {
  const { config, labels } = options
  const nullLabel = nullClass(config)
  for (const label of labels)
    if (!Number.isInteger(label) || label < 0 || label > nullLabel)
      throw new TrainerError('INVALID_ARGUMENT', `class index ${label} out of range`)
  const schedule = makeSchedule(config.diffusion)
  const timesteps = ddimTimesteps(schedule.timesteps, options.steps)
  const steps = timesteps.map((t, i) => [
    t,
    schedule.alphasCumprod[t] as number,
    i + 1 < timesteps.length ? (schedule.alphasCumprod[timesteps[i + 1] as number] as number) : 1,
  ])
  const s = latentSize(config)
  const z = config.autoencoder.latentChannels
  const size = config.image.size
  const rng = new Rng(options.seed)
  const out = new Uint8Array(labels.length * size * size * 3)
  return withWorker(runtime, async (worker) => {
    // Chunk by chunk, drawing each chunk's noise when tfjs would, so the same seed gives the same images.
    for (let start = 0; start < labels.length; start += TORCH_SAMPLE_CHUNK) {
      const chunk = labels.slice(start, start + TORCH_SAMPLE_CHUNK)
      const noise = rng.normals(chunk.length * s * s * z)
      const reply = await worker.request(
        'sample',
        {
          config,
          constants: NET_CONSTANTS,
          steps,
          guidance: options.guidance,
          guided: options.guidance !== 1 && chunk.some((l) => l !== nullLabel),
        },
        [
          // The weights travel once; later chunks reuse them in the worker.
          ...(start === 0 ? [...wire('ae/', options.autoencoder), ...wire('unet/', options.unet)] : []),
          { name: 'noise', shape: [chunk.length, s, s, z], data: noise },
          { name: 'labels', shape: [chunk.length], data: Int32Array.from(chunk) },
        ],
      )
      out.set(reply.tensors[0]?.data as Uint8Array, start * size * size * 3)
    }
    return out
  })
}

/** `count` images (float NHWC in [-1, 1]) then their reconstructions, as RGB bytes (sample.ts reconstructionGrid). */
export async function reconstructOnTorch(
  config: CoopConfig,
  autoencoder: NamedTensor[],
  images: Float32Array,
  count: number,
  runtime: TorchRuntime,
): Promise<Uint8Array> {
  const size = config.image.size
  return withWorker(runtime, async (worker) => {
    const reply = await worker.request('reconstruct', { config, constants: NET_CONSTANTS }, [
      ...wire('ae/', autoencoder),
      { name: 'images', shape: [count, size, size, 3], data: images.subarray(0, count * size * size * 3) },
    ])
    return reply.tensors[0]?.data as Uint8Array
  })
}
