// What every pseudo-gradient encoder and decoder agrees on: the codecs and their spelling, the
// limits a payload is held to, and the checks both sides share (compression.ts for the per-tensor
// layouts, compression-2bit.ts for the chunked 2-bit one).
import { ProtocolError } from './errors.ts'

/** A named dense float32 tensor (weights, deltas, momentum). */
export interface NamedTensor {
  name: string
  shape: number[]
  data: Float32Array
}

export type Codec =
  | { kind: 'none' }
  | { kind: 'int8' }
  /** `values: '2bit'` selects the chunked 2-bit layout; absent = F32 values at I32 indices. */
  | { kind: 'topk'; fraction: number; values?: '2bit' }

/** Largest int8 magnitude used: symmetric range [-127, 127] so that -x encodes exactly as -q. */
export const INT8_LEVELS = 127

/** Elements in one decoded tensor: above the largest config's biggest tensor (gpu256, ~2.4M) by 100x; stops a forged shape from allocating gigabytes. */
export const DELTA_MAX_ELEMENTS_PER_TENSOR = 256 * 1024 * 1024

/** Smallest top-k fraction accepted: 1e-6 keeps at least one value per million; below that a round carries no signal. */
export const TOPK_MIN_FRACTION = 1e-6

/** Chunk of the 2-bit top-k layout: 256 elements, so an offset fits one U8 byte (SparseLoCo chunks tensors the same way, with 4096). */
export const TOPK_CHUNK = 256

export function elementCount(shape: readonly number[]): number {
  let count = 1
  for (const dim of shape) count *= dim
  return count
}

export function checkCodec(codec: Codec): void {
  if (codec.kind === 'none' || codec.kind === 'int8') return
  if (codec.kind === 'topk') {
    if (!(Number.isFinite(codec.fraction) && codec.fraction >= TOPK_MIN_FRACTION && codec.fraction <= 1))
      throw new ProtocolError(
        'SCHEMA',
        `top-k fraction must be in [${TOPK_MIN_FRACTION}, 1], got ${codec.fraction}`,
      )
    if (codec.values !== undefined && codec.values !== '2bit')
      throw new ProtocolError('SCHEMA', `top-k values must be '2bit' or absent, got ${String(codec.values)}`)
    return
  }
  throw new ProtocolError(
    'UNKNOWN_TYPE',
    `unknown codec ${JSON.stringify((codec as { kind: unknown }).kind)}`,
  )
}

/** Parses the CLI/charter spelling `none`, `int8`, `topk:<fraction>` or `topk:<fraction>:2bit`. */
export function parseCodec(text: string): Codec {
  if (text === 'none' || text === 'int8') return { kind: text }
  const match = /^topk:([0-9]*\.?[0-9]+(?:e-?[0-9]+)?)(:2bit)?$/.exec(text)
  if (match !== null) {
    const codec: Codec = {
      kind: 'topk',
      fraction: Number(match[1]),
      ...(match[2] === undefined ? {} : { values: '2bit' as const }),
    }
    checkCodec(codec)
    return codec
  }
  throw new ProtocolError(
    'UNKNOWN_TYPE',
    `unknown codec ${JSON.stringify(text)}: expected none, int8, topk:<fraction> or topk:<fraction>:2bit`,
  )
}

/** The spelling `parseCodec` reads. */
export function formatCodec(codec: Codec): string {
  return codec.kind === 'topk'
    ? `topk:${codec.fraction}${codec.values === '2bit' ? ':2bit' : ''}`
    : codec.kind
}

/** Throws unless every value is finite: a NaN in a delta means the trainer diverged, and it would poison every aggregate. */
export function assertFinite(tensor: NamedTensor, what: string): void {
  const data = tensor.data
  for (let i = 0; i < data.length; i++)
    if (!Number.isFinite(data[i] as number))
      throw new ProtocolError('SCHEMA', `${what} ${tensor.name}: non-finite value at ${i}`)
}

export function compareCodeUnits(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}

/** Values kept per tensor by top-k: ceil(fraction * n), at least one for a non-empty tensor. */
export function topkCount(elements: number, fraction: number): number {
  if (elements === 0) return 0
  return Math.min(elements, Math.max(1, Math.ceil(fraction * elements)))
}

/** The element count of a model tensor's shape, refused above DELTA_MAX_ELEMENTS_PER_TENSOR. */
export function checkDenseShape(name: string, shape: readonly number[]): number {
  const count = elementCount(shape)
  if (!(count <= DELTA_MAX_ELEMENTS_PER_TENSOR))
    throw new ProtocolError('TOO_LARGE', `${name}: ${count} elements exceed ${DELTA_MAX_ELEMENTS_PER_TENSOR}`)
  return count
}

/** A model tensor's name and shape: what every delta of the model must match. */
export interface TensorLayout {
  name: string
  shape: readonly number[]
}

/** A layout tensor with its element count, as the decoders walk it. */
export interface LayoutTensor {
  name: string
  shape: number[]
  count: number
}

/** The layout sorted by name, each tensor's element count checked; a malformed layout is the caller's bug. */
export function sortedLayout(layout: readonly TensorLayout[]): LayoutTensor[] {
  const sorted = layout
    .map((t) => {
      if (typeof t.name !== 'string' || t.name.length === 0)
        throw new ProtocolError('SCHEMA', 'layout: tensor without a name')
      if (!Array.isArray(t.shape) || !t.shape.every((d) => Number.isSafeInteger(d) && d >= 0))
        throw new ProtocolError('SCHEMA', `layout ${t.name}: invalid shape`)
      return { name: t.name, shape: [...t.shape], count: checkDenseShape(t.name, t.shape) }
    })
    .sort((a, b) => compareCodeUnits(a.name, b.name))
  for (let t = 1; t < sorted.length; t++)
    if ((sorted[t - 1] as LayoutTensor).name === (sorted[t] as LayoutTensor).name)
      throw new ProtocolError('SCHEMA', `layout: tensor ${(sorted[t] as LayoutTensor).name} twice`)
  return sorted
}

/** Values the 2-bit layout keeps of a tensor of `count` elements at k per chunk. */
export function keptIn2bit(count: number, k: number): number {
  const chunks = Math.ceil(count / TOPK_CHUNK)
  return chunks === 0
    ? 0
    : (chunks - 1) * Math.min(k, TOPK_CHUNK) + Math.min(k, count - (chunks - 1) * TOPK_CHUNK)
}
