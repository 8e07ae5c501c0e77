// GroupNorm forward and backward on the wasm heap with the SIMD channel kernels (./simd/channels.ts),
// for channel counts that are a multiple of 4. Per image: per-channel sums run in wasm (float32, at
// most one image's positions each), group statistics and per-channel coefficients in JS (float64),
// then one streaming affine pass writes the output. Same maths as ./groupnorm.ts:
//   y  = x * (rstd gamma) + (beta - mean rstd gamma)
//   dx = dy * (rstd gamma) + x * (-rstd^2 m2) + (mean rstd^2 m2 - rstd m1),
//   m1 = mean over the group of gamma dy, m2 = mean over the group of gamma dy xhat.
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm'
import type { TensorInfo } from '@tensorflow/tfjs-core'
import { channelKernels } from './simd/channels.ts'

interface Layout {
  batch: number
  channels: number
  positions: number
  perGroup: number
  groupSize: number
}

function layoutOf(x: TensorInfo, groups: number): Layout {
  const [batch, height, width, channels] = x.shape as [number, number, number, number]
  const perGroup = channels / groups
  const positions = height * width
  return { batch, channels, positions, perGroup, groupSize: positions * perGroup }
}

function heap(backend: BackendWasm) {
  const memory = (backend.wasm as unknown as { asm: { memory: object } }).asm.memory
  return {
    kernels: channelKernels(memory),
    pointer: (info: TensorInfo) => backend.getMemoryOffset(info.dataId),
  }
}

/** Whether these kernels cover a GroupNorm over `x` (NHWC float32, channels a multiple of 4). */
export function simdGroupNormFits(x: TensorInfo): boolean {
  return x.dtype === 'float32' && x.shape.length === 4 && (x.shape[3] as number) % 4 === 0
}

/** Returns [y, mean [batch, groups], rstd [batch, groups]]. */
export function simdGroupNormForward(
  backend: BackendWasm,
  x: TensorInfo,
  gamma: TensorInfo,
  beta: TensorInfo,
  groups: number,
  epsilon: number,
): TensorInfo[] {
  const { batch, channels, positions, perGroup, groupSize } = layoutOf(x, groups)
  const y = backend.makeOutput(x.shape, 'float32')
  const meanInfo = backend.makeOutput([batch, groups], 'float32')
  const rstdInfo = backend.makeOutput([batch, groups], 'float32')
  // Scratch rows: sums, per-channel mean, centered squares, scale, shift.
  const scratch = backend.makeOutput([5 * channels], 'float32')
  const { kernels, pointer } = heap(backend)
  const base = pointer(scratch)
  const [sums, meanVec, squares, scale, shift] = [0, 1, 2, 3, 4].map((row) => base + row * channels * 4) as [
    number,
    number,
    number,
    number,
    number,
  ]
  const gammaValues = new Float32Array(backend.typedArrayFromHeap(gamma) as Float32Array)
  const betaValues = new Float32Array(backend.typedArrayFromHeap(beta) as Float32Array)
  const imageBytes = positions * channels * 4
  for (let n = 0; n < batch; n++) {
    const xImage = pointer(x) + n * imageBytes
    kernels.sums(xImage, positions, channels, sums)
    let rows = backend.typedArrayFromHeap(scratch) as Float32Array
    const means = new Float64Array(groups)
    for (let g = 0; g < groups; g++) {
      let total = 0
      for (let k = 0; k < perGroup; k++) total += rows[g * perGroup + k]!
      means[g] = total / groupSize
      for (let k = 0; k < perGroup; k++) rows[channels + g * perGroup + k] = means[g]!
    }
    kernels.centeredSquares(xImage, positions, channels, meanVec, squares)
    rows = backend.typedArrayFromHeap(scratch) as Float32Array
    const meanOut = backend.typedArrayFromHeap(meanInfo) as Float32Array
    const rstdOut = backend.typedArrayFromHeap(rstdInfo) as Float32Array
    for (let g = 0; g < groups; g++) {
      let total = 0
      for (let k = 0; k < perGroup; k++) total += rows[2 * channels + g * perGroup + k]!
      const rstd = 1 / Math.sqrt(total / groupSize + epsilon)
      meanOut[n * groups + g] = means[g]!
      rstdOut[n * groups + g] = rstd
      for (let k = 0; k < perGroup; k++) {
        const c = g * perGroup + k
        rows[3 * channels + c] = rstd * gammaValues[c]!
        rows[4 * channels + c] = betaValues[c]! - means[g]! * rstd * gammaValues[c]!
      }
    }
    kernels.affine(xImage, positions, channels, scale, shift, pointer(y) + n * imageBytes)
  }
  backend.disposeData(scratch.dataId)
  return [y, meanInfo, rstdInfo]
}

