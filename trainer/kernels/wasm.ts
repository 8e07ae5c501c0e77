// Training kernels for the tfjs `wasm` backend.
//
// The wasm backend ships XNNPACK only for forward Conv2D and for an untransposed, unbatched matMul; those
// run at ~30-45 GFLOP/s on one core here. Everything else training needs is either missing
// (Conv2DBackpropFilter, tensorflow/tfjs#8474; UnsortedSegmentSum, #8082) or a scalar C++ loop at ~1-4
// GFLOP/s (Conv2DBackpropInput, transposed or batched matMul). The kernels below re-express those ops as
// forward XNNPACK convolutions and plain GEMMs, so every gradient of a conv net runs on the fast path:
//
//   conv input gradient  = conv2d(zero-inserted, padded dy, filter rotated 180 degrees, in/out swapped)
//   conv filter gradient = conv2d(x with batch and channels swapped, dy as the filter, dilation = stride)
//   transposed matMul    = explicit transpose (memory-bound, cheap) + untransposed XNNPACK GEMM
//
// A training step also issues thousands of small bookkeeping kernels, so a few of those are replaced too:
// Identity/Cast share buffers instead of copying, Sum/Mean over leading axes become a GEMM, and
// Slice stops copying its whole input out of the heap first.
//
// They are registered under the same kernel names, so model code keeps calling plain tfjs-core ops.

import * as tf from '@tensorflow/tfjs-core'
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm'
import { channelKernels } from './simd/channels.ts'
import { hasRelaxedSimd } from './simd/emit.ts'
import { simdConv2D, simdConv2DBackpropFilter, simdConv2DBackpropInput } from './wasm-conv.ts'
import type {
  BatchMatMulAttrs,
  Conv2DAttrs,
  FusedConv2DAttrs,
  Conv2DBackpropFilterAttrs,
  Conv2DBackpropInputAttrs,
  KernelConfig,
  KernelFunc,
  NamedAttrMap,
  NamedTensorInfoMap,
  TensorInfo,
  UnsortedSegmentSumAttrs,
} from '@tensorflow/tfjs-core'

const BACKEND = 'wasm'

/** Kernels this module registers (or replaces) for `wasm`. */
export const WASM_TRAINING_KERNELS = [
  'Conv2D',
  'FusedConv2D',
  'Conv2DBackpropFilter',
  'Conv2DBackpropInput',
  'BatchMatMul',
  'Identity',
  'Cast',
  'Sum',
  'Mean',
  'Slice',
  'UnsortedSegmentSum',
] as const

/**
 * Runs other wasm kernels on behalf of one composite kernel and frees every intermediate it created.
 * Intermediates are disposed through the backend (not as tensors): inside a kernel there are no tensors,
 * only TensorInfos the engine has not seen.
 */
class KernelScratch {
  readonly backendWasm: BackendWasm
  private readonly kernels: Map<string, KernelFunc>
  private readonly temporaries: TensorInfo[] = []

  constructor(backend: BackendWasm, kernels: Map<string, KernelFunc>) {
    this.backendWasm = backend
    this.kernels = kernels
  }

  run(name: string, inputs: NamedTensorInfoMap, attrs: NamedAttrMap = {}): TensorInfo {
    const kernelFunc = this.kernels.get(name)
    if (kernelFunc === undefined) throw new Error(`wasm kernel ${name} was not captured at registration`)
    const out = kernelFunc({ inputs, backend: this.backendWasm, attrs })
    if (Array.isArray(out))
      throw new Error(`wasm kernel ${name} returned several outputs where one was expected`)
    this.temporaries.push(out)
    return out
  }

  /** Registers an output the kernel allocated itself, so it is freed with the other intermediates. */
  adopt(info: TensorInfo): void {
    this.temporaries.push(info)
  }

  /** Hands `result` to the caller (it must not be freed) and frees every other intermediate. */
  finish(result: TensorInfo): TensorInfo {
    for (const info of this.temporaries) {
      if (info !== result) this.backendWasm.disposeData(info.dataId)
    }
    this.temporaries.length = 0
    return result
  }

  /** Frees every intermediate; used when a kernel throws half-way. */
  abandon(): void {
    for (const info of this.temporaries) this.backendWasm.disposeData(info.dataId)
    this.temporaries.length = 0
  }
}

