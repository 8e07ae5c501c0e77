// The safetensors format (https://github.com/huggingface/safetensors), so a researcher can
// open any delta or checkpoint with `safetensors.numpy.load_file`:
//   u64 little-endian N | N bytes of UTF-8 JSON header | tensor data
// header: { "<name>": { "dtype", "shape", "data_offsets": [begin, end] }, "__metadata__"?: {string: string} }
// with offsets relative to the start of the data section, tensors packed with no gaps.
// Our encoder is deterministic: tensors sorted by name (UTF-16 code unit order, as JCS),
// data laid out in that order, header keys in JCS order, padded with spaces to a multiple of 8
// so the data section is 8-byte aligned (as the reference implementation does).
import {
  SAFETENSORS_DEFAULT_MAX_BYTES,
  SAFETENSORS_DEFAULT_MAX_TENSORS,
  SAFETENSORS_MAX_HEADER_BYTES,
  SAFETENSORS_MAX_NAME_BYTES,
  SAFETENSORS_MAX_RANK,
} from './constants.ts'
import { ProtocolError } from './errors.ts'

export type DType = 'F32' | 'F16' | 'I8' | 'I32' | 'U8'

export const DTYPES: readonly DType[] = ['F32', 'F16', 'I8', 'I32', 'U8']

export interface TensorEntry {
  name: string
  dtype: DType
  shape: number[]
  /** F32 -> Float32Array, F16 -> Uint16Array of IEEE half bits, I8 -> Int8Array, I32 -> Int32Array, U8 -> Uint8Array. */
  data: Float32Array | Uint16Array | Int8Array | Int32Array | Uint8Array
}

export interface SafetensorsLimits {
  maxBytes?: number
  maxTensors?: number
}

export interface DecodedSafetensors {
  tensors: Map<string, TensorEntry>
  metadata: Record<string, string>
}

const METADATA_KEY = '__metadata__'

const BYTES_PER_ELEMENT: Record<DType, number> = { F32: 4, F16: 2, I8: 1, I32: 4, U8: 1 }

const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1

function expectedArrayType(dtype: DType): string {
  switch (dtype) {
    case 'F32':
      return 'Float32Array'
    case 'F16':
      return 'Uint16Array'
    case 'I8':
      return 'Int8Array'
    case 'I32':
      return 'Int32Array'
    case 'U8':
      return 'Uint8Array'
  }
}

function elementCount(shape: readonly number[]): number {
  let count = 1
  for (const dim of shape) count *= dim
  return count
}

function compareCodeUnits(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}

/** Copies a typed array's bytes in little-endian order. */
function littleEndianBytes(data: TensorEntry['data']): Uint8Array {
  const view = new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
  if (LITTLE_ENDIAN_HOST || data.BYTES_PER_ELEMENT === 1) return view
  const out = new Uint8Array(view.length)
  const width = data.BYTES_PER_ELEMENT
  for (let i = 0; i < view.length; i += width)
    for (let j = 0; j < width; j++) out[i + j] = view[i + width - 1 - j] as number
  return out
}

function headerJson(header: [string, unknown][]): string {
  // Keys sorted by UTF-16 code units, no whitespace: the header is the same bytes for the same tensors.
  const sorted = [...header].sort((a, b) => compareCodeUnits(a[0], b[0]))
  const parts = sorted.map(([key, value]) => `${JSON.stringify(key)}:${JSON.stringify(value)}`)
  return `{${parts.join(',')}}`
}

/** Sets an own property even for names like `__proto__`, which plain assignment would not. */
function defineOwn(target: Record<string, string>, key: string, value: string): void {
  Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true })
}

