// WebGPU in Node: Dawn (npm `webgpu`) provides the objects tfjs-backend-webgpu expects from a browser.
// This module finds an adapter, creates the device with the adapter's real limits (the package asks for
// the WebGPU defaults, e.g. 8 storage buffers per shader stage, which breaks tf.addN over more than 7
// tensors and forces more, smaller dispatches), registers tfjs's WebGPUBackend on that device, records
// device errors so a step fails loudly instead of computing zeros, and counts the host-side cost of the
// calls that dominate a training step (submit, pipeline compilation, buffer creation) for the benchmark.
import * as tf from '@tensorflow/tfjs-core'
import { tmpdir } from 'node:os'
import { WEBGPU_SUBMIT_BATCH } from '../kernels/constants.ts'

interface DawnModule {
  create(flags: string[]): GPU
  globals: Record<string, unknown>
}

/** Raised when no usable adapter exists; backend selection turns it into one log line. */
export class WebGpuUnavailable extends Error {
  override name = 'WebGpuUnavailable'
}

/** Limits worth raising to the adapter's maximum for training (the rest keep WebGPU's defaults). */
const RAISED_LIMITS = [
  'maxStorageBuffersPerShaderStage',
  'maxStorageBufferBindingSize',
  'maxBufferSize',
  'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX',
  'maxComputeWorkgroupSizeY',
  'maxComputeWorkgroupSizeZ',
  'maxComputeWorkgroupsPerDimension',
  'maxBindingsPerBindGroup',
] as const

/** Host-side time and counts of the device calls a training step makes (see webGpuCallStats). */
export interface WebGpuCallStats {
  submits: number
  submitMs: number
  dispatches: number
  bufferCreations: number
  bufferCreationMs: number
  pipelineCompilations: number
  pipelineCompilationMs: number
  bindGroups: number
  bindGroupMs: number
  bufferWrites: number
  bufferWriteMs: number
}

function emptyStats(): WebGpuCallStats {
  return {
    submits: 0,
    submitMs: 0,
    dispatches: 0,
    bufferCreations: 0,
    bufferCreationMs: 0,
    pipelineCompilations: 0,
    pipelineCompilationMs: 0,
    bindGroups: 0,
    bindGroupMs: 0,
    bufferWrites: 0,
    bufferWriteMs: 0,
  }
}

interface ActiveDevice {
  device: GPUDevice
  adapter: GPUAdapter
  description: string
  software: boolean
}

let active: ActiveDevice | undefined
let stats = emptyStats()
const deviceErrors: string[] = []

/** Counts and times calls of `method` on `target` into `stats` (an instance property shadows the prototype's). */
function timed<T extends object>(
  target: T,
  method: keyof T & string,
  count: keyof WebGpuCallStats | undefined,
  ms?: keyof WebGpuCallStats,
  wrapResult?: (result: unknown) => unknown,
): void {
  const original = (target[method] as (...args: unknown[]) => unknown).bind(target)
  Object.defineProperty(target, method, {
    configurable: true,
    value: (...args: unknown[]) => {
      const started = performance.now()
      try {
        const result = original(...args)
        return wrapResult === undefined ? result : wrapResult(result)
      } finally {
        if (count !== undefined) stats[count]++
        if (ms !== undefined) stats[ms] += performance.now() - started
      }
    },
  })
}