type SpatialPadding = [[number, number], [number, number]]

/**
 * Crops the spatial dimensions of an NHWC tensor where an amount is negative, and returns the
 * non-negative amounts as padding for the convolution itself: XNNPACK pads implicitly, which saves
 * materialising a padded copy. Returns `x` itself when nothing is cropped.
 */
function cropAndSplitPadding(
  scratch: KernelScratch,
  x: TensorInfo,
  [top, bottom]: [number, number],
  [left, right]: [number, number],
): { input: TensorInfo; padding: SpatialPadding } {
  const [n, h, w, c] = x.shape as [number, number, number, number]
  const cropTop = Math.max(0, -top)
  const cropBottom = Math.max(0, -bottom)
  const cropLeft = Math.max(0, -left)
  const cropRight = Math.max(0, -right)
  let input = x
  if (cropTop + cropBottom + cropLeft + cropRight > 0) {
    input = scratch.run(
      'Slice',
      { x },
      {
        begin: [0, cropTop, cropLeft, 0],
        size: [n, h - cropTop - cropBottom, w - cropLeft - cropRight, c],
      },
    )
  }
  const padding: SpatialPadding = [
    [Math.max(0, top), Math.max(0, bottom)],
    [Math.max(0, left), Math.max(0, right)],
  ]
  return { input, padding }
}

/** Attributes for a stride-1 forward Conv2D with explicit spatial padding. */
function convAttrs([vertical, horizontal]: SpatialPadding, dilations: [number, number]): NamedAttrMap {
  return {
    strides: [1, 1],
    pad: [[0, 0], vertical, horizontal, [0, 0]],
    dataFormat: 'NHWC',
    dilations,
    dimRoundingMode: undefined,
  } as unknown as NamedAttrMap
}

/** NCHW tensors are moved to NHWC first: XNNPACK convolutions are channels-last only. */
function toChannelsLast(scratch: KernelScratch, x: TensorInfo, dataFormat: 'NHWC' | 'NCHW'): TensorInfo {
  return dataFormat === 'NCHW' ? scratch.run('Transpose', { x }, { perm: [0, 2, 3, 1] }) : x
}

function fromChannelsLast(scratch: KernelScratch, x: TensorInfo, dataFormat: 'NHWC' | 'NCHW'): TensorInfo {
  return dataFormat === 'NCHW' ? scratch.run('Transpose', { x }, { perm: [0, 3, 1, 2] }) : x
}

function nchwShapeToNhwc(shape: [number, number, number, number], dataFormat: 'NHWC' | 'NCHW') {
  return dataFormat === 'NCHW'
    ? ([shape[0], shape[2], shape[3], shape[1]] as [number, number, number, number])
    : shape
}

/**
 * dW[kh,kw,ci,co] = sum over n,oh,ow of xPadded[n, oh*s+kh, ow*s+kw, ci] * dy[n,oh,ow,co].
 * Swapping x's batch and channel axes turns that sum into a forward convolution whose "filter" is dy
 * (spatial extent OHxOW, dilated by the stride), which XNNPACK runs as one GEMM with K = N*OH*OW.
 */
function conv2DBackpropFilter(
  scratch: KernelScratch,
  inputs: NamedTensorInfoMap,
  attrs: Conv2DBackpropFilterAttrs,
) {
  const { strides, pad, dimRoundingMode, filterShape } = attrs
  const dataFormat = attrs.dataFormat ?? 'NHWC'
  const x = toChannelsLast(scratch, inputs.x as TensorInfo, dataFormat)
  const dy = toChannelsLast(scratch, inputs.dy as TensorInfo, dataFormat)
  const info = tf.backend_util.computeConv2DInfo(
    x.shape as [number, number, number, number],
    filterShape,
    strides,
    1,
    pad,
    dimRoundingMode,
    false,
    'channelsLast',
  )
  const { filterHeight, filterWidth, strideHeight, strideWidth, outHeight, outWidth, inHeight, inWidth } =
    info
  // Rows of x the convolution reads: exactly filterHeight + (outHeight-1)*stride, starting at -top.
  const neededHeight = filterHeight + (outHeight - 1) * strideHeight
  const neededWidth = filterWidth + (outWidth - 1) * strideWidth
  const top = info.padInfo.top
  const left = info.padInfo.left
  const { input: xWindow, padding } = cropAndSplitPadding(
    scratch,
    x,
    [top, neededHeight - inHeight - top],
    [left, neededWidth - inWidth - left],
  )
  const xChannelsAsBatch = scratch.run('Transpose', { x: xWindow }, { perm: [3, 1, 2, 0] })
  const dyAsFilter = scratch.run('Transpose', { x: dy }, { perm: [1, 2, 0, 3] })
  const gradient = scratch.run(
    'Conv2D',
    { x: xChannelsAsBatch, filter: dyAsFilter },
    convAttrs(padding, [strideHeight, strideWidth]),
  )
  return scratch.run('Transpose', { x: gradient }, { perm: [1, 2, 0, 3] })
}