function validateEntryForEncoding(entry: TensorEntry): void {
  if (typeof entry.name !== 'string' || entry.name.length === 0 || entry.name === METADATA_KEY)
    throw new ProtocolError('SCHEMA', `invalid tensor name ${JSON.stringify(entry.name)}`)
  if (Buffer.byteLength(entry.name, 'utf8') > SAFETENSORS_MAX_NAME_BYTES)
    throw new ProtocolError('TOO_LARGE', `tensor name longer than ${SAFETENSORS_MAX_NAME_BYTES} bytes`)
  if (!DTYPES.includes(entry.dtype))
    throw new ProtocolError('UNKNOWN_TYPE', `unsupported dtype ${String(entry.dtype)} for ${entry.name}`)
  if (
    !Array.isArray(entry.shape) ||
    entry.shape.length > SAFETENSORS_MAX_RANK ||
    !entry.shape.every((d) => Number.isSafeInteger(d) && d >= 0)
  )
    throw new ProtocolError('SCHEMA', `invalid shape for ${entry.name}`)
  if (entry.data?.constructor?.name !== expectedArrayType(entry.dtype))
    throw new ProtocolError(
      'SCHEMA',
      `${entry.name}: dtype ${entry.dtype} needs a ${expectedArrayType(entry.dtype)}`,
    )
  if (entry.data.length !== elementCount(entry.shape))
    throw new ProtocolError(
      'SCHEMA',
      `${entry.name}: ${entry.data.length} elements for shape [${entry.shape.join(',')}]`,
    )
}

