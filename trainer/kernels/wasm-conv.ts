// Conv2D, Conv2DBackpropInput and Conv2DBackpropFilter for the tfjs `wasm` backend on the relaxed-SIMD
// kernels of ./simd/conv.ts: the input is padded once (the backend's PadV2), filters are repacked into
// the kernels' panel layout in JS, and the kernels read and write the wasm heap in place.
//
//   forward        out = conv(pad(x), w)                                  (any stride)
//   input gradient dx[s*a + p] = conv(pad(dy), w rotated, in/out swapped) for each of the s x s output
//                  phases p, with the taps that reach that phase (no zero-insertion: a stride-2 gradient
//                  does a quarter of the multiplications of the stride-1 convolution over an upsampled dy)
//   filter grad.   dw[tap][ci][co] = sum over pixels of pad(x)[pixel + tap][ci] * dy[pixel][co]
//
// Shapes they do not cover (dilation, NCHW, non-float32) return undefined and the caller falls back.
import * as tf from '@tensorflow/tfjs-core'
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm'
import type {
  Conv2DAttrs,
  Conv2DBackpropFilterAttrs,
  Conv2DBackpropInputAttrs,
  NamedAttrMap,
  NamedTensorInfoMap,
  TensorInfo,
} from '@tensorflow/tfjs-core'
import { filterGradKernel, forwardKernel } from './simd/conv.ts'
import { elementwiseKernels } from './simd/elementwise.ts'

/** Runs the backend's own kernels (PadV2, Slice) and frees intermediates: see KernelScratch in ./wasm.ts. */
export interface ConvScratch {
  readonly backendWasm: BackendWasm
  run(name: string, inputs: NamedTensorInfoMap, attrs?: NamedAttrMap): TensorInfo
  adopt(info: TensorInfo): void
}

/** Output pixels per forward tile: a multiple of 4 pixels keeps a tile inside one row of these models. */
const TILE_PIXELS = 4
/** The filter-gradient kernel keeps a chunk's x and dy rows in L1 while every tile reads them. */
const FILTER_GRAD_CHUNK_BYTES = 24 * 1024

interface HeapAccess {
  memory: object
  memoryId: number
  pointer(info: TensorInfo): number
}

const memoryIds = new WeakMap<object, number>()
let nextMemoryId = 1

function heapOf(backend: BackendWasm): HeapAccess {
  const wasm = backend.wasm as unknown as { asm: { memory: object } }
  const memory = wasm.asm.memory
  let memoryId = memoryIds.get(memory)
  if (memoryId === undefined) {
    memoryId = nextMemoryId++
    memoryIds.set(memory, memoryId)
  }
  return {
    memory,
    memoryId,
    pointer: (info) => backend.getMemoryOffset(info.dataId),
  }
}

function eligible(
  dataFormat: string | undefined,
  dilations: number | [number, number] | undefined,
  ...infos: TensorInfo[]
): boolean {
  const dilation =
    dilations === undefined ? [1, 1] : typeof dilations === 'number' ? [dilations, dilations] : dilations
  return (
    (dataFormat ?? 'NHWC') === 'NHWC' &&
    dilation[0] === 1 &&
    dilation[1] === 1 &&
    infos.every((info) => info.dtype === 'float32')
  )
}

function outputBlock(channels: number): { nr: number; padded: number } {
  const nr = channels % 8 === 0 ? 8 : 4
  return { nr, padded: Math.ceil(channels / nr) * nr }
}

/**
 * Pads the spatial dimensions (and the channels up to `channels`) with zeros; returns x itself if nothing
 * to pad. Spatial-only padding is a bulk-memory row copy (./simd/elementwise.ts), ~6x faster than the
 * backend's PadV2; channel padding (3-channel layers only) uses PadV2.
 */
function padded(
  scratch: ConvScratch,
  x: TensorInfo,
  [top, bottom]: [number, number],
  [left, right]: [number, number],
  channels: number,
): TensorInfo {
  const [images, rows, cols, inChannels] = x.shape as [number, number, number, number]
  const extraChannels = channels - inChannels
  if (top === 0 && bottom === 0 && left === 0 && right === 0 && extraChannels === 0) return x
  if (extraChannels > 0)
    return scratch.run('PadV2', { x }, {
      paddings: [
        [0, 0],
        [top, bottom],
        [left, right],
        [0, extraChannels],
      ],
      constantValue: 0,
    } as unknown as NamedAttrMap)
  const backend = scratch.backendWasm
  const outRows = rows + top + bottom
  const outCols = cols + left + right
  const out = backend.makeOutput([images, outRows, outCols, inChannels], 'float32')
  scratch.adopt(out)
  const heap = heapOf(backend)
  const outRowBytes = outCols * inChannels * 4
  elementwiseKernels(heap.memory).padRows(
    heap.pointer(x),
    heap.pointer(out),
    images,
    rows,
    cols * inChannels * 4,
    outRowBytes,
    outRows * outRowBytes,
    images * outRows * outRowBytes,
    top * outRowBytes + left * inChannels * 4,
  )
  return out
}