/**
 * dx = full correlation of the stride-dilated dy with the filter rotated by 180 degrees and its in/out
 * channels swapped. Zero-insertion makes strided convs a plain stride-1 convolution; the wasted
 * multiplications by zero still run faster in XNNPACK than the backend's scalar loop (measured 2.7x).
 */
function conv2DBackpropInput(
  scratch: KernelScratch,
  inputs: NamedTensorInfoMap,
  attrs: Conv2DBackpropInputAttrs,
) {
  const { strides, pad, dimRoundingMode } = attrs
  const dataFormat = attrs.dataFormat ?? 'NHWC'
  const inputShape = nchwShapeToNhwc(attrs.inputShape, dataFormat)
  const dy = toChannelsLast(scratch, inputs.dy as TensorInfo, dataFormat)
  const filter = inputs.filter as TensorInfo
  const info = tf.backend_util.computeConv2DInfo(
    inputShape,
    filter.shape as [number, number, number, number],
    strides,
    1,
    pad,
    dimRoundingMode,
    false,
    'channelsLast',
  )
  const {
    batchSize,
    filterHeight,
    filterWidth,
    strideHeight,
    strideWidth,
    outHeight,
    outWidth,
    outChannels,
  } = info
  const { inHeight, inWidth } = info
  let spread = dy
  let spreadHeight = outHeight
  let spreadWidth = outWidth
  if (strideHeight > 1 || strideWidth > 1) {
    const split = scratch.run(
      'Reshape',
      { x: dy },
      { shape: [batchSize, outHeight, 1, outWidth, 1, outChannels] },
    )
    const zeroFilled = scratch.run(
      'PadV2',
      { x: split },
      {
        paddings: [
          [0, 0],
          [0, 0],
          [0, strideHeight - 1],
          [0, 0],
          [0, strideWidth - 1],
          [0, 0],
        ],
        constantValue: 0,
      },
    )
    spreadHeight = outHeight * strideHeight
    spreadWidth = outWidth * strideWidth
    spread = scratch.run(
      'Reshape',
      { x: zeroFilled },
      { shape: [batchSize, spreadHeight, spreadWidth, outChannels] },
    )
  }
  const top = filterHeight - 1 - info.padInfo.top
  const left = filterWidth - 1 - info.padInfo.left
  const { input: cropped, padding } = cropAndSplitPadding(
    scratch,
    spread,
    [top, inHeight + filterHeight - 1 - top - spreadHeight],
    [left, inWidth + filterWidth - 1 - left - spreadWidth],
  )
  const rotated = scratch.run('Reverse', { x: filter }, { dims: [0, 1] })
  const swapped = scratch.run('Transpose', { x: rotated }, { perm: [0, 1, 3, 2] })
  const dx = scratch.run('Conv2D', { x: cropped, filter: swapped }, convAttrs(padding, [1, 1]))
  return fromChannelsLast(scratch, dx, dataFormat)
}

function swapLastTwo(rank: number): number[] {
  const perm = Array.from({ length: rank }, (_, i) => i)
  perm[rank - 2] = rank - 1
  perm[rank - 1] = rank - 2
  return perm
}

/** Transposed operands are materialised so the backend always takes its XNNPACK (untransposed) path. */
function batchMatMul(scratch: KernelScratch, inputs: NamedTensorInfoMap, attrs: BatchMatMulAttrs) {
  let a = inputs.a as TensorInfo
  let b = inputs.b as TensorInfo
  if (attrs.transposeA) a = scratch.run('Transpose', { x: a }, { perm: swapLastTwo(a.shape.length) })
  if (attrs.transposeB) b = scratch.run('Transpose', { x: b }, { perm: swapLastTwo(b.shape.length) })
  return scratch.run('BatchMatMul', { a, b }, { transposeA: false, transposeB: false })
}