function instrument(device: GPUDevice): void {
  timed(device.queue, 'submit', 'submits', 'submitMs')
  timed(device.queue, 'writeBuffer', 'bufferWrites', 'bufferWriteMs')
  timed(device, 'createBuffer', 'bufferCreations', 'bufferCreationMs')
  timed(device, 'createComputePipeline', 'pipelineCompilations', 'pipelineCompilationMs')
  timed(device, 'createBindGroup', 'bindGroups', 'bindGroupMs')
  // Dispatches are recorded on pass encoders, which are created per pass: count them through the encoder.
  timed(device, 'createCommandEncoder', undefined, undefined, (encoder) => {
    const commandEncoder = encoder as GPUCommandEncoder
    const begin = commandEncoder.beginComputePass.bind(commandEncoder)
    Object.defineProperty(commandEncoder, 'beginComputePass', {
      configurable: true,
      value: (descriptor?: GPUComputePassDescriptor) => {
        const pass = begin(descriptor)
        const dispatch = pass.dispatchWorkgroups.bind(pass)
        Object.defineProperty(pass, 'dispatchWorkgroups', {
          configurable: true,
          value: (x: number, y?: number, z?: number) => {
            stats.dispatches++
            dispatch(x, y, z)
          },
        })
        return pass
      },
    })
    return commandEncoder
  })
}

interface UploadingBackend {
  device: GPUDevice
  tensorMap: { get(dataId: object): { values: unknown; resource: unknown; dtype: string; shape: number[] } }
  bufferManager: { acquireBuffer(size: number, usage: number): GPUBuffer }
  uploadToGPU(dataId: object): void
}

/**
 * tfjs uploads a tensor's host values through a new mapped staging buffer each time (created, never
 * reused): every per-step input, noise tensor and scalar constant costs a createBuffer. queue.writeBuffer
 * does the same copy through Dawn's own staging ring. It is ordered before the next submit, which is
 * safe here: the destination comes from the free pool, so no recorded-but-unsubmitted command uses it.
 */
function uploadWithoutStaging(backend: tf.KernelBackend): tf.KernelBackend {
  const target = backend as unknown as UploadingBackend
  const original = target.uploadToGPU.bind(target)
  target.uploadToGPU = (dataId: object) => {
    const data = target.tensorMap.get(dataId)
    const values = data.values
    const typed =
      data.dtype === 'float32' && values instanceof Float32Array
        ? values
        : (data.dtype === 'int32' || data.dtype === 'bool') && values instanceof Int32Array
          ? values
          : undefined
    if (data.resource != null || typed === undefined || typed.length === 0) return original(dataId)
    const size = 4 * tf.util.sizeFromShape(data.shape)
    const buffer = target.bufferManager.acquireBuffer(
      size,
      GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
    )
    target.device.queue.writeBuffer(buffer, 0, typed.buffer, typed.byteOffset, size)
    data.resource = buffer
    // As tfjs does once values are on the device: the host copy is dropped.
    data.values = null
  }
  return backend
}

/** Dispatches per queue submit: COOP_WEBGPU_SUBMIT_BATCH if set (a positive integer), else the default. */
function submitBatchSize(): number {
  const configured = Number(process.env.COOP_WEBGPU_SUBMIT_BATCH)
  return Number.isInteger(configured) && configured > 0 ? configured : WEBGPU_SUBMIT_BATCH
}

/** Snapshot of the call counters since the last reset (the benchmark's per-phase breakdown). */
export function webGpuCallStats(): WebGpuCallStats {
  return { ...stats }
}

export function resetWebGpuCallStats(): void {
  stats = emptyStats()
}

/**
 * The first device error since the last call (validation, out of memory, internal, or device loss), if
 * any. A WebGPU error does not throw where it happens: the command is dropped and its output stays zero,
 * so the session checks this after every step.
 */
export function takeWebGpuError(): string | undefined {
  const first = deviceErrors[0]
  deviceErrors.length = 0
  return first
}

export function webGpuDevice(): GPUDevice | undefined {
  return active?.device
}

export function webGpuAdapterDescription(): string | undefined {
  return active?.description
}

/** GPUAdapter.info (newer than the type definitions installed here). */
function adapterInfo(adapter: GPUAdapter): GPUAdapterInfo & { isFallbackAdapter?: boolean } {
  return (adapter as GPUAdapter & { info: GPUAdapterInfo & { isFallbackAdapter?: boolean } }).info
}

