// Codecs for pseudo-gradients (round-start weights minus local weights) sent by trainers.
// The publisher and every verifying peer decode the same bytes to the same floats, so the
// decoder is strict: every entry must belong to exactly one tensor of exactly one codec.
//
// Entry layout inside the safetensors payload (names are the model's tensor names):
//   none  : `<name>` F32 (dense)
//   int8  : `<name>` I8 + `<name>.scale` F32[1]; value = q * scale, scale = maxabs / 127 (rounded up to F32)
//   topk  : `<name>.idx` I32[k] (strictly ascending flat indices) + `<name>.val` F32[k]
//           + `<name>.shape` I32[rank] (the dense shape, which idx/val cannot carry)
//   topk, 2-bit values: five entries for the whole model (compression-2bit.ts)
//
// Error feedback (Seide et al. 2014; Karimireddy et al. 2019): the caller keeps the residual
// (what compression dropped) and passes it back next round, so dropped mass is sent later
// instead of lost. Every codec returns it; for `none` it is zero.
import { ProtocolError } from './errors.ts'
import type { TensorEntry } from './safetensors.ts'
import {
  DELTA_MAX_ELEMENTS_PER_TENSOR,
  INT8_LEVELS,
  TOPK_CHUNK,
  TOPK_MIN_FRACTION,
  assertFinite,
  checkCodec,
  compareCodeUnits,
  elementCount,
  formatCodec,
  keptIn2bit,
  parseCodec,
  sortedLayout,
  topkCount,
} from './codec.ts'
import type { Codec, NamedTensor, TensorLayout } from './codec.ts'
import {
  FLAT_CHUNK,
  FLAT_IDX,
  FLAT_LEVELS,
  FLAT_PREFIX,
  decodeTopk2bit,
  encodeTopk2bit,
} from './compression-2bit.ts'

export {
  DELTA_MAX_ELEMENTS_PER_TENSOR,
  INT8_LEVELS,
  TOPK_CHUNK,
  TOPK_MIN_FRACTION,
  assertFinite,
  formatCodec,
  parseCodec,
  topkCount,
}
export type { Codec, NamedTensor, TensorLayout }

const SUFFIX_SCALE = '.scale'
const SUFFIX_IDX = '.idx'
const SUFFIX_VAL = '.val'
const SUFFIX_SHAPE = '.shape'

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
 * Bytes a per-step data-parallel exchange of dense fp32 gradients would send in one round of
 * `innerSteps` steps: the baseline the compression ratio is reported against (issue 4).
 */
export function bytesPerRoundDense(parameters: number, innerSteps: number): number {
  return innerSteps * 4 * parameters
}