/**
 * out[s, ...] = sum of x[i, ...] over every i with segmentIds[i] = s; ids outside [0, numSegments) are
 * dropped, as TensorFlow does. Runs in JS over the wasm heap: it only appears in gather gradients
 * (embedding tables), which are small.
 */
function unsortedSegmentSum(
  backend: BackendWasm,
  inputs: NamedTensorInfoMap,
  attrs: UnsortedSegmentSumAttrs,
) {
  const x = inputs.x as TensorInfo
  const segmentIds = inputs.segmentIds as TensorInfo
  const { numSegments } = attrs
  const idCount = tf.util.sizeFromShape(segmentIds.shape)
  const rowShape = x.shape.slice(segmentIds.shape.length)
  const rowSize = tf.util.sizeFromShape(rowShape)
  if (idCount * rowSize !== tf.util.sizeFromShape(x.shape)) {
    throw new Error(
      `UnsortedSegmentSum: segmentIds shape ${segmentIds.shape} is not a prefix of x shape ${x.shape}`,
    )
  }
  const out = backend.makeOutput([numSegments, ...rowShape], x.dtype)
  const target = backend.typedArrayFromHeap(out)
  target.fill(0)
  // Views are taken after makeOutput: allocating may grow the wasm memory and detach older views.
  const source = backend.typedArrayFromHeap(x)
  const ids = backend.typedArrayFromHeap(segmentIds)
  for (let i = 0; i < idCount; i++) {
    const segment = ids[i]!
    if (segment < 0 || segment >= numSegments) continue
    const from = i * rowSize
    const to = segment * rowSize
    for (let j = 0; j < rowSize; j++) target[to + j]! += source[from + j]!
  }
  return out
}

/**
 * Identity and same-dtype Cast share the input's buffer (reference-counted, as Reshape does and as the
 * cpu backend's Identity does) instead of copying it: tfjs's gradient machinery issues hundreds of them
 * per training step, and no kernel writes into its inputs, so sharing is unobservable.
 */
function shareBuffer(backend: BackendWasm, x: TensorInfo): TensorInfo {
  backend.incRef(x.dataId)
  return { dataId: x.dataId, shape: x.shape, dtype: x.dtype }
}

/** Runs of adjacent dimensions that are all reduced or all kept, size-1 dimensions dropped. */
function reductionRuns(
  shape: readonly number[],
  axes: ReadonlySet<number>,
): { size: number; reduced: boolean }[] {
  const runs: { size: number; reduced: boolean }[] = []
  shape.forEach((size, axis) => {
    if (size === 1) return
    const reduced = axes.has(axis)
    const last = runs[runs.length - 1]
    if (last !== undefined && last.reduced === reduced) last.size *= size
    else runs.push({ size, reduced })
  })
  return runs
}

/**
 * Sum or Mean over leading axes (bias gradients: [N,H,W,C] -> [C]) as one XNNPACK GEMM with a row of
 * ones: measured 9-12x less CPU than the backend's transpose-then-reduce. Other axis patterns keep the
 * backend's kernel (a strided JS pass over GroupNorm's [1,2,4] axes measured no faster).
 */