/**
 * Drops padded trailing channels (Co not a multiple of the tile width), as one pass over heap views: the
 * backend's Slice first copies its whole input out of the heap.
 */
function cropChannels(scratch: ConvScratch, out: TensorInfo, channels: number): TensorInfo {
  const shape = out.shape as number[]
  const stored = shape[shape.length - 1] as number
  if (stored === channels) return out
  const backend = scratch.backendWasm
  const cropped = backend.makeOutput([...shape.slice(0, -1), channels], 'float32')
  scratch.adopt(cropped)
  const source = backend.typedArrayFromHeap(out) as Float32Array
  const target = backend.typedArrayFromHeap(cropped) as Float32Array
  const rows = target.length / channels
  for (let row = 0, from = 0, to = 0; row < rows; row++, from += stored, to += channels)
    for (let c = 0; c < channels; c++) target[to + c] = source[from + c] as number
  return cropped
}

interface ForwardPlan {
  /** Input, already padded, NHWC [images, paddedRows, paddedCols, inChannels]. */
  input: TensorInfo
  /** Byte offset into input of the first pixel the kernel reads. */
  inputOffset: number
  /** Filter panels [outBlocks][inChannels][taps][nr]. */
  packed: Float32Array
  taps: number[]
  stride: number
  rows: number
  cols: number
  /** Output tensor and the element offset / pixel and row strides of this call's pixels in it. */
  output: TensorInfo
  outputOffset: number
  outPixel: number
  outRowElements: number
  outImageElements: number
  nr: number
  outChannelsPadded: number
  /** Per-output-channel bias (length outChannelsPadded), or none. */
  bias?: Float32Array
}

/** Copies packed filter values into a new heap tensor and runs the forward kernel (full tiles, then the tail). */
function runForward(scratch: ConvScratch, plan: ForwardPlan): void {
  const backend = scratch.backendWasm
  const filter = backend.makeOutput([plan.packed.length], 'float32')
  scratch.adopt(filter)
  let biasInfo: TensorInfo | undefined
  if (plan.bias !== undefined) {
    biasInfo = backend.makeOutput([plan.bias.length], 'float32')
    scratch.adopt(biasInfo)
    backend.typedArrayFromHeap(biasInfo).set(plan.bias)
  }
  backend.typedArrayFromHeap(filter).set(plan.packed)
  const heap = heapOf(backend)
  const [images, paddedRows, paddedCols, inChannels] = plan.input.shape as [number, number, number, number]
  const inPixel = plan.stride * inChannels
  const xImageBytes = paddedRows * paddedCols * inChannels * 4
  const xRowBytes = plan.stride * paddedCols * inChannels * 4
  const x = heap.pointer(plan.input) + plan.inputOffset
  const out = heap.pointer(plan.output) + plan.outputOffset * 4
  const w = heap.pointer(filter)
  const outBlocks = plan.outChannelsPadded / plan.nr
  const tiles = Math.floor(plan.cols / TILE_PIXELS)
  const tail = plan.cols % TILE_PIXELS
  const run = (mr: number, count: number, pixel: number) => {
    const kernel = forwardKernel(heap.memory, heap.memoryId, {
      mr,
      nr: plan.nr,
      inChannels,
      taps: plan.taps,
      inPixel,
      outPixel: plan.outPixel,
      bias: biasInfo !== undefined,
    })
    kernel(
      x + pixel * inPixel * 4,
      w,
      out + pixel * plan.outPixel * 4,
      images,
      plan.rows,
      count,
      outBlocks,
      xImageBytes,
      xRowBytes,
      plan.outImageElements * 4,
      plan.outRowElements * 4,
      biasInfo === undefined ? 0 : heap.pointer(biasInfo),
    )
  }
  if (tiles > 0) run(TILE_PIXELS, tiles, 0)
  if (tail > 0) run(tail, 1, tiles * TILE_PIXELS)
}