function describeAdapter(adapter: GPUAdapter): { description: string; software: boolean } {
  const info = adapterInfo(adapter)
  const parts = [info.vendor, info.architecture, info.device, info.description].filter((p) => p !== '')
  const description = [...new Set(parts)].join(' / ') || 'unnamed adapter'
  const fallback = info.isFallbackAdapter === true
  const software = fallback || /swiftshader|llvmpipe|lavapipe/i.test(description)
  return { description, software }
}

/**
 * Creates the WebGPU device and registers tfjs's `webgpu` backend on it. A software adapter (SwiftShader:
 * a CPU emulation, correct but far slower than wasm) is accepted only when `allowSoftware` (an explicit
 * `--backend webgpu`); `auto` skips it. Idempotent: later calls reuse the device.
 */
export async function setUpWebGpu(options: {
  allowSoftware: boolean
}): Promise<{ description: string; software: boolean }> {
  if (active !== undefined) {
    if (active.software && !options.allowSoftware)
      throw new WebGpuUnavailable(`only a software adapter is available (${active.description})`)
    return { description: active.description, software: active.software }
  }
  // Dawn's Vulkan loader complains on stderr when this is unset; any writable directory satisfies it.
  process.env.XDG_RUNTIME_DIR ??= tmpdir()
  const dawn = (await import('webgpu' as string)) as DawnModule
  const gpu = dawn.create([])
  const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' })
  if (adapter === null) throw new WebGpuUnavailable('Dawn found no GPU adapter')
  const { description, software } = describeAdapter(adapter)
  if (software && !options.allowSoftware)
    throw new WebGpuUnavailable(`only a software adapter is available (${description})`)
  // tfjs-backend-webgpu looks for the browser globals; Dawn provides the same objects for Node. Node 21+
  // has a `navigator` whose getters need the real object, so `gpu` is added to it rather than copying it.
  Object.assign(globalThis, dawn.globals)
  if (globalThis.navigator === undefined)
    Object.defineProperty(globalThis, 'navigator', { value: {}, configurable: true, writable: true })
  Object.defineProperty(globalThis.navigator, 'gpu', { value: gpu, configurable: true })
  const { WebGPUBackend } = (await import('@tensorflow/tfjs-backend-webgpu' as string)) as {
    WebGPUBackend: new (device: GPUDevice, adapterInfo?: GPUAdapterInfo) => tf.KernelBackend
  }
  const requiredLimits: Record<string, number> = {}
  for (const name of RAISED_LIMITS) {
    const value = (adapter.limits as unknown as Record<string, number | undefined>)[name]
    if (typeof value === 'number') requiredLimits[name] = value
  }
  const requiredFeatures = (['timestamp-query'] as GPUFeatureName[]).filter((f) => adapter.features.has(f))
  const device = await adapter.requestDevice({ requiredLimits, requiredFeatures })
  device.addEventListener('uncapturederror', (event) => {
    deviceErrors.push((event as GPUUncapturedErrorEvent).error.message.split('\n')[0] ?? 'device error')
  })
  void device.lost.then((info) => {
    if (active?.device === device) deviceErrors.push(`device lost: ${info.message || info.reason}`)
  })
  instrument(device)
  // tfjs submits every 15 dispatches by default; each submit costs a driver round trip on the host
  // (52% of a U-Net step's CPU profile on an H100 before the fused kernels). Our own kernels and every
  // readback submit anyway, so a larger batch mostly means one or a few submits per step.
  tf.env().set('WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE', submitBatchSize())
  // The package registered a factory that would ask for a second device with default limits: replace it.
  if (tf.findBackendFactory('webgpu') !== null) tf.removeBackend('webgpu')
  tf.registerBackend('webgpu', () => uploadWithoutStaging(new WebGPUBackend(device, adapterInfo(adapter))), 3)
  active = { device, adapter, description, software }
  return { description, software }
}
