// The parts of tfjs-backend-webgpu's WebGPUBackend (4.22) that the project's WebGPU kernels use to
// record their own commands into the backend's command stream: its device, the GPU buffer behind a
// tensor, its command encoder, and its submit. Not public API: the version is pinned in package.json.
import type { TensorInfo } from '@tensorflow/tfjs-core'

interface BackendShape {
  device: GPUDevice
  tensorMap: { get(dataId: object): { resource: GPUBuffer | null } }
  uploadToGPU(dataId: object): void
  makeTensorInfo(shape: number[], dtype: 'float32'): TensorInfo
  ensureCommandEncoderReady(): void
  endComputePassEncoder(): void
  commandEncoder: GPUCommandEncoder
  commandQueueOwnedIds: WeakSet<object>
  submitQueue(): void
}

export interface WebGpuInternals {
  readonly device: GPUDevice
  /**
   * The tensor's GPU buffer (uploaded first if its values are still on the host), marked as used by the
   * commands being recorded: tfjs then defers recycling it until the next submit, as for its own
   * dispatches. Without that, a tensor disposed right after could lend its buffer to an upload
   * (queue.writeBuffer, which runs before the recorded commands) and corrupt what they read.
   */
  bufferOf(info: TensorInfo): GPUBuffer
  makeTensorInfo(shape: number[], dtype: 'float32'): TensorInfo
  /** The backend's command encoder with no compute pass open: copies and new passes can be recorded. */
  encoderOutsidePass(): GPUCommandEncoder
  /** Submits everything recorded so far (tfjs's dispatches and ours, in order). */
  submitQueue(): void
}

export function webGpuInternals(raw: unknown): WebGpuInternals {
  const backend = raw as BackendShape
  return {
    device: backend.device,
    bufferOf(info) {
      backend.uploadToGPU(info.dataId)
      backend.commandQueueOwnedIds.add(info.dataId)
      const resource = backend.tensorMap.get(info.dataId).resource
      if (resource === null) throw new Error('webgpu tensor has no GPU buffer')
      return resource
    },
    makeTensorInfo: (shape, dtype) => backend.makeTensorInfo(shape, dtype),
    encoderOutsidePass() {
      backend.ensureCommandEncoderReady()
      backend.endComputePassEncoder()
      return backend.commandEncoder
    },
    submitQueue() {
      backend.ensureCommandEncoderReady()
      backend.endComputePassEncoder()
      backend.submitQueue()
    },
  }
}

/** WGSL uniforms hold a finite clip norm; "no clipping" is the largest float32. */
export function clipScaleLimit(clipNorm: number): number {
  return Number.isFinite(clipNorm) ? clipNorm : 3.4028234663852886e38
}
