// What crosses the pipe to the torch worker, in both directions: weights (checked against the model's
// names and shapes before they leave), the session's pixels (as bytes when they are decoded bytes), and
// the worker's step reports.
import { GROUPNORM_EPSILON, LOGVAR_MAX, LOGVAR_MIN } from '../constants.ts'
import type { ImageDataset } from '../data.ts'
import { TrainerError } from '../errors.ts'
import type { NamedTensor } from '../types.ts'
import { TORCH_DATA_CHUNK_BYTES } from './constants.ts'
import type { WireTensor } from './frames.ts'
import type { TorchWorker } from './worker-process.ts'

/** The constants nets.py keeps its own copies of; the worker refuses to start if they differ. */
export const NET_CONSTANTS = {
  groupnormEpsilon: GROUPNORM_EPSILON,
  logvarMin: LOGVAR_MIN,
  logvarMax: LOGVAR_MAX,
}

/** A tensor's name and shape in tfjs layout. */
export interface Layout {
  name: string
  shape: number[]
}

/** What the worker says about one step, one request later. */
export interface StepReport {
  step: number
  loss: number
  /** False when the loss or gradient norm was not finite: the update was not applied. */
  applied: boolean
  gradNorm: number
}

/** A step report from the worker; non-finite numbers arrive as 'NaN' / 'Infinity' strings (JSON has none). */
export function parseReport(raw: unknown): StepReport | null {
  if (raw === null || raw === undefined) return null
  const r = raw as Record<string, unknown>
  if (!Number.isInteger(r.step) || typeof r.applied !== 'boolean')
    throw new TrainerError(
      'WORKER_FAILED',
      `torch worker sent a malformed step report: ${JSON.stringify(raw)}`,
    )
  return { step: r.step as number, loss: Number(r.loss), applied: r.applied, gradNorm: Number(r.gradNorm) }
}

/** Exactly `layout`'s names and shapes, no more, no fewer (as ParamStore.write demands). */
export function checkWeights(
  layout: readonly Layout[],
  weights: readonly NamedTensor[],
  code: 'WEIGHTS_MISMATCH' | 'CHECKPOINT_CORRUPT',
  what: string,
): void {
  const given = new Map(weights.map((w) => [w.name, w]))
  if (given.size !== weights.length) throw new TrainerError(code, `duplicate tensor names in ${what}`)
  for (const { name, shape } of layout) {
    const w = given.get(name)
    if (w === undefined) throw new TrainerError(code, `${what} lack tensor ${name}`)
    const size = shape.reduce((a, b) => a * b, 1)
    if (w.shape.length !== shape.length || w.shape.some((d, i) => d !== shape[i]) || w.data.length !== size)
      throw new TrainerError(code, `tensor ${name} has shape [${w.shape}], the model needs [${shape}]`)
  }
  if (given.size !== layout.length) {
    const known = new Set(layout.map((l) => l.name))
    const extra = weights.find((w) => !known.has(w.name))
    throw new TrainerError(code, `unexpected tensor ${extra?.name ?? '?'} in ${what}`)
  }
}

export function toWire(prefix: string, tensors: readonly NamedTensor[]): WireTensor[] {
  return tensors.map((t) => ({ name: `${prefix}${t.name}`, shape: t.shape, data: t.data }))
}

/** Tensors from a reply, sorted by name as ParamStore.read sorts them. */
export function fromWire(tensors: readonly WireTensor[]): NamedTensor[] {
  return tensors
    .map((t) => ({ name: t.name, shape: [...t.shape], data: t.data as Float32Array }))
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
}

/** Float pixels that are exactly `byte / 127.5 - 1` (as trainer/data.ts makes them) travel as bytes. */
function asBytes(pixels: Float32Array): Uint8Array | undefined {
  const bytes = new Uint8Array(pixels.length)
  for (let i = 0; i < pixels.length; i++) {
    const value = pixels[i] as number
    const byte = Math.round((value + 1) * 127.5)
    if (byte < 0 || byte > 255 || Math.fround(byte / 127.5 - 1) !== value) return undefined
    bytes[i] = byte
  }
  return bytes
}

/** Sends the dataset's pixels in bounded frames: as bytes when they are exactly decoded bytes, else float32. */
export async function sendPixels(worker: TorchWorker, dataset: ImageDataset): Promise<void> {
  const size = dataset.size
  const rowSize = size * size * 3
  const perChunk = Math.max(1, Math.floor(TORCH_DATA_CHUNK_BYTES / (rowSize * 4)))
  for (let start = 0; start < dataset.items.length; start += perChunk) {
    const n = Math.min(perChunk, dataset.items.length - start)
    const floats = dataset.pixels.subarray(start * rowSize, (start + n) * rowSize)
    const data = asBytes(floats) ?? floats
    await worker.request('add_data', {}, [{ name: 'pixels', shape: [n, size, size, 3], data }])
  }
  await worker.request('finish_data')
}
