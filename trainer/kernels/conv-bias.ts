// Convolution plus per-channel bias as one kernel with lazy gradients.
//
// tf.fused.conv2d fuses the bias, but its gradient is one eager function that always computes the input
// gradient too, including for a model's first convolution, whose input (the images) needs none: measured
// a 12th input-gradient convolution per autoencoder step. Here the forward pass runs the backend's
// FusedConv2D (on wasm the bias seeds the SIMD kernel's accumulators; on webgpu one dispatch instead of
// two) and the gradient is registered per input, so the tape only evaluates those it needs.
import * as tf from '@tensorflow/tfjs-core'
import type { GradConfig, KernelConfig, NamedAttrMap } from '@tensorflow/tfjs-core'

const KERNEL = 'CoopConv2DBias'
const BACKENDS = ['wasm', 'cpu', 'webgpu'] as const

interface ConvBiasAttrs {
  strides: [number, number]
  pad: 'same' | 'valid'
}

let registered = false

/** Registers the forward kernel on every backend that has FusedConv2D, and the gradient. Idempotent. */
export function registerConvBiasKernels(): void {
  if (registered) return
  for (const backendName of BACKENDS) {
    const config: KernelConfig = {
      kernelName: KERNEL,
      backendName,
      kernelFunc: ({ inputs, backend, attrs }) => {
        // Looked up at call time: the wasm backend replaces FusedConv2D when it initialises.
        const fused = tf.getKernel('FusedConv2D', backendName)
        if (fused === undefined) throw new Error(`${backendName} has no FusedConv2D kernel`)
        const { strides, pad } = attrs as unknown as ConvBiasAttrs
        return fused.kernelFunc({
          inputs,
          backend,
          attrs: {
            strides,
            pad,
            dataFormat: 'NHWC',
            dilations: [1, 1],
            activation: 'linear',
          } as unknown as NamedAttrMap,
        })
      },
    }
    if (tf.getKernel(KERNEL, backendName) === undefined) tf.registerKernel(config)
  }
  const gradient: GradConfig = {
    kernelName: KERNEL,
    inputsToSave: ['x', 'filter'],
    gradFunc: (dy, saved, attrs) => {
      const [x, filter] = saved as [tf.Tensor4D, tf.Tensor4D]
      const { strides, pad } = attrs as unknown as ConvBiasAttrs
      const gradient = dy as tf.Tensor4D
      return {
        x: () => tf.conv2dTranspose(gradient, filter, x.shape, strides, pad),
        filter: () =>
          tf.engine().runKernel('Conv2DBackpropFilter', { x, dy: gradient }, {
            strides,
            pad,
            dataFormat: 'NHWC',
            dimRoundingMode: undefined,
            filterShape: filter.shape,
          } as unknown as NamedAttrMap) as tf.Tensor,
        bias: () => tf.sum(gradient, [0, 1, 2]),
      }
    },
  }
  tf.registerGradient(gradient)
  registered = true
}

/** 'same'-padded conv2d plus a [C] bias; one kernel where the backend has it, conv2d + add elsewhere. */
export function convWithBias(
  x: tf.Tensor4D,
  filter: tf.Tensor4D,
  bias: tf.Tensor1D,
  stride: 1 | 2,
): tf.Tensor4D {
  if (tf.getKernel(KERNEL, tf.getBackend()) === undefined)
    return tf.add(tf.conv2d(x, filter, stride, 'same'), bias) as tf.Tensor4D
  return tf.engine().runKernel(KERNEL, { x, filter, bias }, {
    strides: [stride, stride],
    pad: 'same',
  } as unknown as NamedAttrMap) as tf.Tensor4D
}
