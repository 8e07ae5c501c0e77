// A correction for the tfjs `cpu` backend.
//
// Its ResizeNearestNeighborGrad (tfjs-backend-cpu 4.22) offsets rows of dy by the *input's* batch stride,
// so for every image after the first it sums the wrong rows of dy: a batch-2 upsampling gradient comes out
// different from TensorFlow's and from the wasm backend's. Nearest-neighbour upsampling is in every U-Net
// decoder, so without this fix `--backend cpu` trains a different (wrong) model.
//
// The replacement scatters dy back through exactly the index mapping the forward kernel uses, so the
// gradient is the transpose of the forward op by construction.

import * as tf from '@tensorflow/tfjs-core'
import type { KernelConfig, TensorInfo } from '@tensorflow/tfjs-core'

interface CpuBackendLike {
  data: { get(dataId: object): { values: Float32Array } }
  makeTensorInfo(shape: number[], dtype: 'float32', values: Float32Array): TensorInfo
}

interface ResizeGradAttrs {
  alignCorners: boolean
  halfPixelCenters?: boolean
}

/** The source index the forward kernel reads for output index `outIndex` along one axis. */
function nearestSource(
  outIndex: number,
  inSize: number,
  outSize: number,
  alignCorners: boolean,
  halfPixelCenters: boolean,
): number {
  const effectiveIn = alignCorners && outSize > 1 ? inSize - 1 : inSize
  const effectiveOut = alignCorners && outSize > 1 ? outSize - 1 : outSize
  const ratio = effectiveIn / effectiveOut
  const fraction = halfPixelCenters ? ratio * (outIndex + 0.5) : ratio * outIndex
  const nearest = Math.min(inSize - 1, alignCorners ? Math.round(fraction) : Math.floor(fraction))
  return halfPixelCenters ? Math.max(0, nearest) : nearest
}

function resizeNearestNeighborGrad(
  images: TensorInfo,
  dy: TensorInfo,
  attrs: ResizeGradAttrs,
  backend: CpuBackendLike,
) {
  const [batch, inHeight, inWidth, depth] = images.shape as [number, number, number, number]
  const [, outHeight, outWidth] = dy.shape as [number, number, number, number]
  const halfPixelCenters = attrs.halfPixelCenters ?? false
  const rowSource = Array.from({ length: outHeight }, (_, r) =>
    nearestSource(r, inHeight, outHeight, attrs.alignCorners, halfPixelCenters),
  )
  const colSource = Array.from({ length: outWidth }, (_, c) =>
    nearestSource(c, inWidth, outWidth, attrs.alignCorners, halfPixelCenters),
  )
  const dyValues = backend.data.get(dy.dataId).values
  const output = new Float32Array(batch * inHeight * inWidth * depth)
  for (let b = 0; b < batch; b++) {
    for (let r = 0; r < outHeight; r++) {
      const inRowBase = (b * inHeight + rowSource[r]!) * inWidth
      const outRowBase = (b * outHeight + r) * outWidth
      for (let c = 0; c < outWidth; c++) {
        const to = (inRowBase + colSource[c]!) * depth
        const from = (outRowBase + c) * depth
        for (let d = 0; d < depth; d++) output[to + d]! += dyValues[from + d]!
      }
    }
  }
  return backend.makeTensorInfo(images.shape, 'float32', output)
}

const resizeNearestNeighborGradConfig: KernelConfig = {
  kernelName: 'ResizeNearestNeighborGrad',
  backendName: 'cpu',
  kernelFunc: ({ inputs, backend, attrs }) =>
    resizeNearestNeighborGrad(
      inputs.images as TensorInfo,
      inputs.dy as TensorInfo,
      attrs as unknown as ResizeGradAttrs,
      backend as unknown as CpuBackendLike,
    ),
}

let registered = false

/** Replaces the cpu backend's faulty kernels. Idempotent; safe before or after the backend initialises. */
export function registerCpuKernelFixes(): void {
  if (registered) return
  if (tf.getKernel('ResizeNearestNeighborGrad', 'cpu') !== undefined) {
    tf.unregisterKernel('ResizeNearestNeighborGrad', 'cpu')
  }
  tf.registerKernel(resizeNearestNeighborGradConfig)
  registered = true
}
