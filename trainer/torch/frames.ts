// Frames of the worker protocol; the Python side is framing.py, which documents the layout:
//   u32le length | body,   body = u32le header length | JSON header (padded) | payload.
// Tensors travel as raw little-endian bytes described by the header; a decoder refuses a frame
// over its limit before allocating it, so a broken worker cannot make the node allocate without bound.
import { TrainerError } from '../errors.ts'

export type WireDtype = 'f32' | 'f64' | 'i32' | 'u8'
export type WireArray = Float32Array | Float64Array | Int32Array | Uint8Array

export interface WireTensor {
  name: string
  shape: number[]
  data: WireArray
}

export type FrameHeader = Record<string, unknown>

export interface Frame {
  header: FrameHeader
  tensors: WireTensor[]
}

const ALIGN = 8

function dtypeOf(data: WireArray): WireDtype {
  if (data instanceof Float32Array) return 'f32'
  if (data instanceof Float64Array) return 'f64'
  if (data instanceof Int32Array) return 'i32'
  return 'u8'
}

const CONSTRUCTORS = {
  f32: Float32Array,
  f64: Float64Array,
  i32: Int32Array,
  u8: Uint8Array,
} as const

/** One frame as a single buffer (prefix included); throws if it would exceed `maxBytes`. */
export function encodeFrame(
  header: FrameHeader,
  tensors: readonly WireTensor[],
  maxBytes: number,
): Uint8Array {
  const entries: { name: string; dtype: WireDtype; shape: number[]; offset: number }[] = []
  let offset = 0
  for (const t of tensors) {
    offset += (ALIGN - (offset % ALIGN)) % ALIGN
    entries.push({ name: t.name, dtype: dtypeOf(t.data), shape: t.shape, offset })
    offset += t.data.byteLength
  }
  let head = new TextEncoder().encode(JSON.stringify({ ...header, tensors: entries }))
  const pad = (ALIGN - ((4 + head.length) % ALIGN)) % ALIGN
  if (pad > 0) {
    const padded = new Uint8Array(head.length + pad).fill(0x20)
    padded.set(head)
    head = padded
  }
  const length = 4 + head.length + offset
  if (length > maxBytes)
    throw new TrainerError(
      'INVALID_ARGUMENT',
      `a request of ${length} bytes exceeds the frame limit of ${maxBytes}`,
    )
  const frame = new Uint8Array(4 + length)
  const view = new DataView(frame.buffer)
  view.setUint32(0, length, true)
  view.setUint32(4, head.length, true)
  frame.set(head, 8)
  const start = 8 + head.length
  tensors.forEach((t, i) => {
    frame.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), start + entries[i]!.offset)
  })
  return frame
}

function parseBody(body: Uint8Array): Frame {
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength)
  const headerLength = view.getUint32(0, true)
  if (headerLength > body.length - 4) throw new Error('frame header overruns the frame')
  const parsed = JSON.parse(new TextDecoder().decode(body.subarray(4, 4 + headerLength))) as unknown
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
    throw new Error('frame header is not an object')
  const { tensors: entries = [], ...header } = parsed as FrameHeader & { tensors?: unknown }
  if (!Array.isArray(entries)) throw new Error('frame tensors is not a list')
  const start = 4 + headerLength
  const tensors = entries.map(
    (entry: { name?: unknown; dtype?: unknown; shape?: unknown; offset?: unknown }) => {
      const Constructor = CONSTRUCTORS[entry.dtype as WireDtype] as
        (new (buffer: ArrayBufferLike, offset: number, length: number) => WireArray) | undefined
      const shape = entry.shape
      if (
        Constructor === undefined ||
        typeof entry.name !== 'string' ||
        !Array.isArray(shape) ||
        !shape.every((d) => Number.isSafeInteger(d) && d >= 0) ||
        !Number.isSafeInteger(entry.offset)
      )
        throw new Error('malformed tensor entry in a frame header')
      const count = (shape as number[]).reduce((a, b) => a * b, 1)
      const offset = entry.offset as number
      const bytes = count * (Constructor as unknown as { BYTES_PER_ELEMENT: number }).BYTES_PER_ELEMENT
      if (offset < 0 || offset % ALIGN !== 0 || start + offset + bytes > body.length)
        throw new Error(`tensor ${entry.name} lies outside the frame`)
      // The body is its own ArrayBuffer and the payload starts 8-aligned in it, so typed views need no copy.
      return {
        name: entry.name,
        shape: shape as number[],
        data: new Constructor(body.buffer, body.byteOffset + start + offset, count),
      }
    },
  )
  return { header, tensors }
}

/** Reassembles frames from stream chunks; each frame's body gets a buffer of its own. */
export class FrameDecoder {
  readonly #maxBytes: number
  #prefix = new Uint8Array(4)
  #prefixFilled = 0
  #body: Uint8Array | undefined
  #bodyFilled = 0

  constructor(maxBytes: number) {
    this.#maxBytes = maxBytes
  }

  /** Frames completed by `chunk`; throws on a frame over the limit or a malformed header. */
  push(chunk: Uint8Array): Frame[] {
    const frames: Frame[] = []
    let position = 0
    while (position < chunk.length) {
      if (this.#body === undefined) {
        const take = Math.min(4 - this.#prefixFilled, chunk.length - position)
        this.#prefix.set(chunk.subarray(position, position + take), this.#prefixFilled)
        this.#prefixFilled += take
        position += take
        if (this.#prefixFilled < 4) break
        const length = new DataView(this.#prefix.buffer).getUint32(0, true)
        if (length < 4 || length > this.#maxBytes)
          throw new Error(`frame of ${length} bytes is outside [4, ${this.#maxBytes}]`)
        this.#body = new Uint8Array(length)
        this.#bodyFilled = 0
        this.#prefixFilled = 0
      }
      const body = this.#body
      const take = Math.min(body.length - this.#bodyFilled, chunk.length - position)
      body.set(chunk.subarray(position, position + take), this.#bodyFilled)
      this.#bodyFilled += take
      position += take
      if (this.#bodyFilled === body.length) {
        this.#body = undefined
        frames.push(parseBody(body))
      }
    }
    return frames
  }
}
