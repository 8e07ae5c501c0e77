// GroupNorm forward (3 dispatches instead of ~12 tfjs ops) and backward (4 instead of ~20) as WGSL
// kernels for the `webgpu` backend, under the kernel names of trainer/kernels/groupnorm.ts.
import * as tf from '@tensorflow/tfjs-core'
import type { KernelConfig, KernelFunc, TensorInfo } from '@tensorflow/tfjs-core'
import { constantUniform, elementwiseGroups, pipeline, run, scratchBuffer, WORKGROUP } from './dispatch.ts'
import { webGpuInternals } from './internals.ts'
import type { WebGpuInternals } from './internals.ts'

// // Reductions without workgroup barriers: every thread reduces a strided segment into its own partial
// result, and a second dispatch combines the partials. This runs well on GPUs (coalesced reads, many
// threads) and on SwiftShader, the CPU Vulkan driver of the tests, where a 256-thread workgroup barrier
// reduction measured ~40x slower than tfjs's own reductions.

/** Any channel count that splits into groups (kept for callers that ask). */
export function webGpuGroupNormFits(channels: number, groups: number): boolean {
  return Number.isInteger(channels / groups) && channels / groups >= 1
}

/** Segments per (image, group) in the statistics pass: ~256 elements each, at most 256 segments. */
function statSegments(groupSize: number): number {
  return Math.max(1, Math.min(256, Math.ceil(groupSize / 256)))
}

/** Segments of the positions in the gradient pass: ~64 positions each, at most 64 segments. */
function gradSegments(positions: number): number {
  return Math.max(1, Math.min(64, Math.ceil(positions / 64)))
}

// Shape words: images, positions, channels, groups, perGroup, segments; then epsilon.
const GN_STRUCT = `struct Shape { images: u32, positions: u32, channels: u32, groups: u32, perGroup: u32, segments: u32, unused0: u32, unused1: u32, epsilon: f32 }`

/** Statistics pass 1: per (image, group, segment), count / mean / M2 (Welford) of a strided segment. */
const GN_STATS_PARTIAL = `
${GN_STRUCT}
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> partial: array<f32>;
@group(0) @binding(2) var<uniform> shape: Shape;
@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let slots = shape.images * shape.groups * shape.segments;
  let size = shape.positions * shape.perGroup;
  for (var t = id.x; t < slots; t += groups.x * ${WORKGROUP}u) {
    let segment = t % shape.segments;
    let slot = t / shape.segments;
    let n = slot / shape.groups;
    let g = slot % shape.groups;
    let base = n * shape.positions * shape.channels + g * shape.perGroup;
    var count = 0.0;
    var mean = 0.0;
    var m2 = 0.0;
    for (var e = segment; e < size; e += shape.segments) {
      let value = x[base + (e / shape.perGroup) * shape.channels + e % shape.perGroup];
      count += 1.0;
      let delta = value - mean;
      mean += delta / count;
      m2 += delta * (value - mean);
    }
    partial[t * 3u] = count;
    partial[t * 3u + 1u] = mean;
    partial[t * 3u + 2u] = m2;
  }
}`

/** Statistics pass 2: per (image, group), merge the segments (Chan et al.) into mean and 1/sqrt(var + eps). */
const GN_STATS_FINAL = `
${GN_STRUCT}
@group(0) @binding(0) var<storage, read> partial: array<f32>;
@group(0) @binding(1) var<storage, read_write> mean: array<f32>;
@group(0) @binding(2) var<storage, read_write> rstd: array<f32>;
@group(0) @binding(3) var<uniform> shape: Shape;
@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
  let slot = id.x;
  if (slot >= shape.images * shape.groups) { return; }
  var count = 0.0;
  var m = 0.0;
  var m2 = 0.0;
  for (var s = 0u; s < shape.segments; s++) {
    let i = (slot * shape.segments + s) * 3u;
    let n = partial[i];
    if (n == 0.0) { continue; }
    let total = count + n;
    let delta = partial[i + 1u] - m;
    m += delta * n / total;
    m2 += partial[i + 2u] + delta * delta * count * n / total;
    count = total;
  }
  mean[slot] = m;
  rstd[slot] = 1.0 / sqrt(m2 / count + shape.epsilon);
}`

const GN_APPLY = `
${GN_STRUCT}
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> gamma: array<f32>;
@group(0) @binding(2) var<storage, read> beta: array<f32>;
@group(0) @binding(3) var<storage, read> mean: array<f32>;
@group(0) @binding(4) var<storage, read> rstd: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;
@group(0) @binding(6) var<uniform> shape: Shape;
@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let total = shape.images * shape.positions * shape.channels;
  for (var i = id.x; i < total; i += groups.x * ${WORKGROUP}u) {
    let c = i % shape.channels;
    let slot = (i / (shape.positions * shape.channels)) * shape.groups + c / shape.perGroup;
    y[i] = (x[i] - mean[slot]) * rstd[slot] * gamma[c] + beta[c];
  }
}`

