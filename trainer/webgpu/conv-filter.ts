// Conv2DBackpropFilter for the `webgpu` backend, replacing tfjs's, which gives each filter element one
// thread that loops over every output pixel of the batch: a 3x3x3x64 filter over 16 images of 256x256 is
// 1,728 threads of a million serial steps each, far too few threads for a GPU.
//
// Here the gradient dw[tap][ci][co] = sum over pixels p of x[p + tap][ci] dy[p][co] is split over chunks
// of pixels (split-K): pass 1 gives each thread one tap, 4 input channels x 4 output channels and one
// chunk, accumulated in registers; pass 2 adds the chunks per filter element. No workgroup barriers (see
// ./groupnorm.ts), and the partial sums are capped in size by making chunks longer.
import * as tf from '@tensorflow/tfjs-core'
import type { Conv2DBackpropFilterAttrs, KernelConfig, KernelFunc, TensorInfo } from '@tensorflow/tfjs-core'
import { constantUniform, elementwiseGroups, pipeline, run, scratchBuffer, WORKGROUP } from './dispatch.ts'
import { webGpuInternals } from './internals.ts'

/** Fewest pixels per chunk: enough work per thread to hide its set-up. */
const MIN_CHUNK = 256
/** Most partial values (chunks x filter elements) kept between the passes: 64 MB. */
const MAX_PARTIALS = 16 * 1024 * 1024

const SHAPE = `struct Shape {
  images: u32, inHeight: u32, inWidth: u32, inChannels: u32,
  outHeight: u32, outWidth: u32, outChannels: u32, filterWidth: u32,
  taps: u32, stride: u32, padTop: u32, padLeft: u32,
  chunkSize: u32, chunks: u32, ciBlocks: u32, coBlocks: u32,
}`

const PARTIAL = `
${SHAPE}
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read_write> partial: array<f32>;
@group(0) @binding(3) var<uniform> shape: Shape;
@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let threads = shape.chunks * shape.taps * shape.ciBlocks * shape.coBlocks;
  let pixels = shape.images * shape.outHeight * shape.outWidth;
  let elements = shape.taps * shape.inChannels * shape.outChannels;
  for (var t = id.x; t < threads; t += groups.x * ${WORKGROUP}u) {
    // Output-channel block fastest: neighbouring threads read neighbouring dy values and the same x.
    let coBlock = t % shape.coBlocks;
    let ciBlock = (t / shape.coBlocks) % shape.ciBlocks;
    let tap = (t / (shape.coBlocks * shape.ciBlocks)) % shape.taps;
    let chunk = t / (shape.coBlocks * shape.ciBlocks * shape.taps);
    let kh = i32(tap / shape.filterWidth);
    let kw = i32(tap % shape.filterWidth);
    let ci0 = ciBlock * 4u;
    let co0 = coBlock * 4u;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    let first = chunk * shape.chunkSize;
    let last = min(first + shape.chunkSize, pixels);
    var ow = first % shape.outWidth;
    var oh = (first / shape.outWidth) % shape.outHeight;
    var n = first / (shape.outWidth * shape.outHeight);
    for (var p = first; p < last; p++) {
      let ih = i32(oh * shape.stride) + kh - i32(shape.padTop);
      let iw = i32(ow * shape.stride) + kw - i32(shape.padLeft);
      if (ih >= 0 && ih < i32(shape.inHeight) && iw >= 0 && iw < i32(shape.inWidth)) {
        let xBase = ((n * shape.inHeight + u32(ih)) * shape.inWidth + u32(iw)) * shape.inChannels + ci0;
        let dyBase = p * shape.outChannels + co0;
        var g = vec4<f32>(0.0);
        for (var k = 0u; k < 4u; k++) { if (co0 + k < shape.outChannels) { g[k] = dy[dyBase + k]; } }
        if (ci0 < shape.inChannels) { acc0 += x[xBase] * g; }
        if (ci0 + 1u < shape.inChannels) { acc1 += x[xBase + 1u] * g; }
        if (ci0 + 2u < shape.inChannels) { acc2 += x[xBase + 2u] * g; }
        if (ci0 + 3u < shape.inChannels) { acc3 += x[xBase + 3u] * g; }
      }
      ow++;
      if (ow == shape.outWidth) {
        ow = 0u;
        oh++;
        if (oh == shape.outHeight) { oh = 0u; n++; }
      }
    }
    var rows = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
    for (var r = 0u; r < 4u; r++) {
      let ci = ci0 + r;
      if (ci >= shape.inChannels) { break; }
      for (var k = 0u; k < 4u; k++) {
        let co = co0 + k;
        if (co < shape.outChannels) {
          partial[chunk * elements + (tap * shape.inChannels + ci) * shape.outChannels + co] = rows[r][k];
        }
      }
    }
  }
}`

