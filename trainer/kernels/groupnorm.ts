// GroupNorm (Wu & He 2018) over NHWC as one forward and one backward kernel.
//
// Composed from tfjs ops, GroupNorm costs ~25 small kernels forward and backward, several of them
// transposes of 5-D tensors: on wasm, measured 27 ms of CPU for fwd+bwd at [32,32,32,16], more than the
// 3x3 convolution next to it. Here the wasm and cpu kernels make two passes over the data each way (JS,
// float64 statistics); on wasm, channel counts that are a multiple of 4 run on SIMD (./groupnorm-simd.ts). Other backends get the same maths as tfjs ops, differentiated by tfjs.
//
//   y = (x - mean_g) * rstd_g * gamma_c + beta_c,   rstd_g = 1 / sqrt(var_g + epsilon)
//   dx = rstd_g * (dxhat - mean_g(dxhat) - xhat * mean_g(dxhat * xhat)),   dxhat = dy * gamma_c

import * as tf from '@tensorflow/tfjs-core'
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm'
import type { KernelConfig, KernelFunc, TensorInfo } from '@tensorflow/tfjs-core'
import { webGpuGroupNormFits } from '../webgpu/groupnorm.ts'
import { simdGroupNormBackward, simdGroupNormFits, simdGroupNormForward } from './groupnorm-simd.ts'

const FORWARD_KERNEL = 'CoopGroupNorm'
const BACKWARD_KERNEL = 'CoopGroupNormGrad'
const FUSED_BACKENDS = ['wasm', 'cpu'] as const
type FusedBackend = (typeof FUSED_BACKENDS)[number]

interface BufferAccess {
  read(info: TensorInfo): Float32Array
  allocate(shape: number[]): TensorInfo
}

function bufferAccess(backendName: FusedBackend, backend: unknown): BufferAccess {
  if (backendName === 'wasm') {
    const wasm = backend as BackendWasm
    // Heap views must be taken after the last allocation: growing the heap detaches older views.
    return {
      read: (info) => wasm.typedArrayFromHeap(info) as Float32Array,
      allocate: (shape) => wasm.makeOutput(shape, 'float32'),
    }
  }
  const cpu = backend as {
    data: { get(dataId: object): { values: Float32Array } }
    makeTensorInfo(shape: number[], dtype: 'float32', values: Float32Array): TensorInfo
  }
  return {
    read: (info) => cpu.data.get(info.dataId).values,
    allocate: (shape) => cpu.makeTensorInfo(shape, 'float32', new Float32Array(tf.util.sizeFromShape(shape))),
  }
}

function layout(x: TensorInfo, groups: number) {
  const [batch, height, width, channels] = x.shape as [number, number, number, number]
  const perGroup = channels / groups
  const positions = height * width
  return { batch, channels, positions, perGroup, groupSize: positions * perGroup }
}

function forwardKernel(backendName: FusedBackend): KernelFunc {
  return ({ inputs, backend, attrs }) => {
    const { groups, epsilon } = attrs as unknown as { groups: number; epsilon: number }
    const x = inputs.x as TensorInfo
    if (backendName === 'wasm' && simdGroupNormFits(x))
      return simdGroupNormForward(
        backend as BackendWasm,
        x,
        inputs.gamma as TensorInfo,
        inputs.beta as TensorInfo,
        groups,
        epsilon,
      )
    const { batch, channels, positions, perGroup, groupSize } = layout(x, groups)
    const access = bufferAccess(backendName, backend)
    const yInfo = access.allocate(x.shape)
    const meanInfo = access.allocate([batch, groups])
    const rstdInfo = access.allocate([batch, groups])
    const xs = access.read(x)
    const gamma = access.read(inputs.gamma as TensorInfo)
    const beta = access.read(inputs.beta as TensorInfo)
    const y = access.read(yInfo)
    const means = access.read(meanInfo)
    const rstds = access.read(rstdInfo)
    const sum = new Float64Array(groups)
    const sumSquares = new Float64Array(groups)
    const scale = new Float64Array(channels)
    const shift = new Float64Array(channels)
    for (let n = 0; n < batch; n++) {
      const base = n * positions * channels
      sum.fill(0)
      sumSquares.fill(0)
      for (let p = 0; p < positions; p++) {
        let offset = base + p * channels
        for (let g = 0; g < groups; g++) {
          let s = 0
          let q = 0
          for (let k = 0; k < perGroup; k++) {
            const value = xs[offset++]!
            s += value
            q += value * value
          }
          sum[g]! += s
          sumSquares[g]! += q
        }
      }
      for (let g = 0; g < groups; g++) {
        const mean = sum[g]! / groupSize
        const variance = Math.max(0, sumSquares[g]! / groupSize - mean * mean)
        const rstd = 1 / Math.sqrt(variance + epsilon)
        means[n * groups + g] = mean
        rstds[n * groups + g] = rstd
        for (let k = 0; k < perGroup; k++) {
          const c = g * perGroup + k
          scale[c] = rstd * gamma[c]!
          shift[c] = beta[c]! - mean * rstd * gamma[c]!
        }
      }
      for (let p = 0; p < positions; p++) {
        const offset = base + p * channels
        for (let c = 0; c < channels; c++) y[offset + c] = xs[offset + c]! * scale[c]! + shift[c]!
      }
    }
    return [yInfo, meanInfo, rstdInfo]
  }
}

