// Per-channel reductions and affine maps over one NHWC image ([positions, channels], channels a
// multiple of 4) in WebAssembly SIMD: what GroupNorm's forward and backward passes are made of
// (trainer/kernels/groupnorm.ts). Reductions run channel-vector by channel-vector with the accumulators
// in registers; affine maps stream the image once with the per-channel coefficients in L1.
import { buildModule, FunctionBuilder, I32, OP, V128, wasmApi } from './emit.ts'
import type { Local } from './emit.ts'

export interface ChannelKernels {
  /** out[c] = sum over p of x[p, c]. */
  sums(x: number, positions: number, channels: number, out: number): void
  /** out[c] = sum over p of (x[p, c] - mean[c])^2. */
  centeredSquares(x: number, positions: number, channels: number, mean: number, out: number): void
  /** sumDy[c] = sum of dy[p, c]; sumDyXhat[c] = sum of dy[p, c] (x[p, c] - mean[c]) rstd[c]. */
  gradientSums(
    x: number,
    dy: number,
    positions: number,
    channels: number,
    mean: number,
    rstd: number,
    sumDy: number,
    sumDyXhat: number,
  ): void
  /** y[p, c] = x[p, c] scale[c] + shift[c]. */
  affine(x: number, positions: number, channels: number, scale: number, shift: number, y: number): void
  /** out[p, c] = dy[p, c] a[c] + x[p, c] b[c] + k[c]. */
  affine2(
    dy: number,
    x: number,
    positions: number,
    channels: number,
    a: number,
    b: number,
    k: number,
    out: number,
  ): void
}

const instances = new WeakMap<object, ChannelKernels>()

export function channelKernels(memory: object): ChannelKernels {
  const existing = instances.get(memory)
  if (existing !== undefined) return existing
  const module = new wasmApi.Module(
    buildModule([
      { name: 'sums', builder: buildReduction('sums') },
      { name: 'centeredSquares', builder: buildReduction('centeredSquares') },
      { name: 'gradientSums', builder: buildGradientSums() },
      { name: 'affine', builder: buildAffine(false) },
      { name: 'affine2', builder: buildAffine(true) },
    ]),
  )
  const exports = new wasmApi.Instance(module, { env: { memory } }).exports as unknown as ChannelKernels
  instances.set(memory, exports)
  return exports
}

/** for (cv = 0; cv < channels; cv += 4): body(byte offset of this channel vector in a row). */
function channelVectors(f: FunctionBuilder, channels: Local, body: (offset: Local) => void): void {
  const offset = f.local(I32)
  const c = f.local(I32)
  f.forLoop(c, 4, channels, () => {
    f.get(c).i32(4).mul().set(offset)
    body(offset)
  })
}

function buildReduction(kind: 'sums' | 'centeredSquares'): FunctionBuilder {
  const centered = kind === 'centeredSquares'
  const f = new FunctionBuilder(centered ? [I32, I32, I32, I32, I32] : [I32, I32, I32, I32])
  const [x, positions, channels] = f.params as [Local, Local, Local]
  const mean = centered ? (f.params[3] as Local) : undefined
  const out = f.params[centered ? 4 : 3] as Local
  const rowBytes = f.local(I32)
  const p = f.local(I32)
  const px = f.local(I32)
  const acc = f.local(V128)
  const m = f.local(V128)
  const d = f.local(V128)
  f.get(channels).i32(4).mul().set(rowBytes)
  channelVectors(f, channels, (offset) => {
    f.zeroV128().set(acc)
    if (mean !== undefined) f.get(mean).get(offset).add().loadV128(0).set(m)
    f.get(x).get(offset).add().set(px)
    f.forLoop(p, 1, positions, () => {
      if (mean === undefined) f.get(px).loadV128(0).get(acc).op(OP.f32x4Add).set(acc)
      else {
        f.get(px).loadV128(0).get(m).op(OP.f32x4Sub).set(d)
        f.get(d).get(d).op(OP.f32x4Mul).get(acc).op(OP.f32x4Add).set(acc)
      }
      f.incrementBy(px, rowBytes)
    })
    f.get(out).get(offset).add().get(acc).storeV128(0)
  })
  return f
}

function buildGradientSums(): FunctionBuilder {
  const f = new FunctionBuilder([I32, I32, I32, I32, I32, I32, I32, I32])
  const [x, dy, positions, channels, mean, rstd, sumDy, sumDyXhat] = f.params as Local[] as [
    Local,
    Local,
    Local,
    Local,
    Local,
    Local,
    Local,
    Local,
  ]
  const rowBytes = f.local(I32)
  const p = f.local(I32)
  const px = f.local(I32)
  const pdy = f.local(I32)
  const accDy = f.local(V128)
  const accDyXhat = f.local(V128)
  const m = f.local(V128)
  const r = f.local(V128)
  const g = f.local(V128)
  f.get(channels).i32(4).mul().set(rowBytes)
  channelVectors(f, channels, (offset) => {
    f.zeroV128().set(accDy)
    f.zeroV128().set(accDyXhat)
    f.get(mean).get(offset).add().loadV128(0).set(m)
    f.get(rstd).get(offset).add().loadV128(0).set(r)
    f.get(x).get(offset).add().set(px)
    f.get(dy).get(offset).add().set(pdy)
    f.forLoop(p, 1, positions, () => {
      f.get(pdy).loadV128(0).set(g)
      f.get(g).get(accDy).op(OP.f32x4Add).set(accDy)
      f.get(px).loadV128(0).get(m).op(OP.f32x4Sub).get(r).op(OP.f32x4Mul)
      f.get(g).op(OP.f32x4Mul).get(accDyXhat).op(OP.f32x4Add).set(accDyXhat)
      f.incrementBy(px, rowBytes)
      f.incrementBy(pdy, rowBytes)
    })
    f.get(sumDy).get(offset).add().get(accDy).storeV128(0)
    f.get(sumDyXhat).get(offset).add().get(accDyXhat).storeV128(0)
  })
  return f
}

function buildAffine(twoInputs: boolean): FunctionBuilder {
  const f = new FunctionBuilder(
    twoInputs ? [I32, I32, I32, I32, I32, I32, I32, I32] : [I32, I32, I32, I32, I32, I32],
  )
  let dy: Local | undefined
  let x: Local
  let positions: Local
  let channels: Local
  let a: Local | undefined
  let b: Local
  let k: Local
  let out: Local
  if (twoInputs)
    [dy, x, positions, channels, a, b, k, out] = f.params as Local[] as Local[] as [
      Local,
      Local,
      Local,
      Local,
      Local,
      Local,
      Local,
      Local,
    ]
  else [x, positions, channels, b, k, out] = f.params as Local[] as [Local, Local, Local, Local, Local, Local]
  const p = f.local(I32)
  const c = f.local(I32)
  const offset = f.local(I32)
  f.forLoop(p, 1, positions, () => {
    f.forLoop(c, 4, channels, () => {
      f.get(c).i32(4).mul().set(offset)
      f.get(out)
      f.get(x).loadV128(0).get(b).get(offset).add().loadV128(0).op(OP.f32x4Mul)
      f.get(k).get(offset).add().loadV128(0).op(OP.f32x4Add)
      if (dy !== undefined && a !== undefined) {
        f.get(dy).loadV128(0).get(a).get(offset).add().loadV128(0).op(OP.f32x4Mul).op(OP.f32x4Add)
        f.increment(dy, 16)
      }
      f.storeV128(0)
      f.increment(x, 16)
      f.increment(out, 16)
    })
  })
  return f
}
