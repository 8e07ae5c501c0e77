// WGSL kernels that replace chains of tfjs ops on the `webgpu` backend: GroupNorm forward (2 dispatches
// instead of ~12) and backward (4 instead of ~20), and SiLU forward and backward (1 each instead of 2 and
// 5). They record raw dispatches into tfjs's command stream (./internals.ts). Their shape parameters go
// in uniform buffers made once per shape and never rewritten, so no per-step buffer writes are needed.
import * as tf from '@tensorflow/tfjs-core'
import type { KernelConfig, KernelFunc, TensorInfo } from '@tensorflow/tfjs-core'
import { webGpuInternals } from './internals.ts'
import type { WebGpuInternals } from './internals.ts'

const WORKGROUP = 256
const MAX_WORKGROUPS = 65535

const pipelines = new WeakMap<GPUDevice, Map<string, GPUComputePipeline>>()
const uniforms = new WeakMap<GPUDevice, Map<string, GPUBuffer>>()

function pipeline(device: GPUDevice, label: string, code: string): GPUComputePipeline {
  let byLabel = pipelines.get(device)
  if (byLabel === undefined) pipelines.set(device, (byLabel = new Map()))
  let made = byLabel.get(label)
  if (made === undefined) {
    made = device.createComputePipeline({
      label,
      layout: 'auto',
      compute: { module: device.createShaderModule({ code, label }), entryPoint: 'main' },
    })
    byLabel.set(label, made)
  }
  return made
}

/** A uniform buffer of u32/f32 words, made once per distinct content. */
function constantUniform(device: GPUDevice, words: { u32?: number[]; f32?: number[] }): GPUBuffer {
  const key = JSON.stringify(words)
  let byKey = uniforms.get(device)
  if (byKey === undefined) uniforms.set(device, (byKey = new Map()))
  let buffer = byKey.get(key)
  if (buffer === undefined) {
    const u32 = words.u32 ?? []
    const f32 = words.f32 ?? []
    const data = new ArrayBuffer(Math.max(16, Math.ceil((u32.length + f32.length) / 4) * 16))
    new Uint32Array(data, 0, u32.length).set(u32)
    new Float32Array(data, u32.length * 4, f32.length).set(f32)
    buffer = device.createBuffer({
      size: data.byteLength,
      usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
    })
    device.queue.writeBuffer(buffer, 0, data)
    byKey.set(key, buffer)
  }
  return buffer
}

function run(
  backend: WebGpuInternals,
  compute: GPUComputePipeline,
  buffers: GPUBuffer[],
  uniform: GPUBuffer,
  workgroups: number,
): void {
  const entries = [...buffers, uniform].map((buffer, binding) => ({ binding, resource: { buffer } }))
  const bindGroup = backend.device.createBindGroup({ layout: compute.getBindGroupLayout(0), entries })
  const pass = backend.encoderOutsidePass().beginComputePass()
  pass.setPipeline(compute)
  pass.setBindGroup(0, bindGroup)
  pass.dispatchWorkgroups(Math.max(1, Math.min(MAX_WORKGROUPS, workgroups)))
  pass.end()
}

const scratch = new WeakMap<GPUDevice, Map<number, GPUBuffer>>()

/** A device buffer for intermediate results of `bytes` bytes (reused by every kernel call of that size). */
function scratchBuffer(device: GPUDevice, bytes: number): GPUBuffer {
  let bySize = scratch.get(device)
  if (bySize === undefined) scratch.set(device, (bySize = new Map()))
  let buffer = bySize.get(bytes)
  if (buffer === undefined) {
    buffer = device.createBuffer({ size: Math.max(16, bytes), usage: GPUBufferUsage.STORAGE })
    bySize.set(bytes, buffer)
  }
  return buffer
}

// ---- GroupNorm -------------------------------------------------------------------------------------

/** Group statistics reduce per channel lane inside a workgroup: a group's width must divide it. */
export function webGpuGroupNormFits(channels: number, groups: number): boolean {
  const perGroup = channels / groups
  return Number.isInteger(perGroup) && perGroup >= 1 && WORKGROUP % perGroup === 0
}

