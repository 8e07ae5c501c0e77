// Kernel replacements for tfjs's `webgpu` backend in training.
//
// AddN: tfjs's program binds every input as its own storage buffer, so summing more tensors than the
// device allows per shader stage (8 by default, 12 on SwiftShader) fails validation, and a failed
// dispatch leaves zeros. The gradient tape sums the contributions of a tensor used many times with
// AddN, so a U-Net backward pass hits that. Here the inputs are summed in chunks that fit, then the
// partial sums, in a fixed order.
import * as tf from '@tensorflow/tfjs-core'
import type { KernelConfig, KernelFunc, TensorInfo } from '@tensorflow/tfjs-core'

const BACKEND = 'webgpu'

interface WebGpuBackendLike {
  device: GPUDevice
  disposeData(dataId: object): void
}

let registered = false

/** Registers (or replaces) the webgpu kernels training needs. Call after the backend package is imported. */
export function registerWebGpuTrainingKernels(): void {
  if (registered) return
  const original = tf.getKernel('AddN', BACKEND)
  if (original === undefined) throw new Error('the webgpu backend lacks its AddN kernel')
  const baseAddN = original.kernelFunc
  const chunkedAddN: KernelFunc = ({ inputs, backend, attrs }) => {
    const tensors = inputs as unknown as TensorInfo[]
    const webgpu = backend as unknown as WebGpuBackendLike
    // One storage binding is the output; the rest can be inputs.
    const perPass = Math.max(2, webgpu.device.limits.maxStorageBuffersPerShaderStage - 1)
    let level = tensors
    const intermediates: TensorInfo[] = []
    while (level.length > perPass) {
      const next: TensorInfo[] = []
      for (let start = 0; start < level.length; start += perPass) {
        const chunk = level.slice(start, start + perPass)
        if (chunk.length === 1) {
          next.push(chunk[0] as TensorInfo)
          continue
        }
        const sum = baseAddN({
          inputs: chunk as unknown as tf.NamedTensorInfoMap,
          backend,
          attrs,
        }) as TensorInfo
        intermediates.push(sum)
        next.push(sum)
      }
      level = next
    }
    const result = baseAddN({
      inputs: level as unknown as tf.NamedTensorInfoMap,
      backend,
      attrs,
    }) as TensorInfo
    for (const info of intermediates) webgpu.disposeData(info.dataId)
    return result
  }
  const configs: KernelConfig[] = [{ kernelName: 'AddN', backendName: BACKEND, kernelFunc: chunkedAddN }]
  for (const config of configs) {
    tf.unregisterKernel(config.kernelName, BACKEND)
    tf.registerKernel(config)
  }
  registered = true
}