function backwardKernel(backendName: FusedBackend): KernelFunc {
  return ({ inputs, backend, attrs }) => {
    const { groups } = attrs as unknown as { groups: number }
    const x = inputs.x as TensorInfo
    if (backendName === 'wasm' && simdGroupNormFits(x))
      return simdGroupNormBackward(
        backend as BackendWasm,
        inputs.dy as TensorInfo,
        x,
        inputs.gamma as TensorInfo,
        inputs.mean as TensorInfo,
        inputs.rstd as TensorInfo,
        groups,
      )
    const { batch, channels, positions, perGroup, groupSize } = layout(x, groups)
    const access = bufferAccess(backendName, backend)
    const dxInfo = access.allocate(x.shape)
    const dGammaInfo = access.allocate([channels])
    const dBetaInfo = access.allocate([channels])
    const xs = access.read(x)
    const dy = access.read(inputs.dy as TensorInfo)
    const gamma = access.read(inputs.gamma as TensorInfo)
    const means = access.read(inputs.mean as TensorInfo)
    const rstds = access.read(inputs.rstd as TensorInfo)
    const dx = access.read(dxInfo)
    const dGammaOut = access.read(dGammaInfo)
    const dBetaOut = access.read(dBetaInfo)
    const dGamma = new Float64Array(channels)
    const dBeta = new Float64Array(channels)
    const sumDxhat = new Float64Array(groups)
    const sumDxhatXhat = new Float64Array(groups)
    const mean = new Float64Array(channels)
    const rstd = new Float64Array(channels)
    for (let n = 0; n < batch; n++) {
      const base = n * positions * channels
      for (let c = 0; c < channels; c++) {
        const g = Math.floor(c / perGroup)
        mean[c] = means[n * groups + g]!
        rstd[c] = rstds[n * groups + g]!
      }
      sumDxhat.fill(0)
      sumDxhatXhat.fill(0)
      for (let p = 0; p < positions; p++) {
        let offset = base + p * channels
        for (let g = 0; g < groups; g++) {
          let a = 0
          let b = 0
          for (let k = 0; k < perGroup; k++) {
            const c = g * perGroup + k
            const gradient = dy[offset]!
            const xhat = (xs[offset]! - mean[c]!) * rstd[c]!
            const dxhat = gradient * gamma[c]!
            dGamma[c]! += gradient * xhat
            dBeta[c]! += gradient
            a += dxhat
            b += dxhat * xhat
            offset++
          }
          sumDxhat[g]! += a
          sumDxhatXhat[g]! += b
        }
      }
      for (let g = 0; g < groups; g++) {
        sumDxhat[g]! /= groupSize
        sumDxhatXhat[g]! /= groupSize
      }
      for (let p = 0; p < positions; p++) {
        let offset = base + p * channels
        for (let g = 0; g < groups; g++) {
          const meanDxhat = sumDxhat[g]!
          const meanDxhatXhat = sumDxhatXhat[g]!
          for (let k = 0; k < perGroup; k++) {
            const c = g * perGroup + k
            const xhat = (xs[offset]! - mean[c]!) * rstd[c]!
            dx[offset] = rstd[c]! * (dy[offset]! * gamma[c]! - meanDxhat - xhat * meanDxhatXhat)
            offset++
          }
        }
      }
    }
    for (let c = 0; c < channels; c++) {
      dGammaOut[c] = dGamma[c]!
      dBetaOut[c] = dBeta[c]!
    }
    return [dxInfo, dGammaInfo, dBetaInfo]
  }
}

