// SiLU forward and backward as one WGSL dispatch each on the `webgpu` backend (tfjs ops: 2 and 5), under
// the kernel names trainer/kernels/silu.ts looks for.
import * as tf from '@tensorflow/tfjs-core'
import type { KernelConfig, KernelFunc, TensorInfo } from '@tensorflow/tfjs-core'
import { constantUniform, elementwiseGroups, pipeline, run, WORKGROUP } from './dispatch.ts'
import { webGpuInternals } from './internals.ts'

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

export const webGpuSiluKernels: KernelConfig[] = [
  { kernelName: 'CoopSilu', backendName: 'webgpu', kernelFunc: siluForward },
  { kernelName: 'CoopSiluGradX', backendName: 'webgpu', kernelFunc: siluBackward },
]
