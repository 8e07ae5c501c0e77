// Registers the project's WGSL kernels for tfjs's `webgpu` backend.
import * as tf from '@tensorflow/tfjs-core'
import { webGpuConvFilterKernels } from './conv-filter.ts'
import { webGpuGroupNormKernels } from './groupnorm.ts'
import { webGpuSiluKernels } from './silu.ts'

export { webGpuGroupNormFits } from './groupnorm.ts'

let registered = false

/** GroupNorm, SiLU and the convolution filter gradient. Idempotent; replaces tfjs's own filter gradient. */
export function registerWebGpuPrograms(): void {
  if (registered) return
  for (const config of [...webGpuGroupNormKernels, ...webGpuSiluKernels])
    if (tf.getKernel(config.kernelName, 'webgpu') === undefined) tf.registerKernel(config)
  for (const config of webGpuConvFilterKernels()) {
    tf.unregisterKernel(config.kernelName, 'webgpu')
    tf.registerKernel(config)
  }
  registered = true
}