let registered = false

/** Registers the fused GroupNorm kernels for wasm and cpu. Idempotent. */
export function registerGroupNormKernels(): void {
  if (registered) return
  for (const backendName of FUSED_BACKENDS) {
    const configs: KernelConfig[] = [
      { kernelName: FORWARD_KERNEL, backendName, kernelFunc: forwardKernel(backendName) },
      { kernelName: BACKWARD_KERNEL, backendName, kernelFunc: backwardKernel(backendName) },
    ]
    for (const config of configs) {
      if (tf.getKernel(config.kernelName, backendName) === undefined) tf.registerKernel(config)
    }
  }
  registered = true
}

/** GroupNorm from tfjs ops; the path for backends without the fused kernels, and its reference. */
export function groupNormWithOps(
  x: tf.Tensor4D,
  gamma: tf.Tensor1D,
  beta: tf.Tensor1D,
  groups: number,
  epsilon: number,
): tf.Tensor4D {
  return tf.tidy(() => {
    const [n, h, w, c] = x.shape
    const grouped = tf.reshape(x, [n, h, w, groups, c / groups])
    const { mean, variance } = tf.moments(grouped, [1, 2, 4], true)
    const normalized = tf.reshape(tf.mul(tf.sub(grouped, mean), tf.rsqrt(tf.add(variance, epsilon))), [
      n,
      h,
      w,
      c,
    ])
    return tf.add(tf.mul(normalized, gamma), beta) as tf.Tensor4D
  })
}

/**
 * GroupNorm over an NHWC tensor with per-channel scale `gamma` and shift `beta` (both [C]); differentiable
 * with respect to all three. Uses the fused kernels where the active backend has them.
 */
export function groupNorm(
  x: tf.Tensor4D,
  gamma: tf.Tensor1D,
  beta: tf.Tensor1D,
  groups: number,
  epsilon: number,
): tf.Tensor4D {
  const channels = x.shape[3]
  if (!Number.isInteger(groups) || groups < 1 || channels % groups !== 0) {
    throw new Error(`groupNorm: ${channels} channels cannot be split into ${groups} groups`)
  }
  if (gamma.shape[0] !== channels || beta.shape[0] !== channels) {
    throw new Error(`groupNorm: gamma and beta must have ${channels} entries`)
  }
  const backend = tf.getBackend()
  if (
    tf.getKernel(FORWARD_KERNEL, backend) === undefined ||
    (backend === 'webgpu' && !webGpuGroupNormFits(channels, groups))
  ) {
    return groupNormWithOps(x, gamma, beta, groups, epsilon)
  }
  // customGrad passes its tensor inputs followed by the save function, as one untyped argument list.
  const fused = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [input, scale, shift] = args as tf.Tensor[]
    const save = args[3] as tf.GradSaveFunc
    const [y, mean, rstd] = tf
      .engine()
      .runKernel(FORWARD_KERNEL, { x: input!, gamma: scale!, beta: shift! }, {
        groups,
        epsilon,
      } as unknown as tf.NamedAttrMap) as tf.Tensor[]
    save([input!, scale!, mean!, rstd!])
    return {
      value: y!,
      gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[]) => {
        const [savedX, savedGamma, savedMean, savedRstd] = saved
        return tf
          .engine()
          .runKernel(
            BACKWARD_KERNEL,
            { dy: dy as tf.Tensor, x: savedX!, gamma: savedGamma!, mean: savedMean!, rstd: savedRstd! },
            { groups } as unknown as tf.NamedAttrMap,
          ) as tf.Tensor[]
      },
    }
  }) as (x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor) => tf.Tensor
  return fused(x, gamma, beta) as tf.Tensor4D
}