/** Deterministic safetensors bytes for `tensors` (any order in, sorted by name out). */
export function encodeSafetensors(tensors: TensorEntry[], metadata?: Record<string, string>): Uint8Array {
  const sorted = [...tensors].sort((a, b) => compareCodeUnits(a.name, b.name))
  const header: [string, unknown][] = []
  let offset = 0
  for (let i = 0; i < sorted.length; i++) {
    const entry = sorted[i] as TensorEntry
    validateEntryForEncoding(entry)
    if (i > 0 && (sorted[i - 1] as TensorEntry).name === entry.name)
      throw new ProtocolError('SCHEMA', `duplicate tensor name ${entry.name}`)
    const end = offset + entry.data.byteLength
    header.push([entry.name, { dtype: entry.dtype, shape: entry.shape, data_offsets: [offset, end] }])
    offset = end
  }
  if (metadata !== undefined && Object.keys(metadata).length > 0) {
    const sortedMetadata: Record<string, string> = {}
    for (const key of Object.keys(metadata).sort(compareCodeUnits)) {
      const value = metadata[key]
      if (typeof value !== 'string')
        throw new ProtocolError('SCHEMA', `metadata value for ${key} must be a string`)
      defineOwn(sortedMetadata, key, value)
    }
    header.push([METADATA_KEY, sortedMetadata])
  }
  const json = Buffer.from(headerJson(header), 'utf8')
  const headerLength = Math.ceil(json.length / 8) * 8
  if (headerLength > SAFETENSORS_MAX_HEADER_BYTES)
    throw new ProtocolError('TOO_LARGE', 'safetensors header too large')
  const out = new Uint8Array(8 + headerLength + offset)
  new DataView(out.buffer).setBigUint64(0, BigInt(headerLength), true)
  out.set(json, 8)
  out.fill(0x20, 8 + json.length, 8 + headerLength)
  let position = 8 + headerLength
  for (const entry of sorted) {
    out.set(littleEndianBytes(entry.data), position)
    position += entry.data.byteLength
  }
  return out
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function typedArrayFrom(dtype: DType, bytes: Uint8Array): TensorEntry['data'] {
  // Copy into a fresh, aligned buffer: the file's data offsets need not be aligned.
  const copy = new Uint8Array(bytes.length)
  copy.set(bytes)
  if (!LITTLE_ENDIAN_HOST) {
    const width = BYTES_PER_ELEMENT[dtype]
    for (let i = 0; i < copy.length; i += width) copy.subarray(i, i + width).reverse()
  }
  switch (dtype) {
    case 'F32':
      return new Float32Array(copy.buffer)
    case 'F16':
      return new Uint16Array(copy.buffer)
    case 'I8':
      return new Int8Array(copy.buffer)
    case 'I32':
      return new Int32Array(copy.buffer)
    case 'U8':
      return copy
  }
}

/**
 * Parses safetensors bytes. Checks sizes before parsing, then that every tensor has a known
 * dtype, a shape matching its byte range, and that the ranges tile the data section exactly
 * (no gaps, overlaps or trailing bytes). Returns copies; never returns partially valid data.
 */
export function decodeSafetensors(bytes: Uint8Array, limits: SafetensorsLimits = {}): DecodedSafetensors {
  const maxBytes = limits.maxBytes ?? SAFETENSORS_DEFAULT_MAX_BYTES
  const maxTensors = limits.maxTensors ?? SAFETENSORS_DEFAULT_MAX_TENSORS
  if (!(bytes instanceof Uint8Array)) throw new ProtocolError('SCHEMA', 'safetensors input must be bytes')
  if (bytes.length > maxBytes)
    throw new ProtocolError('TOO_LARGE', `safetensors file of ${bytes.length} bytes exceeds ${maxBytes}`)
  if (bytes.length < 8)
    throw new ProtocolError('TRUNCATED', 'safetensors file shorter than its 8-byte header length')
  const declared = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getBigUint64(0, true)
  if (declared > BigInt(SAFETENSORS_MAX_HEADER_BYTES))
    throw new ProtocolError('TOO_LARGE', `safetensors header of ${declared} bytes exceeds the limit`)
  const headerLength = Number(declared)
  if (8 + headerLength > bytes.length)
    throw new ProtocolError('TRUNCATED', 'safetensors file ends inside its header')
  let text: string
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + headerLength))
  } catch (error) {
    throw new ProtocolError('INVALID_JSON', 'safetensors header is not UTF-8', { cause: error })
  }
  if (!text.startsWith('{'))
    throw new ProtocolError('INVALID_JSON', 'safetensors header must be a JSON object')
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch (error) {
    throw new ProtocolError('INVALID_JSON', 'safetensors header is not valid JSON', { cause: error })
  }
  if (!isPlainObject(parsed)) throw new ProtocolError('SCHEMA', 'safetensors header must be a JSON object')

  const metadata: Record<string, string> = {}
  const rawMetadata = parsed[METADATA_KEY]
  if (rawMetadata !== undefined) {
    if (!isPlainObject(rawMetadata))
      throw new ProtocolError('SCHEMA', '__metadata__ must be an object of strings')
    for (const [key, value] of Object.entries(rawMetadata)) {
      if (typeof value !== 'string') throw new ProtocolError('SCHEMA', `__metadata__.${key} must be a string`)
      defineOwn(metadata, key, value)
    }
  }

  const names = Object.keys(parsed).filter((key) => key !== METADATA_KEY)
  if (names.length > maxTensors)
    throw new ProtocolError('TOO_LARGE', `${names.length} tensors exceed the limit of ${maxTensors}`)
  const dataStart = 8 + headerLength
  const dataLength = bytes.length - dataStart
  const entries: { name: string; dtype: DType; shape: number[]; begin: number; end: number }[] = []
  for (const name of names) {
    if (name.length === 0 || Buffer.byteLength(name, 'utf8') > SAFETENSORS_MAX_NAME_BYTES)
      throw new ProtocolError('SCHEMA', 'invalid tensor name')
    const info = parsed[name]
    if (!isPlainObject(info)) throw new ProtocolError('SCHEMA', `${name}: tensor info must be an object`)
    for (const key of Object.keys(info))
      if (key !== 'dtype' && key !== 'shape' && key !== 'data_offsets')
        throw new ProtocolError('SCHEMA', `${name}: unknown field ${key}`)
    const { dtype, shape, data_offsets: offsets } = info
    if (typeof dtype !== 'string') throw new ProtocolError('SCHEMA', `${name}: dtype must be a string`)
    if (!DTYPES.includes(dtype as DType))
      throw new ProtocolError('UNKNOWN_TYPE', `${name}: unsupported dtype ${dtype}`)
    if (
      !Array.isArray(shape) ||
      shape.length > SAFETENSORS_MAX_RANK ||
      !shape.every((d) => Number.isSafeInteger(d) && d >= 0)
    )
      throw new ProtocolError('SCHEMA', `${name}: invalid shape`)
    if (
      !Array.isArray(offsets) ||
      offsets.length !== 2 ||
      !offsets.every((o) => Number.isSafeInteger(o) && o >= 0)
    )
      throw new ProtocolError('SCHEMA', `${name}: invalid data_offsets`)
    const [begin, end] = offsets as [number, number]
    if (end < begin) throw new ProtocolError('SCHEMA', `${name}: data_offsets end before begin`)
    if (end > dataLength)
      throw new ProtocolError('TRUNCATED', `${name}: data extends past the end of the file`)
    const count = elementCount(shape as number[])
    if (count * BYTES_PER_ELEMENT[dtype as DType] !== end - begin)
      throw new ProtocolError('SCHEMA', `${name}: shape does not match its ${end - begin} data bytes`)
    entries.push({ name, dtype: dtype as DType, shape: [...(shape as number[])], begin, end })
  }

  // The byte ranges must tile [0, dataLength) exactly: no gaps, overlaps or trailing bytes.
  const byOffset = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end)
  let cursor = 0
  for (const entry of byOffset) {
    if (entry.begin !== cursor)
      throw new ProtocolError('SCHEMA', `${entry.name}: data ranges overlap or leave a gap`)
    cursor = entry.end
  }
  if (cursor !== dataLength)
    throw new ProtocolError('SCHEMA', `${dataLength - cursor} unaccounted bytes after the last tensor`)

  const tensors = new Map<string, TensorEntry>()
  for (const entry of entries) {
    const data = typedArrayFrom(entry.dtype, bytes.subarray(dataStart + entry.begin, dataStart + entry.end))
    tensors.set(entry.name, { name: entry.name, dtype: entry.dtype, shape: entry.shape, data })
  }
  return { tensors, metadata }
}