/** Returns [dx, dGamma, dBeta]. */
export function simdGroupNormBackward(
  backend: BackendWasm,
  dy: TensorInfo,
  x: TensorInfo,
  gamma: TensorInfo,
  mean: TensorInfo,
  rstd: TensorInfo,
  groups: number,
): TensorInfo[] {
  const { batch, channels, positions, perGroup, groupSize } = layoutOf(x, groups)
  const dx = backend.makeOutput(x.shape, 'float32')
  const dGammaInfo = backend.makeOutput([channels], 'float32')
  const dBetaInfo = backend.makeOutput([channels], 'float32')
  // Scratch rows: mean, rstd, sum dy, sum dy xhat, a, b, k.
  const scratch = backend.makeOutput([7 * channels], 'float32')
  const { kernels, pointer } = heap(backend)
  const base = pointer(scratch)
  const row = (index: number) => base + index * channels * 4
  const gammaValues = new Float32Array(backend.typedArrayFromHeap(gamma) as Float32Array)
  const means = new Float32Array(backend.typedArrayFromHeap(mean) as Float32Array)
  const rstds = new Float32Array(backend.typedArrayFromHeap(rstd) as Float32Array)
  const dGamma = new Float64Array(channels)
  const dBeta = new Float64Array(channels)
  const imageBytes = positions * channels * 4
  for (let n = 0; n < batch; n++) {
    let rows = backend.typedArrayFromHeap(scratch) as Float32Array
    for (let c = 0; c < channels; c++) {
      const g = Math.floor(c / perGroup)
      rows[c] = means[n * groups + g]!
      rows[channels + c] = rstds[n * groups + g]!
    }
    const xImage = pointer(x) + n * imageBytes
    const dyImage = pointer(dy) + n * imageBytes
    kernels.gradientSums(xImage, dyImage, positions, channels, row(0), row(1), row(2), row(3))
    rows = backend.typedArrayFromHeap(scratch) as Float32Array
    for (let g = 0; g < groups; g++) {
      let m1 = 0
      let m2 = 0
      for (let k = 0; k < perGroup; k++) {
        const c = g * perGroup + k
        dBeta[c]! += rows[2 * channels + c]!
        dGamma[c]! += rows[3 * channels + c]!
        m1 += gammaValues[c]! * rows[2 * channels + c]!
        m2 += gammaValues[c]! * rows[3 * channels + c]!
      }
      m1 /= groupSize
      m2 /= groupSize
      const groupMean = means[n * groups + g]!
      const r = rstds[n * groups + g]!
      for (let k = 0; k < perGroup; k++) {
        const c = g * perGroup + k
        rows[4 * channels + c] = r * gammaValues[c]!
        rows[5 * channels + c] = -r * r * m2
        rows[6 * channels + c] = groupMean * r * r * m2 - r * m1
      }
    }
    kernels.affine2(
      dyImage,
      xImage,
      positions,
      channels,
      row(4),
      row(5),
      row(6),
      pointer(dx) + n * imageBytes,
    )
  }
  ;(backend.typedArrayFromHeap(dGammaInfo) as Float32Array).set(dGamma)
  ;(backend.typedArrayFromHeap(dBetaInfo) as Float32Array).set(dBeta)
  backend.disposeData(scratch.dataId)
  return [dx, dGammaInfo, dBetaInfo]
}