// Shape words: images, positions, channels, groups, perGroup; then epsilon.
const GN_STRUCT = `struct Shape { images: u32, positions: u32, channels: u32, groups: u32, perGroup: u32, unused0: u32, unused1: u32, unused2: u32, epsilon: f32 }`

/** One workgroup per (image, group): two passes over the group's elements (mean, then centered squares). */
const GN_STATS = `
${GN_STRUCT}
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> mean: array<f32>;
@group(0) @binding(2) var<storage, read_write> rstd: array<f32>;
@group(0) @binding(3) var<uniform> shape: Shape;
var<workgroup> partial: array<f32, ${WORKGROUP}>;
fn reduce(local: u32, value: f32) -> f32 {
  partial[local] = value;
  workgroupBarrier();
  for (var half = ${WORKGROUP / 2}u; half > 0u; half = half / 2u) {
    if (local < half) { partial[local] = partial[local] + partial[local + half]; }
    workgroupBarrier();
  }
  let total = partial[0];
  workgroupBarrier();
  return total;
}
@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(local_invocation_index) local: u32, @builtin(workgroup_id) group: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let count = shape.positions * shape.perGroup;
  for (var slot = group.x; slot < shape.images * shape.groups; slot += groups.x) {
    let n = slot / shape.groups;
    let g = slot % shape.groups;
    let base = n * shape.positions * shape.channels + g * shape.perGroup;
    var sum = 0.0;
    for (var e = local; e < count; e += ${WORKGROUP}u) {
      sum += x[base + (e / shape.perGroup) * shape.channels + e % shape.perGroup];
    }
    let m = reduce(local, sum) / f32(count);
    var squares = 0.0;
    for (var e = local; e < count; e += ${WORKGROUP}u) {
      let d = x[base + (e / shape.perGroup) * shape.channels + e % shape.perGroup] - m;
      squares += d * d;
    }
    let variance = reduce(local, squares) / f32(count);
    if (local == 0u) {
      mean[slot] = m;
      rstd[slot] = 1.0 / sqrt(variance + shape.epsilon);
    }
  }
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
 * Backward pass 1, one workgroup per (image, group): per channel of the group, the sums of dy and of
 * dy * xhat. Each thread's elements share one channel (perGroup divides the workgroup), so the tree
 * reduction stops at perGroup partial sums.
 */
const GN_GRAD_SUMS = `
${GN_STRUCT}
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read> mean: array<f32>;
@group(0) @binding(3) var<storage, read> rstd: array<f32>;
@group(0) @binding(4) var<storage, read_write> sums: array<f32>;
@group(0) @binding(5) var<uniform> shape: Shape;
var<workgroup> partialDy: array<f32, ${WORKGROUP}>;
var<workgroup> partialDyXhat: array<f32, ${WORKGROUP}>;
@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(local_invocation_index) local: u32, @builtin(workgroup_id) group: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let count = shape.positions * shape.perGroup;
  for (var slot = group.x; slot < shape.images * shape.groups; slot += groups.x) {
    let n = slot / shape.groups;
    let g = slot % shape.groups;
    let base = n * shape.positions * shape.channels + g * shape.perGroup;
    let m = mean[slot];
    let r = rstd[slot];
    var sumDy = 0.0;
    var sumDyXhat = 0.0;
    for (var e = local; e < count; e += ${WORKGROUP}u) {
      let i = base + (e / shape.perGroup) * shape.channels + e % shape.perGroup;
      let gradient = dy[i];
      sumDy += gradient;
      sumDyXhat += gradient * (x[i] - m) * r;
    }
    partialDy[local] = sumDy;
    partialDyXhat[local] = sumDyXhat;
    workgroupBarrier();
    for (var half = ${WORKGROUP / 2}u; half >= shape.perGroup; half = half / 2u) {
      if (local < half) {
        partialDy[local] = partialDy[local] + partialDy[local + half];
        partialDyXhat[local] = partialDyXhat[local] + partialDyXhat[local + half];
      }
      workgroupBarrier();
    }
    if (local < shape.perGroup) {
      let c = g * shape.perGroup + local;
      sums[(n * shape.channels + c) * 2u] = partialDy[local];
      sums[(n * shape.channels + c) * 2u + 1u] = partialDyXhat[local];
    }
    workgroupBarrier();
  }
}`

/** Backward pass 2: dGamma and dBeta per channel (sums over images). */
const GN_GRAD_PARAMS = `
${GN_STRUCT}
@group(0) @binding(0) var<storage, read> sums: array<f32>;
@group(0) @binding(1) var<storage, read_write> dGamma: array<f32>;
@group(0) @binding(2) var<storage, read_write> dBeta: array<f32>;
@group(0) @binding(3) var<uniform> shape: Shape;
@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
  let c = id.x;
  if (c >= shape.channels) { return; }
  var gammaSum = 0.0;
  var betaSum = 0.0;
  for (var n = 0u; n < shape.images; n++) {
    betaSum += sums[(n * shape.channels + c) * 2u];
    gammaSum += sums[(n * shape.channels + c) * 2u + 1u];
  }
  dGamma[c] = gammaSum;
  dBeta[c] = betaSum;
}`

/** Backward pass 3: dx = rstd (dy gamma - mean_g(gamma dy) - xhat mean_g(gamma dy xhat)). */
const GN_GRAD_INPUT = `
${GN_STRUCT}
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read> gamma: array<f32>;
@group(0) @binding(3) var<storage, read> mean: array<f32>;
@group(0) @binding(4) var<storage, read> rstd: array<f32>;
@group(0) @binding(5) var<storage, read> sums: array<f32>;
@group(0) @binding(6) var<storage, read_write> dx: array<f32>;
@group(0) @binding(7) var<uniform> shape: Shape;
@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let total = shape.images * shape.positions * shape.channels;
  let groupSize = f32(shape.positions * shape.perGroup);
  for (var i = id.x; i < total; i += groups.x * ${WORKGROUP}u) {
    let c = i % shape.channels;
    let n = i / (shape.positions * shape.channels);
    let g = c / shape.perGroup;
    let slot = n * shape.groups + g;
    var m1 = 0.0;
    var m2 = 0.0;
    for (var k = 0u; k < shape.perGroup; k++) {
      let channel = g * shape.perGroup + k;
      m1 += gamma[channel] * sums[(n * shape.channels + channel) * 2u];
      m2 += gamma[channel] * sums[(n * shape.channels + channel) * 2u + 1u];
    }
    let r = rstd[slot];
    let xhat = (x[i] - mean[slot]) * r;
    dx[i] = r * (dy[i] * gamma[c] - m1 / groupSize - xhat * m2 / groupSize);
  }
}`

function gnLayout(x: TensorInfo, groups: number) {
  const [images, height, width, channels] = x.shape as [number, number, number, number]
  return { images, positions: height * width, channels, groups, perGroup: channels / groups }
}

function gnUniform(backend: WebGpuInternals, x: TensorInfo, groups: number, epsilon: number): GPUBuffer {
  const l = gnLayout(x, groups)
  return constantUniform(backend.device, {
    u32: [l.images, l.positions, l.channels, l.groups, l.perGroup, 0, 0, 0],
    f32: [epsilon],
  })
}

function elementwiseGroups(elements: number): number {
  return Math.ceil(elements / WORKGROUP)
}

const groupNormForward: KernelFunc = ({ inputs, backend: raw, attrs }) => {
  const backend = webGpuInternals(raw)
  const { groups, epsilon } = attrs as unknown as { groups: number; epsilon: number }
  const x = inputs.x as TensorInfo
  const l = gnLayout(x, groups)
  const uniform = gnUniform(backend, x, groups, epsilon)
  const mean = backend.makeTensorInfo([l.images, groups], 'float32')
  const rstd = backend.makeTensorInfo([l.images, groups], 'float32')
  const y = backend.makeTensorInfo([...x.shape], 'float32')
  const device = backend.device
  run(
    backend,
    pipeline(device, 'CoopGroupNormStats', GN_STATS),
    [backend.bufferOf(x), backend.bufferOf(mean), backend.bufferOf(rstd)],
    uniform,
    l.images * groups,
  )
  run(
    backend,
    pipeline(device, 'CoopGroupNormApply', GN_APPLY),
    [x, inputs.gamma as TensorInfo, inputs.beta as TensorInfo, mean, rstd, y].map((t) => backend.bufferOf(t)),
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
  const uniform = gnUniform(backend, x, groups, 0)
  const device = backend.device
  const sums = scratchBuffer(device, l.images * l.channels * 2 * 4)
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
    pipeline(device, 'CoopGroupNormGradSums', GN_GRAD_SUMS),
    [xBuffer, dyBuffer, meanBuffer, rstdBuffer, sums],
    uniform,
    l.images * groups,
  )
  run(
    backend,
    pipeline(device, 'CoopGroupNormGradParams', GN_GRAD_PARAMS),
    [sums, backend.bufferOf(dGamma), backend.bufferOf(dBeta)],
    uniform,
    elementwiseGroups(l.channels),
  )
  run(
    backend,
    pipeline(device, 'CoopGroupNormGradInput', GN_GRAD_INPUT),
    [xBuffer, dyBuffer, gammaBuffer, meanBuffer, rstdBuffer, sums, backend.bufferOf(dx)],
    uniform,
    elementwiseGroups(tf.util.sizeFromShape(x.shape)),
  )
  return [dx, dGamma, dBeta]
}

// ---- SiLU ------------------------------------------------------------------------------------------

const SILU_STRUCT = `struct Shape { count: u32, unused0: u32, unused1: u32, unused2: u32 }`

const SILU_FORWARD = `
${SILU_STRUCT}
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<uniform> shape: Shape;
@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  for (var i = id.x; i < shape.count; i += groups.x * ${WORKGROUP}u) {
    let v = x[i];
    y[i] = v / (1.0 + exp(-v));
  }
}`

/** dx = dy s (1 + x (1 - s)), s = sigmoid(x) recomputed (cheaper than storing it on a GPU). */
const SILU_BACKWARD = `
${SILU_STRUCT}
@group(0) @binding(0) var<storage, read> dy: array<f32>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> dx: array<f32>;
@group(0) @binding(3) var<uniform> shape: Shape;
@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  for (var i = id.x; i < shape.count; i += groups.x * ${WORKGROUP}u) {
    let v = x[i];
    let s = 1.0 / (1.0 + exp(-v));
    dx[i] = dy[i] * s * (1.0 + v * (1.0 - s));
  }
}`

const siluForward: KernelFunc = ({ inputs, backend: raw }) => {
  const backend = webGpuInternals(raw)
  const x = inputs.x as TensorInfo
  const count = tf.util.sizeFromShape(x.shape)
  const y = backend.makeTensorInfo([...x.shape], 'float32')
  if (count === 0) return y
  run(
    backend,
    pipeline(backend.device, 'CoopSilu', SILU_FORWARD),
    [backend.bufferOf(x), backend.bufferOf(y)],
    constantUniform(backend.device, { u32: [count, 0, 0, 0] }),
    elementwiseGroups(count),
  )
  return y
}

const siluBackward: KernelFunc = ({ inputs, backend: raw }) => {
  const backend = webGpuInternals(raw)
  const x = inputs.x as TensorInfo
  const count = tf.util.sizeFromShape(x.shape)
  const dx = backend.makeTensorInfo([...x.shape], 'float32')
  if (count === 0) return dx
  run(
    backend,
    pipeline(backend.device, 'CoopSiluGradX', SILU_BACKWARD),
    [backend.bufferOf(inputs.dy as TensorInfo), backend.bufferOf(x), backend.bufferOf(dx)],
    constantUniform(backend.device, { u32: [count, 0, 0, 0] }),
    elementwiseGroups(count),
  )
  return dx
}

let registered = false

/** Registers the WGSL GroupNorm and SiLU kernels for `webgpu`. Idempotent. */
export function registerWebGpuPrograms(): void {
  if (registered) return
  const configs: KernelConfig[] = [
    { kernelName: 'CoopGroupNorm', backendName: 'webgpu', kernelFunc: groupNormForward },
    { kernelName: 'CoopGroupNormGrad', backendName: 'webgpu', kernelFunc: groupNormBackward },
    { kernelName: 'CoopSilu', backendName: 'webgpu', kernelFunc: siluForward },
    { kernelName: 'CoopSiluGradX', backendName: 'webgpu', kernelFunc: siluBackward },
  ]
  for (const config of configs)
    if (tf.getKernel(config.kernelName, 'webgpu') === undefined) tf.registerKernel(config)
  registered = true
}