const FLOAT32_VIEW = new Float32Array(1)
const UINT32_VIEW = new Uint32Array(FLOAT32_VIEW.buffer)

/** IEEE 754 binary16 bits for `value`, rounding to nearest, ties to even; overflow gives ±Infinity, NaN stays NaN. */
export function float32ToFloat16Bits(value: number): number {
  FLOAT32_VIEW[0] = value
  const bits = UINT32_VIEW[0] as number
  const sign = (bits >>> 16) & 0x8000
  const exponent = (bits >>> 23) & 0xff
  const mantissa = bits & 0x7fffff
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa !== 0 ? 0x200 | (mantissa >>> 13) : 0)
  // Re-bias from 127 to 15.
  const halfExponent = exponent - 127 + 15
  if (halfExponent >= 0x1f) return sign | 0x7c00
  if (halfExponent <= 0) {
    // Subnormal half (or zero): shift the implicit-1 mantissa right, rounding to nearest even.
    if (halfExponent < -10) return sign
    const full = mantissa | 0x800000
    const shift = 14 - halfExponent
    const halfMantissa = full >>> shift
    const remainder = full & ((1 << shift) - 1)
    const halfway = 1 << (shift - 1)
    const rounded =
      remainder > halfway || (remainder === halfway && (halfMantissa & 1) === 1)
        ? halfMantissa + 1
        : halfMantissa
    return sign | rounded
  }
  const halfMantissa = mantissa >>> 13
  const remainder = mantissa & 0x1fff
  let result = sign | (halfExponent << 10) | halfMantissa
  // A carry out of the mantissa correctly bumps the exponent (and may reach Infinity).
  if (remainder > 0x1000 || (remainder === 0x1000 && (halfMantissa & 1) === 1)) result += 1
  return result
}

/** The float value of IEEE 754 binary16 `bits` (exact: every half is a float32). */
export function float16BitsToFloat32(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1
  const exponent = (bits >>> 10) & 0x1f
  const mantissa = bits & 0x3ff
  if (exponent === 0) return sign * mantissa * 2 ** -24
  if (exponent === 0x1f) return mantissa !== 0 ? Number.NaN : sign * Number.POSITIVE_INFINITY
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15)
}

/** Converts a Float32Array to F16 bits element-wise. */
export function float32ArrayToFloat16(values: Float32Array): Uint16Array {
  const out = new Uint16Array(values.length)
  for (let i = 0; i < values.length; i++) out[i] = float32ToFloat16Bits(values[i] as number)
  return out
}

/** Converts F16 bits to a Float32Array element-wise. */
export function float16ToFloat32Array(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length)
  for (let i = 0; i < bits.length; i++) out[i] = float16BitsToFloat32(bits[i] as number)
  return out
}