/**
 * Gradient pass 1: per (image, segment of positions, channel) -- channel fastest, so neighbouring threads
 * read neighbouring values -- the partial sums of dy and of dy * xhat.
 */
const GN_GRAD_PARTIAL = `
${GN_STRUCT}
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read> mean: array<f32>;
@group(0) @binding(3) var<storage, read> rstd: array<f32>;
@group(0) @binding(4) var<storage, read_write> partial: array<f32>;
@group(0) @binding(5) var<uniform> shape: Shape;
@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let slots = shape.images * shape.segments * shape.channels;
  for (var t = id.x; t < slots; t += groups.x * ${WORKGROUP}u) {
    let c = t % shape.channels;
    let segment = (t / shape.channels) % shape.segments;
    let n = t / (shape.channels * shape.segments);
    let slot = n * shape.groups + c / shape.perGroup;
    let m = mean[slot];
    let r = rstd[slot];
    var sumDy = 0.0;
    var sumDyXhat = 0.0;
    for (var p = segment; p < shape.positions; p += shape.segments) {
      let i = (n * shape.positions + p) * shape.channels + c;
      let gradient = dy[i];
      sumDy += gradient;
      sumDyXhat += gradient * (x[i] - m) * r;
    }
    partial[t * 2u] = sumDy;
    partial[t * 2u + 1u] = sumDyXhat;
  }
}`

/** Gradient pass 2a: dGamma and dBeta per channel (sums over images and segments). */
const GN_GRAD_PARAMS = `
${GN_STRUCT}
@group(0) @binding(0) var<storage, read> partial: array<f32>;
@group(0) @binding(1) var<storage, read_write> dGamma: array<f32>;
@group(0) @binding(2) var<storage, read_write> dBeta: array<f32>;
@group(0) @binding(3) var<uniform> shape: Shape;
@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
  let c = id.x;
  if (c >= shape.channels) { return; }
  var gammaSum = 0.0;
  var betaSum = 0.0;
  for (var ns = 0u; ns < shape.images * shape.segments; ns++) {
    let i = (ns * shape.channels + c) * 2u;
    betaSum += partial[i];
    gammaSum += partial[i + 1u];
  }
  dGamma[c] = gammaSum;
  dBeta[c] = betaSum;
}`

/** Gradient pass 2b: per (image, group), mean over the group of gamma dy and of gamma dy xhat. */
const GN_GRAD_COEFFICIENTS = `
${GN_STRUCT}
@group(0) @binding(0) var<storage, read> partial: array<f32>;
@group(0) @binding(1) var<storage, read> gamma: array<f32>;
@group(0) @binding(2) var<storage, read_write> coefficients: array<f32>;
@group(0) @binding(3) var<uniform> shape: Shape;
@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
  let slot = id.x;
  if (slot >= shape.images * shape.groups) { return; }
  let n = slot / shape.groups;
  let g = slot % shape.groups;
  var m1 = 0.0;
  var m2 = 0.0;
  for (var k = 0u; k < shape.perGroup; k++) {
    let c = g * shape.perGroup + k;
    for (var s = 0u; s < shape.segments; s++) {
      let i = ((n * shape.segments + s) * shape.channels + c) * 2u;
      m1 += gamma[c] * partial[i];
      m2 += gamma[c] * partial[i + 1u];
    }
  }
  let size = f32(shape.positions * shape.perGroup);
  coefficients[slot * 2u] = m1 / size;
  coefficients[slot * 2u + 1u] = m2 / size;
}`

/** Gradient pass 3: dx = rstd (dy gamma - mean_g(gamma dy) - xhat mean_g(gamma dy xhat)). */
const GN_GRAD_INPUT = `
${GN_STRUCT}
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read> gamma: array<f32>;
@group(0) @binding(3) var<storage, read> mean: array<f32>;
@group(0) @binding(4) var<storage, read> rstd: array<f32>;
@group(0) @binding(5) var<storage, read> coefficients: array<f32>;
@group(0) @binding(6) var<storage, read_write> dx: array<f32>;
@group(0) @binding(7) var<uniform> shape: Shape;
@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let total = shape.images * shape.positions * shape.channels;
  for (var i = id.x; i < total; i += groups.x * ${WORKGROUP}u) {
    let c = i % shape.channels;
    let slot = (i / (shape.positions * shape.channels)) * shape.groups + c / shape.perGroup;
    let r = rstd[slot];
    let xhat = (x[i] - mean[slot]) * r;
    dx[i] = r * (dy[i] * gamma[c] - coefficients[slot * 2u] - xhat * coefficients[slot * 2u + 1u]);
  }
}`

function gnLayout(x: TensorInfo, groups: number) {
  const [images, height, width, channels] = x.shape as [number, number, number, number]
  return { images, positions: height * width, channels, groups, perGroup: channels / groups }
}

