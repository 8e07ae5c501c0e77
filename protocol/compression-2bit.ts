// The chunked 2-bit top-k layout of a pseudo-gradient, encoder and strict decoder; compression.ts
// uses it for the codec `topk:<fraction>:2bit`.
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
import { ProtocolError } from './errors.ts'
import type { TensorEntry } from './safetensors.ts'
import { TOPK_CHUNK, keptIn2bit, topkCount } from './codec.ts'
import type { Codec, LayoutTensor, NamedTensor } from './codec.ts'

/** Prefix of the 2-bit layout's entries: no model tensor name starts with '@'. */
export const FLAT_PREFIX = '@topk.'
export const FLAT_CHUNK = `${FLAT_PREFIX}chunk`
const FLAT_COUNT = `${FLAT_PREFIX}count`
export const FLAT_IDX = `${FLAT_PREFIX}idx`
export const FLAT_LEVELS = `${FLAT_PREFIX}levels`
const FLAT_VAL = `${FLAT_PREFIX}val`

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
export function encodeTopk2bit(
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

/**
 * Decodes the 2-bit layout (see the module comment) against `layout`, the model's tensor names
 * and shapes; strict: exactly the five entries, counts equal to the layout's, every offset in
 * range and ascending within its chunk, levels ordered and finite, no stray bits or bytes.
 */
export function decodeTopk2bit(
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
