// SiLU, x * sigmoid(x), with a one-pass gradient.
//
// tfjs differentiates mul(x, sigmoid(x)) into six element-wise kernels over the activation (two products,
// the sigmoid gradient's subtract and products, an add), each a full pass over memory and a tape node.
// The gradient of SiLU is dy * s * (1 + x (1 - s)) with s = sigmoid(x), which the forward pass already
// computed: one kernel (SIMD on wasm), and the same formula as tfjs ops elsewhere.
import * as tf from '@tensorflow/tfjs-core'
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm'
import type { KernelConfig, TensorInfo } from '@tensorflow/tfjs-core'
import { elementwiseKernels } from './simd/elementwise.ts'

const GRAD_KERNEL = 'CoopSiluGrad'

let registered = false

export function registerSiluKernels(): void {
  if (registered) return
  const config: KernelConfig = {
    kernelName: GRAD_KERNEL,
    backendName: 'wasm',
    kernelFunc: ({ inputs, backend }) => {
      const wasm = backend as BackendWasm
      const dy = inputs.dy as TensorInfo
      const out = wasm.makeOutput(dy.shape, 'float32')
      const memory = (wasm.wasm as unknown as { asm: { memory: object } }).asm.memory
      const pointer = (info: TensorInfo) => wasm.getMemoryOffset(info.dataId)
      elementwiseKernels(memory).siluGrad(
        pointer(dy),
        pointer(inputs.x as TensorInfo),
        pointer(inputs.s as TensorInfo),
        pointer(out),
        tf.util.sizeFromShape(dy.shape) / 4,
      )
      return out
    },
  }
  if (tf.getKernel(GRAD_KERNEL, 'wasm') === undefined) tf.registerKernel(config)
  registered = true
}

function siluGrad(dy: tf.Tensor, x: tf.Tensor, s: tf.Tensor): tf.Tensor {
  if (tf.getKernel(GRAD_KERNEL, tf.getBackend()) !== undefined && dy.dtype === 'float32' && dy.size % 4 === 0)
    return tf.engine().runKernel(GRAD_KERNEL, { dy, x, s }) as tf.Tensor
  return tf.tidy(() => tf.mul(dy, tf.mul(s, tf.add(1, tf.mul(x, tf.sub(1, s))))))
}

/** On backends with both kernels (webgpu): one pass forward, one backward recomputing sigmoid from x. */
function siluFromKernels(x: tf.Tensor): tf.Tensor {
  const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const input = args[0] as tf.Tensor
    const save = args[1] as tf.GradSaveFunc
    save([input])
    return {
      value: tf.engine().runKernel('CoopSilu', { x: input }) as tf.Tensor,
      gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[]) =>
        tf
          .engine()
          .runKernel('CoopSiluGradX', { dy: dy as tf.Tensor, x: saved[0] as tf.Tensor }) as tf.Tensor,
    }
  }) as (x: tf.Tensor) => tf.Tensor
  return op(x)
}

/** x * sigmoid(x) (Elfwing et al. 2018), differentiable with the one-pass gradient above. */
export function silu<T extends tf.Tensor>(x: T): T {
  if (x.dtype === 'float32' && tf.getKernel('CoopSilu', tf.getBackend()) !== undefined)
    return siluFromKernels(x) as T
  const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const input = args[0] as tf.Tensor
    const save = args[1] as tf.GradSaveFunc
    const s = tf.sigmoid(input)
    save([input, s])
    return {
      value: tf.mul(input, s),
      gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[]) =>
        siluGrad(dy as tf.Tensor, saved[0] as tf.Tensor, saved[1] as tf.Tensor),
    }
  }) as (x: tf.Tensor) => tf.Tensor
  return op(x) as T
}