function reduce(
  scratch: KernelScratch,
  backend: BackendWasm,
  kind: 'Sum' | 'Mean',
  x: TensorInfo,
  attrs: { axis: number | number[]; keepDims: boolean },
): TensorInfo {
  const axes = tf.util.parseAxisParam(attrs.axis, x.shape)
  const axisSet = new Set(axes)
  const runs = reductionRuns(x.shape, axisSet)
  const leadingOnly = runs.length === 2 && runs[0]!.reduced && !runs[1]!.reduced
  if (x.dtype !== 'float32' || !leadingOnly) return scratch.run(kind, { x }, attrs as unknown as NamedAttrMap)
  const finalShape = x.shape
    .map((size, axis) => (axisSet.has(axis) ? 1 : size))
    .filter((_, axis) => attrs.keepDims || !axisSet.has(axis))
  const rows = runs[0]!.size
  const columns = runs[1]!.size
  if (columns % 4 === 0 && simdConvolutionsEnabled()) {
    // Column sums as one SIMD pass (./simd/channels.ts): memory-bound, where a 1-row GEMM is not.
    const out = backend.makeOutput(finalShape, 'float32')
    scratch.adopt(out)
    const memory = (backend.wasm as unknown as { asm: { memory: object } }).asm.memory
    channelKernels(memory).sums(
      backend.getMemoryOffset(x.dataId),
      rows,
      columns,
      backend.getMemoryOffset(out.dataId),
    )
    if (kind === 'Mean') {
      const values = backend.typedArrayFromHeap(out) as Float32Array
      for (let i = 0; i < values.length; i++) values[i] = values[i]! / rows
    }
    return out
  }
  const ones = backend.makeOutput([1, rows], 'float32')
  scratch.adopt(ones)
  backend.typedArrayFromHeap(ones).fill(kind === 'Mean' ? 1 / rows : 1)
  const matrix = scratch.run('Reshape', { x }, { shape: [rows, columns] })
  const product = scratch.run('BatchMatMul', { a: ones, b: matrix }, { transposeA: false, transposeB: false })
  return scratch.run('Reshape', { x: product }, { shape: finalShape })
}

/**
 * Slice reading the input through a heap view: the backend's Slice first copies the *whole* input out of
 * the heap (readSync), which made every concat gradient (SplitV -> Slice) cost a full copy per part.
 */
function slice(
  backend: BackendWasm,
  x: TensorInfo,
  attrs: { begin: number | number[]; size?: number | number[] },
) {
  const [begin, size] = tf.slice_util.parseSliceParams(x as unknown as tf.Tensor, attrs.begin, attrs.size)
  const out = backend.makeOutput(size, x.dtype)
  const count = tf.util.sizeFromShape(size)
  if (count === 0) return out
  const target = backend.typedArrayFromHeap(out)
  const source = backend.typedArrayFromHeap(x)
  const strides = tf.util.computeStrides(x.shape)
  const rank = x.shape.length
  if (rank === 0) {
    target[0] = source[0]!
    return out
  }
  const runLength = size[rank - 1]!
  const counters = new Array<number>(rank).fill(0)
  let offset = begin.reduce((sum, start, axis) => sum + start * (axis < rank - 1 ? strides[axis]! : 1), 0)
  for (let written = 0; written < count; written += runLength) {
    target.set(source.subarray(offset, offset + runLength), written)
    for (let axis = rank - 2; axis >= 0; axis--) {
      counters[axis]!++
      offset += strides[axis]!
      if (counters[axis]! < size[axis]!) break
      counters[axis] = 0
      offset -= strides[axis]! * size[axis]!
    }
  }
  return out
}

let registered = false
let simdConvolutions = true

/** Whether convolutions use the relaxed-SIMD kernels (when the engine supports them). */
export function simdConvolutionsEnabled(): boolean {
  return simdConvolutions && hasRelaxedSimd()
}

/** Switches the relaxed-SIMD convolutions off or on (benchmarks and tests compare both paths). */
export function setSimdConvolutions(enabled: boolean): void {
  simdConvolutions = enabled
}

/**
 * Registers (or replaces) the wasm kernels that training needs. Must run after the wasm backend has
 * initialised, because the composites call the backend's own kernels, which are bound to the wasm module
 * during initialisation. Idempotent.
 */
