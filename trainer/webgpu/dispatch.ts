// Raw WGSL dispatches recorded into tfjs's command stream (./internals.ts), shared by the project's
// WebGPU kernels (./groupnorm.ts, ./silu.ts, ./conv-filter.ts). Shape parameters go in uniform buffers
// made once per distinct content and never rewritten, so no per-step buffer writes are needed.
import type { WebGpuInternals } from './internals.ts'

export const WORKGROUP = 256
/** WebGPU's per-dimension dispatch limit; kernels loop (grid-stride) over anything larger. */
const MAX_WORKGROUPS = 65535

const pipelines = new WeakMap<GPUDevice, Map<string, GPUComputePipeline>>()
const uniforms = new WeakMap<GPUDevice, Map<string, GPUBuffer>>()

export function pipeline(device: GPUDevice, label: string, code: string): GPUComputePipeline {
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
export function constantUniform(device: GPUDevice, words: { u32?: number[]; f32?: number[] }): GPUBuffer {
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

export function run(
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

const scratch = new WeakMap<GPUDevice, Map<string, GPUBuffer>>()

/**
 * A device buffer for one kernel's intermediate results, at least `bytes` long. Sizes round up to a power
 * of two so layers of different shapes share a few buffers; `purpose` keeps two buffers of one kernel
 * call apart. Reuse across calls is safe: commands run in the order they are recorded.
 */
export function scratchBuffer(device: GPUDevice, purpose: string, bytes: number): GPUBuffer {
  let byKey = scratch.get(device)
  if (byKey === undefined) scratch.set(device, (byKey = new Map()))
  const size = 2 ** Math.ceil(Math.log2(Math.max(16, bytes)))
  const key = `${purpose}:${size}`
  let buffer = byKey.get(key)
  if (buffer === undefined) {
    buffer = device.createBuffer({ label: `coop-scratch-${key}`, size, usage: GPUBufferUsage.STORAGE })
    byKey.set(key, buffer)
  }
  return buffer
}

/** Workgroups for one thread per element. */
export function elementwiseGroups(elements: number): number {
  return Math.ceil(elements / WORKGROUP)
}
