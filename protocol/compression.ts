// Codecs for pseudo-gradients (round-start weights minus local weights) sent by trainers.
// The publisher and every verifying peer decode the same bytes to the same floats, so the
// decoder is strict: every entry must belong to exactly one tensor of exactly one codec.
//
// Entry layout inside the safetensors payload (names are the model's tensor names):
//   none  : `<name>` F32 (dense)
//   int8  : `<name>` I8 + `<name>.scale` F32[1]; value = q * scale, scale = maxabs / 127 (rounded up to F32)
//   topk  : `<name>.idx` I32[k] (strictly ascending flat indices) + `<name>.val` F32[k]
//           + `<name>.shape` I32[rank] (the dense shape, which idx/val cannot carry)
//   topk, 2-bit values (SparseLoCo-style, arXiv 2508.15706): five entries for the whole model,
//           so the header does not outweigh the data (a 150k-parameter U-Net has ~110 tensors).
//           Tensors are taken in name order, each cut into chunks of TOPK_CHUNK consecutive
//           elements (a tensor's last chunk may be shorter); every chunk keeps its k largest
//           magnitudes (all of a chunk shorter than k):
//             `@topk.chunk`  I32[2] = [TOPK_CHUNK, k]
//             `@topk.count`  I32[T] = element count of each tensor (checked against the model's)
//             `@topk.idx`    U8[kept] = each chunk's kept offsets, strictly ascending within the chunk
//                            (empty when k = TOPK_CHUNK: every element is kept, dense 2-bit)
//             `@topk.levels` F32[2T] = per tensor [small, large] magnitudes, 0 <= small <= large
//             `@topk.val`    U8[ceil(kept/4)] = 2-bit codes, four per byte from the low bits up,
//                            unused high bits zero: bit 1 = sign (1 negative), bit 0 = level
//           About 1.25 bytes per kept value against 8 for the I32/F32 layout. Decoding needs the
//           model's tensor names and shapes (the receiver's parent checkpoint), which the
//           entries do not repeat.
//
// Error feedback (Seide et al. 2014; Karimireddy et al. 2019): the caller keeps the residual
// (what compression dropped) and passes it back next round, so dropped mass is sent later
// instead of lost. Every codec returns it; for `none` it is zero.
import { ProtocolError } from './errors.ts'
import type { TensorEntry } from './safetensors.ts'

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

const SUFFIX_SCALE = '.scale'
/** Prefix of the 2-bit layout's entries: no model tensor name starts with '@'. */
const FLAT_PREFIX = '@topk.'
const FLAT_CHUNK = `${FLAT_PREFIX}chunk`
const FLAT_COUNT = `${FLAT_PREFIX}count`
const FLAT_IDX = `${FLAT_PREFIX}idx`
const FLAT_LEVELS = `${FLAT_PREFIX}levels`
const FLAT_VAL = `${FLAT_PREFIX}val`
const SUFFIX_IDX = '.idx'
const SUFFIX_VAL = '.val'
const SUFFIX_SHAPE = '.shape'

function elementCount(shape: readonly number[]): number {
  let count = 1
  for (const dim of shape) count *= dim
  return count
}