function gnUniform(
  backend: WebGpuInternals,
  x: TensorInfo,
  groups: number,
  segments: number,
  epsilon: number,
): GPUBuffer {
  const l = gnLayout(x, groups)
  return constantUniform(backend.device, {
    u32: [l.images, l.positions, l.channels, l.groups, l.perGroup, segments, 0, 0],
    f32: [epsilon],
  })
}

const groupNormForward: KernelFunc = ({ inputs, backend: raw, attrs }) => {
  const backend = webGpuInternals(raw)
  const { groups, epsilon } = attrs as unknown as { groups: number; epsilon: number }
  const x = inputs.x as TensorInfo
  const l = gnLayout(x, groups)
  const segments = statSegments(l.positions * l.perGroup)
  const uniform = gnUniform(backend, x, groups, segments, epsilon)
  const mean = backend.makeTensorInfo([l.images, groups], 'float32')
  const rstd = backend.makeTensorInfo([l.images, groups], 'float32')
  const y = backend.makeTensorInfo([...x.shape], 'float32')
  const device = backend.device
  const partial = scratchBuffer(device, 'groupnorm-stats', l.images * groups * segments * 3 * 4)
  const xBuffer = backend.bufferOf(x)
  run(
    backend,
    pipeline(device, 'CoopGroupNormStats', GN_STATS_PARTIAL),
    [xBuffer, partial],
    uniform,
    elementwiseGroups(l.images * groups * segments),
  )
  run(
    backend,
    pipeline(device, 'CoopGroupNormStatsFinal', GN_STATS_FINAL),
    [partial, backend.bufferOf(mean), backend.bufferOf(rstd)],
    uniform,
    elementwiseGroups(l.images * groups),
  )
  run(
    backend,
    pipeline(device, 'CoopGroupNormApply', GN_APPLY),
    [
      xBuffer,
      ...[inputs.gamma as TensorInfo, inputs.beta as TensorInfo, mean, rstd, y].map((t) =>
        backend.bufferOf(t),
      ),
    ],
    uniform,
    elementwiseGroups(tf.util.sizeFromShape(x.shape)),
  )
  return [y, mean, rstd]
}

const groupNormBackward: KernelFunc = ({ inputs, backend: raw, attrs }) => {
  const backend = webGpuInternals(raw)
  const { groups } = attrs as unknown as { groups: number }
  const x = inputs.x as TensorInfo
  const l = gnLayout(x, groups)
  const segments = gradSegments(l.positions)
  const uniform = gnUniform(backend, x, groups, segments, 0)
  const device = backend.device
  const partial = scratchBuffer(device, 'groupnorm-grad', l.images * segments * l.channels * 2 * 4)
  const coefficients = scratchBuffer(device, 'groupnorm-coefficients', l.images * groups * 2 * 4)
  const dx = backend.makeTensorInfo([...x.shape], 'float32')
  const dGamma = backend.makeTensorInfo([l.channels], 'float32')
  const dBeta = backend.makeTensorInfo([l.channels], 'float32')
  const [xBuffer, dyBuffer, gammaBuffer, meanBuffer, rstdBuffer] = [
    x,
    inputs.dy,
    inputs.gamma,
    inputs.mean,
    inputs.rstd,
  ].map((t) => backend.bufferOf(t as TensorInfo)) as [GPUBuffer, GPUBuffer, GPUBuffer, GPUBuffer, GPUBuffer]
  run(
    backend,
    pipeline(device, 'CoopGroupNormGradPartial', GN_GRAD_PARTIAL),
    [xBuffer, dyBuffer, meanBuffer, rstdBuffer, partial],
    uniform,
    elementwiseGroups(l.images * segments * l.channels),
  )
  run(
    backend,
    pipeline(device, 'CoopGroupNormGradParams', GN_GRAD_PARAMS),
    [partial, backend.bufferOf(dGamma), backend.bufferOf(dBeta)],
    uniform,
    elementwiseGroups(l.channels),
  )
  run(
    backend,
    pipeline(device, 'CoopGroupNormGradCoefficients', GN_GRAD_COEFFICIENTS),
    [partial, gammaBuffer, coefficients],
    uniform,
    elementwiseGroups(l.images * groups),
  )
  run(
    backend,
    pipeline(device, 'CoopGroupNormGradInput', GN_GRAD_INPUT),
    [xBuffer, dyBuffer, gammaBuffer, meanBuffer, rstdBuffer, coefficients, backend.bufferOf(dx)],
    uniform,
    elementwiseGroups(tf.util.sizeFromShape(x.shape)),
  )
  return [dx, dGamma, dBeta]
}

export const webGpuGroupNormKernels: KernelConfig[] = [
  { kernelName: 'CoopGroupNorm', backendName: 'webgpu', kernelFunc: groupNormForward },
  { kernelName: 'CoopGroupNormGrad', backendName: 'webgpu', kernelFunc: groupNormBackward },
]