/** Forward Conv2D; undefined when the shape is not one these kernels cover. */
export function simdConv2D(
  scratch: ConvScratch,
  inputs: NamedTensorInfoMap,
  attrs: Conv2DAttrs,
): TensorInfo | undefined {
  const x = inputs.x as TensorInfo
  const filter = inputs.filter as TensorInfo
  if (!eligible(attrs.dataFormat, attrs.dilations, x, filter)) return undefined
  const biasInput = inputs.bias as TensorInfo | undefined
  if (biasInput !== undefined && !eligible(undefined, undefined, biasInput)) return undefined
  const info = tf.backend_util.computeConv2DInfo(
    x.shape as [number, number, number, number],
    filter.shape as [number, number, number, number],
    attrs.strides,
    1,
    attrs.pad,
    attrs.dimRoundingMode,
    false,
    'channelsLast',
  )
  const {
    batchSize,
    inHeight,
    inWidth,
    inChannels,
    outHeight,
    outWidth,
    outChannels,
    filterHeight,
    filterWidth,
  } = info
  if (info.strideHeight !== info.strideWidth) return undefined
  const stride = info.strideHeight
  const top = info.padInfo.top
  const left = info.padInfo.left
  if (top < 0 || left < 0) return undefined
  const bottom = Math.max(0, (outHeight - 1) * stride + filterHeight - inHeight - top)
  const right = Math.max(0, (outWidth - 1) * stride + filterWidth - inWidth - left)
  const { nr, padded: outChannelsPadded } = outputBlock(outChannels)
  // FusedConv2D's bias is per output channel ([Co], what trainer/nn.ts passes); other shapes go to the
  // backend's own kernel, which rejects them with its own error.
  let bias: Float32Array | undefined
  if (biasInput !== undefined) {
    if (biasInput.shape.length !== 1 || biasInput.shape[0] !== outChannels) return undefined
    bias = new Float32Array(outChannelsPadded)
    bias.set(scratch.backendWasm.typedArrayFromHeap(biasInput) as Float32Array)
  }
  const input = padded(scratch, x, [top, bottom], [left, right], inChannels)
  const paddedCols = inWidth + left + right
  const weights = scratch.backendWasm.typedArrayFromHeap(filter) as Float32Array
  const taps: number[] = []
  for (let kh = 0; kh < filterHeight; kh++)
    for (let kw = 0; kw < filterWidth; kw++) taps.push((kh * paddedCols + kw) * inChannels)
  const packed = new Float32Array(outChannelsPadded * inChannels * taps.length)
  for (let co = 0; co < outChannels; co++) {
    const block = Math.floor(co / nr)
    const lane = co % nr
    for (let ci = 0; ci < inChannels; ci++)
      for (let tap = 0; tap < taps.length; tap++)
        packed[((block * inChannels + ci) * taps.length + tap) * nr + lane] = weights[
          (tap * inChannels + ci) * outChannels + co
        ] as number
  }
  const output = scratch.backendWasm.makeOutput(
    [batchSize, outHeight, outWidth, outChannelsPadded],
    'float32',
  )
  scratch.adopt(output)
  runForward(scratch, {
    ...(bias === undefined ? {} : { bias }),
    input,
    inputOffset: 0,
    packed,
    taps,
    stride,
    rows: outHeight,
    cols: outWidth,
    output,
    outputOffset: 0,
    outPixel: outChannelsPadded,
    outRowElements: outWidth * outChannelsPadded,
    outImageElements: outHeight * outWidth * outChannelsPadded,
    nr,
    outChannelsPadded,
  })
  return cropChannels(scratch, output, outChannels)
}

/** The taps of one output phase of a strided transposed convolution, along one axis. */
interface PhaseTaps {
  /** Filter indices, in order of increasing input offset. */
  kernelIndices: number[]
  /** dy offset (in output rows) of the first tap relative to the phase's row index. */
  firstOffset: number
  /** Rows (or columns) of dx in this phase. */
  count: number
}

function phaseTaps(phase: number, stride: number, pad: number, kernel: number, size: number): PhaseTaps {
  const withOffset: { k: number; offset: number }[] = []
  for (let k = 0; k < kernel; k++) {
    const shifted = phase + pad - k
    if (((shifted % stride) + stride) % stride === 0) withOffset.push({ k, offset: shifted / stride })
  }
  withOffset.sort((a, b) => a.offset - b.offset)
  return {
    kernelIndices: withOffset.map((t) => t.k),
    firstOffset: withOffset[0]?.offset ?? 0,
    count: phase < size ? Math.ceil((size - phase) / stride) : 0,
  }
}