const REDUCE = `
${SHAPE}
@group(0) @binding(0) var<storage, read> partial: array<f32>;
@group(0) @binding(1) var<storage, read_write> dw: array<f32>;
@group(0) @binding(2) var<uniform> shape: Shape;
@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let elements = shape.taps * shape.inChannels * shape.outChannels;
  for (var e = id.x; e < elements; e += groups.x * ${WORKGROUP}u) {
    var sum = 0.0;
    for (var chunk = 0u; chunk < shape.chunks; chunk++) { sum += partial[chunk * elements + e]; }
    dw[e] = sum;
  }
}`

/** Split of the batch's output pixels into chunks: at least MIN_CHUNK each, partials within MAX_PARTIALS. */
export function filterGradChunks(
  pixels: number,
  filterElements: number,
): { chunkSize: number; chunks: number } {
  const maxChunks = Math.max(1, Math.floor(MAX_PARTIALS / filterElements))
  const chunks = Math.max(1, Math.min(maxChunks, Math.ceil(pixels / MIN_CHUNK)))
  const chunkSize = Math.ceil(pixels / chunks)
  return { chunkSize, chunks: Math.ceil(pixels / chunkSize) }
}

function filterGrad(fallback: KernelFunc): KernelFunc {
  return (args) => {
    const attrs = args.attrs as unknown as Conv2DBackpropFilterAttrs
    const x = args.inputs.x as TensorInfo
    const dy = args.inputs.dy as TensorInfo
    const dataFormat = attrs.dataFormat ?? 'NHWC'
    if (dataFormat !== 'NHWC' || x.dtype !== 'float32' || dy.dtype !== 'float32') return fallback(args)
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
    if (info.strideHeight !== info.strideWidth || info.padInfo.top < 0 || info.padInfo.left < 0)
      return fallback(args)
    const backend = webGpuInternals(args.backend)
    const taps = info.filterHeight * info.filterWidth
    const elements = taps * info.inChannels * info.outChannels
    const pixels = info.batchSize * info.outHeight * info.outWidth
    const { chunkSize, chunks } = filterGradChunks(pixels, elements)
    const ciBlocks = Math.ceil(info.inChannels / 4)
    const coBlocks = Math.ceil(info.outChannels / 4)
    const uniform = constantUniform(backend.device, {
      u32: [
        info.batchSize,
        info.inHeight,
        info.inWidth,
        info.inChannels,
        info.outHeight,
        info.outWidth,
        info.outChannels,
        info.filterWidth,
        taps,
        info.strideHeight,
        info.padInfo.top,
        info.padInfo.left,
        chunkSize,
        chunks,
        ciBlocks,
        coBlocks,
      ],
    })
    const dw = backend.makeTensorInfo([...attrs.filterShape], 'float32')
    const partial = scratchBuffer(backend.device, 'conv-filter', chunks * elements * 4)
    const device = backend.device
    run(
      backend,
      pipeline(device, 'CoopConvFilterPartial', PARTIAL),
      [backend.bufferOf(x), backend.bufferOf(dy), partial],
      uniform,
      elementwiseGroups(chunks * taps * ciBlocks * coBlocks),
    )
    run(
      backend,
      pipeline(device, 'CoopConvFilterReduce', REDUCE),
      [partial, backend.bufferOf(dw)],
      uniform,
      elementwiseGroups(elements),
    )
    return dw
  }
}

/** The replacement, falling back to tfjs's kernel for NCHW and other shapes it does not cover. */
export function webGpuConvFilterKernels(): KernelConfig[] {
  const original = tf.getKernel('Conv2DBackpropFilter', 'webgpu')
  if (original === undefined) return []
  return [
    {
      kernelName: 'Conv2DBackpropFilter',
      backendName: 'webgpu',
      kernelFunc: filterGrad(original.kernelFunc),
    },
  ]
}