function checkCodec(codec: Codec): void {
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

function checkTensor(tensor: NamedTensor, what: string): void {
  if (typeof tensor.name !== 'string' || tensor.name.length === 0)
    throw new ProtocolError('SCHEMA', `${what}: tensor without a name`)
  if (!(tensor.data instanceof Float32Array))
    throw new ProtocolError('SCHEMA', `${what} ${tensor.name}: data must be a Float32Array`)
  if (!Array.isArray(tensor.shape) || !tensor.shape.every((d) => Number.isSafeInteger(d) && d >= 0))
    throw new ProtocolError('SCHEMA', `${what} ${tensor.name}: invalid shape`)
  if (elementCount(tensor.shape) !== tensor.data.length)
    throw new ProtocolError(
      'SCHEMA',
      `${what} ${tensor.name}: ${tensor.data.length} values for shape [${tensor.shape.join(',')}]`,
    )
}

/** Throws unless every value is finite: a NaN in a delta means the trainer diverged, and it would poison every aggregate. */
export function assertFinite(tensor: NamedTensor, what: string): void {
  const data = tensor.data
  for (let i = 0; i < data.length; i++)
    if (!Number.isFinite(data[i] as number))
      throw new ProtocolError('SCHEMA', `${what} ${tensor.name}: non-finite value at ${i}`)
}

function compareCodeUnits(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}

/** delta + residual, rounded to float32 per element: the values the codec actually encodes. */
function withResidual(delta: NamedTensor, residual: NamedTensor | undefined): Float32Array {
  if (residual === undefined) return Float32Array.from(delta.data)
  if (residual.data.length !== delta.data.length || residual.shape.join(',') !== delta.shape.join(','))
    throw new ProtocolError('SCHEMA', `residual ${residual.name} does not match the delta's shape`)
  const out = new Float32Array(delta.data.length)
  for (let i = 0; i < out.length; i++) out[i] = (delta.data[i] as number) + (residual.data[i] as number)
  return out
}

const SCALE_F32 = new Float32Array(1)
const SCALE_BITS = new Uint32Array(SCALE_F32.buffer)

/**
 * maxAbs / 127 rounded UP to float32, so that |x| / scale <= 127 for every value and no value is
 * clipped: rounding to nearest could give a scale slightly too small (and 0 for subnormal maxAbs,
 * which would silently zero a tiny but non-zero tensor).
 */
export function int8Scale(maxAbs: number): number {
  const nearest = Math.fround(maxAbs / INT8_LEVELS)
  if (nearest * INT8_LEVELS >= maxAbs) return nearest
  SCALE_F32[0] = nearest
  SCALE_BITS[0] = (SCALE_BITS[0] as number) + 1
  return SCALE_F32[0] as number
}

/** Symmetric int8 quantisation, rounding half away from zero so that q(-x) = -q(x). */
function quantiseInt8(values: Float32Array): { q: Int8Array; scale: number } {
  let maxAbs = 0
  for (let i = 0; i < values.length; i++) {
    const a = Math.abs(values[i] as number)
    if (a > maxAbs) maxAbs = a
  }
  const scale = int8Scale(maxAbs)
  const q = new Int8Array(values.length)
  if (scale === 0) return { q, scale }
  for (let i = 0; i < values.length; i++) {
    const x = (values[i] as number) / scale
    const r = Math.sign(x) * Math.floor(Math.abs(x) + 0.5)
    q[i] = Math.max(-INT8_LEVELS, Math.min(INT8_LEVELS, r))
  }
  return { q, scale }
}

/**
 * The k flat indices of largest |value| (ties: lower index first, so the choice is the same on
 * every machine), returned in ascending order.
 */
function topIndices(values: Float32Array, k: number): Int32Array {
  const order = new Int32Array(values.length)
  for (let i = 0; i < order.length; i++) order[i] = i
  order.sort((a, b) => Math.abs(values[b] as number) - Math.abs(values[a] as number) || a - b)
  return order.subarray(0, k).sort()
}

/** Values kept per tensor by top-k: ceil(fraction * n), at least one for a non-empty tensor. */
export function topkCount(elements: number, fraction: number): number {
  if (elements === 0) return 0
  return Math.min(elements, Math.max(1, Math.ceil(fraction * elements)))
}

/**
 * The two magnitudes of the 2-bit layout for the kept |values| (sorted ascending): a 1-D
 * two-means (Lloyd) split, started at the median, a fixed 8 iterations so every machine does
 * the same float64 operations. Returned rounded to float32, small <= large.
 */
function twoLevels(sortedMagnitudes: Float64Array): [number, number] {
  const n = sortedMagnitudes.length
  if (n === 0) return [0, 0]
  let split = Math.floor(n / 2) // first index of the large group
  let small = 0
  let large = 0
  for (let iteration = 0; iteration < 8; iteration++) {
    let sumSmall = 0
    for (let i = 0; i < split; i++) sumSmall += sortedMagnitudes[i] as number
    let sumLarge = 0
    for (let i = split; i < n; i++) sumLarge += sortedMagnitudes[i] as number
    large = sumLarge / (n - split)
    small = split === 0 ? large : sumSmall / split
    const threshold = (small + large) / 2
    let next = 0
    while (next < n && (sortedMagnitudes[next] as number) < threshold) next++
    if (next === n) next = n - 1
    if (next === split) break
    split = next
  }
  const a = Math.fround(small)
  const b = Math.fround(large)
  return a <= b ? [a, b] : [b, a]
}

/** 2-bit code of `value` against the levels: sign bit 1, level bit 0 (the nearer magnitude; ties to small). */
function twoBitCode(value: number, levels: readonly [number, number]): number {
  const magnitude = Math.abs(value)
  const level = magnitude - levels[0] > levels[1] - magnitude ? 1 : 0
  return ((value < 0 ? 1 : 0) << 1) | level
}

function twoBitValue(code: number, levels: readonly [number, number]): number {
  const magnitude = levels[code & 1] as number
  return code & 2 ? -magnitude : magnitude
}

/** Kept offsets of one chunk: the k largest |values| (ties: lower offset), ascending. */
function chunkTopOffsets(values: Float32Array, start: number, length: number, k: number): number[] {
  const offsets = Array.from({ length }, (_, i) => i)
  offsets.sort(
    (a, b) => Math.abs(values[start + b] as number) - Math.abs(values[start + a] as number) || a - b,
  )
  return offsets.slice(0, k).sort((a, b) => a - b)
}

/** The 2-bit layout's five entries for `tensors` (sorted by name); fills `left` per tensor. */
function encodeTopk2bit(
  tensors: { values: Float32Array; left: Float32Array }[],
  fraction: number,
): TensorEntry[] {
  const k = topkCount(TOPK_CHUNK, fraction)
  const offsets: number[] = []
  const codes: number[] = []
  const levels = new Float32Array(2 * tensors.length)
  tensors.forEach(({ values, left }, t) => {
    const kept: number[] = []
    for (let start = 0; start < values.length; start += TOPK_CHUNK) {
      const length = Math.min(TOPK_CHUNK, values.length - start)
      for (const offset of chunkTopOffsets(values, start, length, Math.min(k, length))) {
        // k = TOPK_CHUNK keeps every element: dense 2-bit, the offsets are implied and not sent.
        if (k < TOPK_CHUNK) offsets.push(offset)
        kept.push(start + offset)
      }
    }
    const pair = twoLevels(Float64Array.from(kept, (i) => Math.abs(values[i] as number)).sort())
    levels[2 * t] = pair[0]
    levels[2 * t + 1] = pair[1]
    left.set(values)
    for (const i of kept) {
      const code = twoBitCode(values[i] as number, pair)
      codes.push(code)
      left[i] = (values[i] as number) - Math.fround(twoBitValue(code, pair))
    }
  })
  const packed = new Uint8Array(Math.ceil(codes.length / 4))
  codes.forEach((code, j) => {
    packed[j >> 2] = (packed[j >> 2] as number) | (code << ((j & 3) * 2))
  })
  return [
    { name: FLAT_CHUNK, dtype: 'I32', shape: [2], data: Int32Array.from([TOPK_CHUNK, k]) },
    {
      name: FLAT_COUNT,
      dtype: 'I32',
      shape: [tensors.length],
      data: Int32Array.from(tensors, (t) => t.values.length),
    },
    { name: FLAT_IDX, dtype: 'U8', shape: [offsets.length], data: Uint8Array.from(offsets) },
    { name: FLAT_LEVELS, dtype: 'F32', shape: [levels.length], data: levels },
    { name: FLAT_VAL, dtype: 'U8', shape: [packed.length], data: packed },
  ]
}

export interface CompressedDelta {
  /** Safetensors entries to encode with `encodeSafetensors` (sorted by name). */
  entries: TensorEntry[]
  /** (delta + old residual) minus what the entries decode to: pass it to the next round's call. */
  residual: NamedTensor[]
}

/**
 * Compresses a pseudo-gradient. `residual` (from the previous call, same names and shapes) is
 * added first; the returned residual is exactly what the entries do not carry.
 */
export function compressDelta(delta: NamedTensor[], codec: Codec, residual?: NamedTensor[]): CompressedDelta {
  checkCodec(codec)
  const residualByName = new Map<string, NamedTensor>()
  for (const r of residual ?? []) {
    checkTensor(r, 'residual')
    residualByName.set(r.name, r)
  }
  const sorted = [...delta].sort((a, b) => compareCodeUnits(a.name, b.name))
  const entries: TensorEntry[] = []
  const nextResidual: NamedTensor[] = []
  const flat: { values: Float32Array; left: Float32Array }[] = []
  for (let t = 0; t < sorted.length; t++) {
    const tensor = sorted[t] as NamedTensor
    checkTensor(tensor, 'delta')
    assertFinite(tensor, 'delta')
    if (t > 0 && (sorted[t - 1] as NamedTensor).name === tensor.name)
      throw new ProtocolError('SCHEMA', `duplicate tensor ${tensor.name}`)
    if (residual !== undefined && !residualByName.has(tensor.name))
      throw new ProtocolError('SCHEMA', `no residual for ${tensor.name}`)
    const values = withResidual(tensor, residualByName.get(tensor.name))
    assertFinite({ ...tensor, data: values }, 'delta + residual')
    const shape = [...tensor.shape]
    const left = new Float32Array(values.length)
    if (codec.kind === 'none') {
      entries.push({ name: tensor.name, dtype: 'F32', shape, data: values })
    } else if (codec.kind === 'int8') {
      const { q, scale } = quantiseInt8(values)
      entries.push({ name: tensor.name, dtype: 'I8', shape, data: q })
      entries.push({
        name: tensor.name + SUFFIX_SCALE,
        dtype: 'F32',
        shape: [1],
        data: new Float32Array([scale]),
      })
      for (let i = 0; i < values.length; i++)
        left[i] = (values[i] as number) - Math.fround((q[i] as number) * scale)
    } else if (codec.values === '2bit') {
      if (tensor.name.startsWith('@'))
        throw new ProtocolError('SCHEMA', `tensor name ${tensor.name} is reserved by the 2-bit layout`)
      flat.push({ values, left })
    } else {
      const k = topkCount(values.length, codec.fraction)
      const idx = topIndices(values, k)
      const val = new Float32Array(k)
      left.set(values)
      for (let j = 0; j < k; j++) {
        const i = idx[j] as number
        val[j] = values[i] as number
        left[i] = 0
      }
      entries.push({ name: tensor.name + SUFFIX_IDX, dtype: 'I32', shape: [k], data: Int32Array.from(idx) })
      entries.push({ name: tensor.name + SUFFIX_VAL, dtype: 'F32', shape: [k], data: val })
      entries.push({
        name: tensor.name + SUFFIX_SHAPE,
        dtype: 'I32',
        shape: [shape.length],
        data: Int32Array.from(shape),
      })
    }
    nextResidual.push({ name: tensor.name, shape, data: left })
  }
  if (residual !== undefined && residualByName.size !== sorted.length)
    throw new ProtocolError('SCHEMA', 'residual names do not match the delta')
  if (codec.kind === 'topk' && codec.values === '2bit') entries.push(...encodeTopk2bit(flat, codec.fraction))
  entries.sort((a, b) => compareCodeUnits(a.name, b.name))
  return { entries, residual: nextResidual }
}

function checkDenseShape(name: string, shape: readonly number[]): number {
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

interface LayoutTensor {
  name: string
  shape: number[]
  count: number
}

/** The layout sorted by name, each tensor's element count checked; a malformed layout is the caller's bug. */
function sortedLayout(layout: readonly TensorLayout[]): LayoutTensor[] {
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

/** The names and shapes of `tensors`, sorted by name: the layout their deltas must fit. */
export function layoutOf(tensors: readonly TensorLayout[]): TensorLayout[] {
  return sortedLayout(tensors).map((t) => ({ name: t.name, shape: t.shape }))
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i])
}

/** One entry of the payload with exactly this dtype and shape: anything else does not fit the model. */
function expectEntry(
  entries: Map<string, TensorEntry>,
  used: Set<string>,
  name: string,
  dtype: TensorEntry['dtype'],
  shape: readonly number[],
): TensorEntry {
  const entry = entries.get(name)
  if (entry === undefined) throw new ProtocolError('LAYOUT_MISMATCH', `missing entry ${name}`)
  if (entry.dtype !== dtype)
    throw new ProtocolError('LAYOUT_MISMATCH', `${name} must be ${dtype}, is ${entry.dtype}`)
  if (!sameShape(entry.shape, shape))
    throw new ProtocolError(
      'LAYOUT_MISMATCH',
      `${name} has shape [${entry.shape.join(',')}], the model needs [${shape.join(',')}]`,
    )
  if (used.has(name)) throw new ProtocolError('SCHEMA', `entry ${name} claimed twice`)
  used.add(name)
  return entry
}

/** One entry of the 2-bit layout with this dtype: its length is checked against the layout by the caller. */
function take(
  entries: Map<string, TensorEntry>,
  used: Set<string>,
  name: string,
  dtype: TensorEntry['dtype'],
): TensorEntry {
  const entry = entries.get(name)
  if (entry === undefined) throw new ProtocolError('SCHEMA', `missing entry ${name}`)
  if (entry.dtype !== dtype) throw new ProtocolError('SCHEMA', `${name} must be ${dtype}, is ${entry.dtype}`)
  if (used.has(name)) throw new ProtocolError('SCHEMA', `entry ${name} claimed twice`)
  used.add(name)
  return entry
}

/** Safetensors entries each codec writes per model tensor. */
const ENTRIES_PER_TENSOR: Record<Codec['kind'], number> = { none: 1, int8: 2, topk: 3 }

/** Which codec wrote `entries`: top-k leaves `.idx` tensors, int8 leaves I8 tensors, none leaves only F32. */
export function detectCodec(entries: Map<string, TensorEntry>): Codec['kind'] {
  let kind: Codec['kind'] = 'none'
  for (const entry of entries.values()) {
    if (entry.dtype === 'I32' && entry.name.endsWith(SUFFIX_IDX)) return 'topk'
    if (entry.name.startsWith(FLAT_PREFIX)) return 'topk'
    if (entry.dtype === 'I8') kind = 'int8'
  }
  return kind
}

/**
 * Decodes entries written by `compressDelta` back to dense float32 tensors of the model
 * `layout`, sorted by name. The layout decides what is allocated: every entry's name, dtype and
 * shape is checked against it before a dense tensor is made, so a payload that declares a huge
 * shape costs nothing (memory stays within the model's size, whatever the payload claims).
 * With `codec` (the charter's), the payload must use it, and top-k must keep exactly
 * `topkCount(n, fraction)` values per tensor, as the encoder does.
 * Throws ProtocolError LAYOUT_MISMATCH for a payload that does not fit the model (a tensor
 * missing or extra, another dtype, shape or codec), SCHEMA for anything else a correct encoder
 * cannot produce (indices out of range or not ascending, a non-finite value or scale).
 */
export function decompressDelta(
  entries: Map<string, TensorEntry>,
  layout: readonly TensorLayout[],
  codec?: Codec,
): NamedTensor[] {
  if (entries.has(FLAT_CHUNK) || entries.has(FLAT_IDX)) {
    if (codec !== undefined) {
      checkCodec(codec)
      if (codec.kind !== 'topk' || codec.values !== '2bit')
        throw new ProtocolError(
          'LAYOUT_MISMATCH',
          `payload is topk 2-bit, the charter's codec is ${formatCodec(codec)}`,
        )
    }
    return decodeTopk2bit(entries, sortedLayout(layout), codec)
  }
  const model = sortedLayout(layout)
  const kind = detectCodec(entries)
  if (codec !== undefined) {
    checkCodec(codec)
    if (codec.kind !== kind || (codec.kind === 'topk' && codec.values === '2bit'))
      throw new ProtocolError(
        'LAYOUT_MISMATCH',
        `payload is ${kind}, the charter's codec is ${formatCodec(codec)}`,
      )
  }
  // Cheapest first: a payload with another number of entries cannot fit.
  const expected = model.length * ENTRIES_PER_TENSOR[kind]
  if (entries.size !== expected)
    throw new ProtocolError(
      'LAYOUT_MISMATCH',
      `${entries.size} entries, the model's ${model.length} tensors under ${kind} need ${expected}`,
    )
  const used = new Set<string>()
  const out: NamedTensor[] = []
  for (const { name, shape, count } of model) {
    if (kind === 'none') {
      const entry = expectEntry(entries, used, name, 'F32', shape)
      const tensor = { name, shape: [...shape], data: Float32Array.from(entry.data as Float32Array) }
      assertFinite(tensor, 'delta')
      out.push(tensor)
    } else if (kind === 'int8') {
      const q = expectEntry(entries, used, name, 'I8', shape).data as Int8Array
      const scale = expectEntry(entries, used, name + SUFFIX_SCALE, 'F32', [1]).data[0] as number
      if (!(Number.isFinite(scale) && scale >= 0))
        throw new ProtocolError('SCHEMA', `${name}: scale must be finite and non-negative`)
      for (let i = 0; i < q.length; i++)
        if ((q[i] as number) < -INT8_LEVELS)
          throw new ProtocolError('SCHEMA', `${name}: int8 value -128 is outside the symmetric range`)
      const data = new Float32Array(count)
      for (let i = 0; i < count; i++) data[i] = (q[i] as number) * scale
      out.push({ name, shape: [...shape], data })
    } else {
      const declared = entries.get(name + SUFFIX_IDX)?.shape
      // k is the charter's when we know it, else whatever the payload says up to the tensor's size.
      const k =
        codec?.kind === 'topk'
          ? topkCount(count, codec.fraction)
          : declared?.length === 1 && (declared[0] as number) <= count
            ? (declared[0] as number)
            : count
      const idx = expectEntry(entries, used, name + SUFFIX_IDX, 'I32', [k]).data as Int32Array
      const val = expectEntry(entries, used, name + SUFFIX_VAL, 'F32', [k]).data as Float32Array
      const denseShape = expectEntry(entries, used, name + SUFFIX_SHAPE, 'I32', [shape.length])
        .data as Int32Array
      if (!sameShape(Array.from(denseShape), shape))
        throw new ProtocolError(
          'LAYOUT_MISMATCH',
          `${name}: top-k shape [${Array.from(denseShape).join(',')}], the model needs [${shape.join(',')}]`,
        )
      const data = new Float32Array(count)
      let previous = -1
      for (let j = 0; j < k; j++) {
        const i = idx[j] as number
        if (!(i > previous && i < count))
          throw new ProtocolError('SCHEMA', `${name}: indices must be ascending and below ${count}`)
        const v = val[j] as number
        if (!Number.isFinite(v)) throw new ProtocolError('SCHEMA', `${name}: non-finite value`)
        data[i] = v
        previous = i
      }
      out.push({ name, shape: [...shape], data })
    }
  }
  for (const name of entries.keys())
    if (!used.has(name))
      throw new ProtocolError('LAYOUT_MISMATCH', `entry ${name} belongs to no model tensor`)
  return out
}

/** Values the 2-bit layout keeps of a tensor of `count` elements at k per chunk. */
function keptIn2bit(count: number, k: number): number {
  const chunks = Math.ceil(count / TOPK_CHUNK)
  return chunks === 0
    ? 0
    : (chunks - 1) * Math.min(k, TOPK_CHUNK) + Math.min(k, count - (chunks - 1) * TOPK_CHUNK)
}

/** Header bytes one safetensors entry can take: its JSON-escaped name plus dtype, offsets and shape. */
function headerBytesBound(name: string, rank: number): number {
  // Worst-case JSON escaping is 6 bytes per UTF-16 unit; offsets are at most 16 digits; dims 17 with a comma.
  return 6 * name.length + 64 + 2 * 17 + 17 * rank
}

/**
 * The largest safetensors payload a correct encoder writes for `layout` under `codec`. Fetches
 * and decodes of a contribution are capped here, so the bytes held for one payload, and the
 * copies the decoder makes, stay within a small multiple of the model's size.
 */
export function payloadMaxBytes(layout: readonly TensorLayout[], codec: Codec): number {
  checkCodec(codec)
  const model = sortedLayout(layout)
  if (codec.kind === 'topk' && codec.values === '2bit') {
    // Five entries for the whole model: chunk, counts, offsets, levels, packed 2-bit values.
    const k = topkCount(TOPK_CHUNK, codec.fraction)
    let kept = 0
    for (const { count } of model) kept += keptIn2bit(count, k)
    const header = 2 + 5 * headerBytesBound(FLAT_LEVELS, 1)
    const data = 8 + 4 * model.length + (k === TOPK_CHUNK ? 0 : kept) + 8 * model.length + Math.ceil(kept / 4)
    return 8 + header + 7 + data
  }
  let header = 2
  let data = 0
  for (const { name, shape, count } of model) {
    if (codec.kind === 'none') {
      header += headerBytesBound(name, shape.length)
      data += 4 * count
    } else if (codec.kind === 'int8') {
      header += headerBytesBound(name, shape.length) + headerBytesBound(name + SUFFIX_SCALE, 1)
      data += count + 4
    } else {
      const k = topkCount(count, codec.fraction)
      header +=
        headerBytesBound(name + SUFFIX_IDX, 1) +
        headerBytesBound(name + SUFFIX_VAL, 1) +
        headerBytesBound(name + SUFFIX_SHAPE, 1)
      data += 8 * k + 4 * shape.length
    }
  }
  // 8-byte length prefix, header padded to a multiple of 8.
  return 8 + header + 7 + data
}

/**
 * How many values a correct payload under `codec` carries for `layout`: every element for the
 * dense codecs, k per tensor for top-k. The root mean square of a delta over this count measures
 * what it actually moves, whatever the codec drops.
 */
export function carriedValues(layout: readonly TensorLayout[], codec: Codec): number {
  checkCodec(codec)
  let carried = 0
  for (const { count } of sortedLayout(layout))
    carried +=
      codec.kind !== 'topk'
        ? count
        : codec.values === '2bit'
          ? keptIn2bit(count, topkCount(TOPK_CHUNK, codec.fraction))
          : topkCount(count, codec.fraction)
  return carried
}

/** sqrt(Σ v² / carried values) of a decoded delta, in float64, tensors in name order. */
export function carriedRms(delta: readonly NamedTensor[], codec: Codec): number {
  const carried = carriedValues(delta, codec)
  if (carried === 0) return 0
  let sum = 0
  for (const tensor of [...delta].sort((a, b) => compareCodeUnits(a.name, b.name))) {
    const data = tensor.data
    for (let i = 0; i < data.length; i++) sum += (data[i] as number) * (data[i] as number)
  }
  return Math.sqrt(sum / carried)
}

/**
 * Decodes the 2-bit layout (see the module comment) against `layout`, the model's tensor names
 * and shapes; strict: exactly the five entries, counts equal to the layout's, every offset in
 * range and ascending within its chunk, levels ordered and finite, no stray bits or bytes.
 */
function decodeTopk2bit(
  entries: Map<string, TensorEntry>,
  sorted: readonly LayoutTensor[],
  codec?: Codec,
): NamedTensor[] {
  const used = new Set<string>()
  const chunk = take(entries, used, FLAT_CHUNK, 'I32').data as Int32Array
  const counts = take(entries, used, FLAT_COUNT, 'I32').data as Int32Array
  const idx = take(entries, used, FLAT_IDX, 'U8').data as Uint8Array
  const levels = take(entries, used, FLAT_LEVELS, 'F32').data as Float32Array
  const val = take(entries, used, FLAT_VAL, 'U8').data as Uint8Array
  for (const name of entries.keys())
    if (!used.has(name))
      throw new ProtocolError('SCHEMA', `entry ${name} does not belong to the 2-bit layout`)
  if (chunk.length !== 2 || chunk[0] !== TOPK_CHUNK)
    throw new ProtocolError('SCHEMA', `${FLAT_CHUNK} must be [${TOPK_CHUNK}, k]`)
  const k = chunk[1] as number
  if (!(k >= 1 && k <= TOPK_CHUNK)) throw new ProtocolError('SCHEMA', 'k per chunk out of range')
  if (codec?.kind === 'topk' && k !== topkCount(TOPK_CHUNK, codec.fraction))
    throw new ProtocolError(
      'LAYOUT_MISMATCH',
      `k=${k} per chunk, the charter's codec keeps ${topkCount(TOPK_CHUNK, codec.fraction)}`,
    )
  if (counts.length !== sorted.length)
    throw new ProtocolError(
      'LAYOUT_MISMATCH',
      `the payload covers ${counts.length} tensors, the model has ${sorted.length}`,
    )
  if (levels.length !== 2 * sorted.length)
    throw new ProtocolError('SCHEMA', `${levels.length} levels for ${sorted.length} tensors`)
  let kept = 0
  const sizes = sorted.map((tensor, t) => {
    const count = tensor.count
    if (counts[t] !== count)
      throw new ProtocolError(
        'LAYOUT_MISMATCH',
        `${tensor.name}: ${counts[t]} elements in the payload, ${count} in the model`,
      )
    const small = levels[2 * t] as number
    const large = levels[2 * t + 1] as number
    if (!(Number.isFinite(small) && Number.isFinite(large) && small >= 0 && small <= large))
      throw new ProtocolError('SCHEMA', `${tensor.name}: levels must be finite magnitudes, small <= large`)
    kept += keptIn2bit(count, k)
    return count
  })
  const dense = k === TOPK_CHUNK
  if (idx.length !== (dense ? 0 : kept))
    throw new ProtocolError('SCHEMA', `${idx.length} offsets, ${dense ? 0 : kept} expected for k=${k}`)
  if (val.length !== Math.ceil(kept / 4))
    throw new ProtocolError('SCHEMA', `${val.length} value bytes for ${kept} values`)
  if (kept % 4 !== 0 && (val[val.length - 1] as number) >> ((kept % 4) * 2) !== 0)
    throw new ProtocolError('SCHEMA', 'unused value bits must be zero')
  let j = 0
  return sorted.map((tensor, t) => {
    const count = sizes[t] as number
    const pair: [number, number] = [levels[2 * t] as number, levels[2 * t + 1] as number]
    const data = new Float32Array(count)
    for (let start = 0; start < count; start += TOPK_CHUNK) {
      const length = Math.min(TOPK_CHUNK, count - start)
      let previous = -1
      for (let n = 0; n < Math.min(k, length); n++, j++) {
        const offset = dense ? n : (idx[j] as number)
        if (!(offset > previous && offset < length))
          throw new ProtocolError('SCHEMA', `${tensor.name}: offsets must ascend within each chunk`)
        previous = offset
        data[start + offset] = twoBitValue(((val[j >> 2] as number) >> ((j & 3) * 2)) & 3, pair)
      }
    }
    return { name: tensor.name, shape: [...tensor.shape], data }
  })
}

/**
 * Bytes a per-step data-parallel exchange of dense fp32 gradients would send in one round of
 * `innerSteps` steps: the baseline the compression ratio is reported against (issue 4).
 */
export function bytesPerRoundDense(parameters: number, innerSteps: number): number {
  return innerSteps * 4 * parameters
}