/** Conv2DBackpropInput (dx); undefined when the shape is not covered. */
export function simdConv2DBackpropInput(
  scratch: ConvScratch,
  inputs: NamedTensorInfoMap,
  attrs: Conv2DBackpropInputAttrs,
): TensorInfo | undefined {
  const dy = inputs.dy as TensorInfo
  const filter = inputs.filter as TensorInfo
  if (!eligible(attrs.dataFormat, 1, dy, filter)) return undefined
  const info = tf.backend_util.computeConv2DInfo(
    attrs.inputShape,
    filter.shape as [number, number, number, number],
    attrs.strides,
    1,
    attrs.pad,
    attrs.dimRoundingMode,
    false,
    'channelsLast',
  )
  const {
    batchSize,
    inHeight,
    inWidth,
    inChannels,
    outHeight,
    outWidth,
    outChannels,
    filterHeight,
    filterWidth,
  } = info
  if (info.strideHeight !== info.strideWidth || info.padInfo.top < 0 || info.padInfo.left < 0)
    return undefined
  const stride = info.strideHeight
  const phasesH = Array.from({ length: stride }, (_, p) =>
    phaseTaps(p, stride, info.padInfo.top, filterHeight, inHeight),
  )
  const phasesW = Array.from({ length: stride }, (_, p) =>
    phaseTaps(p, stride, info.padInfo.left, filterWidth, inWidth),
  )
  // One zero-padded copy of dy serves every phase: enough rows above and below for the widest reach.
  const reach = (phases: PhaseTaps[], size: number): [number, number] => {
    let before = 0
    let after = 0
    for (const p of phases) {
      if (p.kernelIndices.length === 0 || p.count === 0) continue
      before = Math.max(before, -p.firstOffset)
      after = Math.max(after, p.count - 1 + p.firstOffset + p.kernelIndices.length - 1 - (size - 1))
    }
    return [before, after]
  }
  const [padTop, padBottom] = reach(phasesH, outHeight)
  const [padLeft, padRight] = reach(phasesW, outWidth)
  const source = padded(scratch, dy, [padTop, padBottom], [padLeft, padRight], outChannels)
  const paddedCols = outWidth + padLeft + padRight
  const { nr, padded: inChannelsPadded } = outputBlock(inChannels)
  const output = scratch.backendWasm.makeOutput([batchSize, inHeight, inWidth, inChannelsPadded], 'float32')
  scratch.adopt(output)
  const weights = scratch.backendWasm.typedArrayFromHeap(filter) as Float32Array
  const weightValues = new Float32Array(weights)
  let anyEmpty = false
  for (const ph of phasesH)
    for (const pw of phasesW)
      if ((ph.kernelIndices.length === 0 || pw.kernelIndices.length === 0) && ph.count > 0 && pw.count > 0)
        anyEmpty = true
  if (anyEmpty) scratch.backendWasm.typedArrayFromHeap(output).fill(0)
  phasesH.forEach((ph, py) => {
    phasesW.forEach((pw, px) => {
      if (ph.count === 0 || pw.count === 0 || ph.kernelIndices.length === 0 || pw.kernelIndices.length === 0)
        return
      const taps: number[] = []
      const tapWeights: [number, number][] = []
      ph.kernelIndices.forEach((kh, th) =>
        pw.kernelIndices.forEach((kw, tw) => {
          taps.push((th * paddedCols + tw) * outChannels)
          tapWeights.push([kh, kw])
        }),
      )
      // Panels [inChannel blocks][outChannels (dy)][taps][nr]: w[kh, kw, ci, co] feeds dx channel ci from dy channel co.
      const packed = new Float32Array(inChannelsPadded * outChannels * taps.length)
      for (let ci = 0; ci < inChannels; ci++) {
        const block = Math.floor(ci / nr)
        const lane = ci % nr
        for (let co = 0; co < outChannels; co++)
          tapWeights.forEach(([kh, kw], tap) => {
            packed[((block * outChannels + co) * taps.length + tap) * nr + lane] = weightValues[
              ((kh * filterWidth + kw) * inChannels + ci) * outChannels + co
            ] as number
          })
      }
      const firstRow = padTop + ph.firstOffset
      const firstCol = padLeft + pw.firstOffset
      runForward(scratch, {
        input: source,
        inputOffset: (firstRow * paddedCols + firstCol) * outChannels * 4,
        packed,
        taps,
        stride: 1,
        rows: ph.count,
        cols: pw.count,
        output,
        outputOffset: (py * inWidth + px) * inChannelsPadded,
        outPixel: stride * inChannelsPadded,
        outRowElements: stride * inWidth * inChannelsPadded,
        outImageElements: inHeight * inWidth * inChannelsPadded,
        nr,
        outChannelsPadded: inChannelsPadded,
      })
    })
  })
  return cropChannels(scratch, output, inChannels)
}