export function registerWasmTrainingKernels(): void {
  if (registered) return
  // Capture the backend's own implementations before any replacement, so the composites keep calling them.
  const base = new Map<string, KernelFunc>()
  for (const name of [
    'Conv2D',
    'FusedConv2D',
    'Transpose',
    'Reshape',
    'PadV2',
    'Slice',
    'Reverse',
    'BatchMatMul',
    'Sum',
    'Mean',
    'Cast',
  ]) {
    const config = tf.getKernel(name, BACKEND)
    if (config === undefined) throw new Error(`the wasm backend lacks its ${name} kernel`)
    base.set(name, config.kernelFunc)
  }
  const composite = <A>(
    kernelName: string,
    body: (scratch: KernelScratch, inputs: NamedTensorInfoMap, attrs: A) => TensorInfo,
  ): KernelConfig => ({
    kernelName,
    backendName: BACKEND,
    kernelFunc: ({ inputs, backend, attrs }) => {
      const scratch = new KernelScratch(backend as BackendWasm, base)
      try {
        return scratch.finish(body(scratch, inputs, attrs as unknown as A))
      } catch (error) {
        scratch.abandon()
        throw error
      }
    },
  })
  // The relaxed-SIMD convolutions (./wasm-conv.ts) where the engine has relaxed SIMD and the shape fits;
  // otherwise the XNNPACK formulations above.
  const simdFirst = <A>(
    simd: (scratch: KernelScratch, inputs: NamedTensorInfoMap, attrs: A) => TensorInfo | undefined,
    fallback: (scratch: KernelScratch, inputs: NamedTensorInfoMap, attrs: A) => TensorInfo,
  ) => {
    return (scratch: KernelScratch, inputs: NamedTensorInfoMap, attrs: A): TensorInfo =>
      (simdConvolutionsEnabled() ? simd(scratch, inputs, attrs) : undefined) ??
      fallback(scratch, inputs, attrs)
  }
  const configs: KernelConfig[] = [
    composite<Conv2DAttrs>(
      'Conv2D',
      simdFirst(simdConv2D, (scratch, inputs, attrs) =>
        scratch.run('Conv2D', inputs, attrs as unknown as NamedAttrMap),
      ),
    ),
    // Convolution with a bias and no activation (trainer/nn.ts conv): the bias seeds the accumulators.
    composite<FusedConv2DAttrs>(
      'FusedConv2D',
      simdFirst(
        (scratch, inputs, attrs) =>
          attrs.activation === 'linear' && inputs.preluActivationWeights === undefined
            ? simdConv2D(scratch, inputs, attrs)
            : undefined,
        (scratch, inputs, attrs) => scratch.run('FusedConv2D', inputs, attrs as unknown as NamedAttrMap),
      ),
    ),
    composite<Conv2DBackpropFilterAttrs>(
      'Conv2DBackpropFilter',
      simdFirst(simdConv2DBackpropFilter, conv2DBackpropFilter),
    ),
    composite<Conv2DBackpropInputAttrs>(
      'Conv2DBackpropInput',
      simdFirst(simdConv2DBackpropInput, conv2DBackpropInput),
    ),
    composite<BatchMatMulAttrs>('BatchMatMul', batchMatMul),
    {
      kernelName: 'Identity',
      backendName: BACKEND,
      kernelFunc: ({ inputs, backend }) => shareBuffer(backend as BackendWasm, inputs.x as TensorInfo),
    },
    {
      kernelName: 'Cast',
      backendName: BACKEND,
      kernelFunc: (args) => {
        const x = args.inputs.x as TensorInfo
        if ((args.attrs as { dtype: string }).dtype === x.dtype)
          return shareBuffer(args.backend as BackendWasm, x)
        return base.get('Cast')!(args)
      },
    },
    composite<{ axis: number | number[]; keepDims: boolean }>('Sum', (scratch, inputs, attrs) =>
      reduce(scratch, scratch.backendWasm, 'Sum', inputs.x as TensorInfo, attrs),
    ),
    composite<{ axis: number | number[]; keepDims: boolean }>('Mean', (scratch, inputs, attrs) =>
      reduce(scratch, scratch.backendWasm, 'Mean', inputs.x as TensorInfo, attrs),
    ),
    {
      kernelName: 'Slice',
      backendName: BACKEND,
      kernelFunc: ({ inputs, backend, attrs }) =>
        slice(
          backend as BackendWasm,
          inputs.x as TensorInfo,
          attrs as unknown as { begin: number[]; size: number[] },
        ),
    },
    {
      kernelName: 'UnsortedSegmentSum',
      backendName: BACKEND,
      kernelFunc: ({ inputs, backend, attrs }) =>
        unsortedSegmentSum(backend as BackendWasm, inputs, attrs as unknown as UnsortedSegmentSumAttrs),
    },
  ]
  for (const config of configs) {
    if (tf.getKernel(config.kernelName, BACKEND) !== undefined)
      tf.unregisterKernel(config.kernelName, BACKEND)
    tf.registerKernel(config)
  }
  registered = true
}