/** Conv2DBackpropFilter (dw); undefined when the shape is not covered. */
export function simdConv2DBackpropFilter(
  scratch: ConvScratch,
  inputs: NamedTensorInfoMap,
  attrs: Conv2DBackpropFilterAttrs,
): TensorInfo | undefined {
  const x = inputs.x as TensorInfo
  const dy = inputs.dy as TensorInfo
  if (!eligible(attrs.dataFormat, 1, x, dy)) return undefined
  const info = tf.backend_util.computeConv2DInfo(
    x.shape as [number, number, number, number],
    attrs.filterShape,
    attrs.strides,
    1,
    attrs.pad,
    attrs.dimRoundingMode,
    false,
    'channelsLast',
  )
  const {
    batchSize,
    inHeight,
    inWidth,
    inChannels,
    outHeight,
    outWidth,
    outChannels,
    filterHeight,
    filterWidth,
  } = info
  if (info.strideHeight !== info.strideWidth || info.padInfo.top < 0 || info.padInfo.left < 0)
    return undefined
  const stride = info.strideHeight
  const top = info.padInfo.top
  const left = info.padInfo.left
  const bottom = Math.max(0, (outHeight - 1) * stride + filterHeight - inHeight - top)
  const right = Math.max(0, (outWidth - 1) * stride + filterWidth - inWidth - left)
  const inChannelsPadded = Math.ceil(inChannels / 4) * 4
  const input = padded(scratch, x, [top, bottom], [left, right], inChannelsPadded)
  const { nr, padded: outChannelsPadded } = outputBlock(outChannels)
  const gradient = padded(scratch, dy, [0, 0], [0, 0], outChannelsPadded)
  const paddedRows = inHeight + top + bottom
  const paddedCols = inWidth + left + right
  const backend = scratch.backendWasm
  const dw = backend.makeOutput([filterHeight, filterWidth, inChannelsPadded, outChannelsPadded], 'float32')
  scratch.adopt(dw)
  backend.typedArrayFromHeap(dw).fill(0)
  const taps: number[] = []
  for (let kh = 0; kh < filterHeight; kh++)
    for (let kw = 0; kw < filterWidth; kw++) taps.push((kh * paddedCols + kw) * inChannelsPadded)
  const heap = heapOf(backend)
  const kernel = filterGradKernel(heap.memory, heap.memoryId, {
    nr,
    inChannels: inChannelsPadded,
    outChannels: outChannelsPadded,
    taps,
    inPixel: stride * inChannelsPadded,
    cols: outWidth,
  })
  const rowBytes = outWidth * (outChannelsPadded + stride * inChannelsPadded) * 4
  const chunkRows = Math.max(1, Math.min(outHeight, Math.floor(FILTER_GRAD_CHUNK_BYTES / rowBytes)))
  kernel(
    heap.pointer(input),
    heap.pointer(gradient),
    heap.pointer(dw),
    batchSize,
    outHeight,
    chunkRows,
    paddedRows * paddedCols * inChannelsPadded * 4,
    stride * paddedCols * inChannelsPadded * 4,
  )
  if (inChannelsPadded === inChannels && outChannelsPadded === outChannels) return dw
  // [taps, Ci4, Co4] -> [taps, Ci, Co]: drop padded output channels, then the padded input-channel rows.
  const narrowed = cropChannels(scratch, dw, outChannels)
  if (inChannelsPadded === inChannels) return narrowed
  const result = backend.makeOutput([filterHeight, filterWidth, inChannels, outChannels], 'float32')
  scratch.adopt(result)
  const source = backend.typedArrayFromHeap(narrowed) as Float32Array
  const target = backend.typedArrayFromHeap(result) as Float32Array
  const tapSize = inChannels * outChannels
  for (let tap = 0; tap < taps.length; tap++) {
    const from = tap * inChannelsPadded * outChannels
    target.set(source.subarray(from, from + tapSize), tap * tapSize)
  }
  return result
}
