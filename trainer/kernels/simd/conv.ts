// Convolution micro-kernels in WebAssembly SIMD with relaxed fused multiply-add, generated per shape.
//
// tfjs's wasm binary runs XNNPACK built without relaxed SIMD, so every multiply-add is two instructions;
// with f32x4.relaxed_madd V8 emits one FMA on x86 with FMA3 and on ARM. The kernels are specialised to
// a convolution's channel counts, taps and strides (all addressing becomes constant offsets) and compiled
// once per shape; they read and write the tfjs wasm heap directly through its imported memory.
//
// Forward kernel (also the input gradient, see ./conv-drivers.ts): direct convolution over an input that
// is already padded, NHWC. A tile is MR consecutive output pixels of one row x NR output channels held in
// MR*NR/4 vector accumulators; for each input channel and tap it loads NR filter values (two vectors) and
// broadcasts MR input values.
//
//   out[n, oh, ow+r, cb*NR+j] = sum over ci, tap of x[n, oh*s + kh, (ow+r)*s + kw, ci] * w[cb][ci][tap][j]
//
// Filter-gradient kernel: dw[tap][ci][co] = sum over n, oh, ow of x[n, oh*s+kh, ow*s+kw, ci] * dy[n,oh,ow,co],
// tiled 4 input channels x NR output channels per tap, over chunks of output rows small enough that the
// chunk's x and dy stay in the L1 cache while every tile of the chunk reads them.
import { buildModule, FunctionBuilder, I32, V128, wasmApi } from './emit.ts'
import type { Local } from './emit.ts'

/** Compile-time shape of a forward kernel. Offsets and strides are in float32 elements. */
export interface ForwardShape {
  /** Output pixels per tile (1-4). */
  mr: number
  /** Output channels per tile: 4 or 8. */
  nr: number
  /** Input channels (the padded input's innermost dimension). */
  inChannels: number
  /** Offset of each tap from the tile's first input pixel. */
  taps: number[]
  /** Input elements between consecutive output pixels of a row (stride x inChannels). */
  inPixel: number
  /** Output elements between consecutive output pixels of a row. */
  outPixel: number
  /** Accumulators start from a per-output-channel bias (padded to the tile width) instead of zero. */
  bias: boolean
}

/**
 * Runtime arguments of a forward kernel: heap byte addresses and loop counts. `tiles` tiles of `mr` pixels
 * per row are computed, from `x`/`out` onwards; `outBlocks` blocks of `nr` channels each.
 */
export type ForwardKernel = (
  x: number,
  w: number,
  out: number,
  images: number,
  rows: number,
  tiles: number,
  outBlocks: number,
  xImageBytes: number,
  xRowBytes: number,
  outImageBytes: number,
  outRowBytes: number,
  /** Heap address of the bias (ignored unless the shape has `bias`). */
  bias: number,
) => void

/** Compile-time shape of a filter-gradient kernel (offsets in float32 elements). */
export interface FilterGradShape {
  /** Output channels per tile: 4 or 8; the output-channel count is a multiple of it. */
  nr: number
  /** Input channels of the padded x (a multiple of 4). */
  inChannels: number
  outChannels: number
  taps: number[]
  /** x elements between consecutive output pixels (stride x inChannels). */
  inPixel: number
  /** Output pixels per row. */
  cols: number
}

export type FilterGradKernel = (
  x: number,
  dy: number,
  dw: number,
  images: number,
  rows: number,
  chunkRows: number,
  xImageBytes: number,
  xRowBytes: number,
) => void

type Memory = object
const compiled = new Map<string, unknown>()

function instantiate<T>(key: string, memory: Memory, build: () => FunctionBuilder): T {
  const cacheKey = key
  const existing = compiled.get(cacheKey)
  if (existing !== undefined) return existing as T
  const module = new wasmApi.Module(buildModule([{ name: 'kernel', builder: build() }]))
  const instance = new wasmApi.Instance(module, { env: { memory } })
  const kernel = instance.exports.kernel as T
  compiled.set(cacheKey, kernel)
  return kernel
}

/** Forgets compiled kernels bound to an old memory (a new tfjs wasm backend instance). */
export function clearCompiledKernels(): void {
  compiled.clear()
}

export function forwardKernel(memory: Memory, memoryId: number, shape: ForwardShape): ForwardKernel {
  const key = `fwd:${memoryId}:${JSON.stringify(shape)}`
  return instantiate<ForwardKernel>(key, memory, () => buildForward(shape))
}

export function filterGradKernel(memory: Memory, memoryId: number, shape: FilterGradShape): FilterGradKernel {
  const key = `dw:${memoryId}:${JSON.stringify(shape)}`
  return instantiate<FilterGradKernel>(key, memory, () => buildFilterGrad(shape))
}

function buildForward({ mr, nr, inChannels, taps, inPixel, outPixel, bias }: ForwardShape): FunctionBuilder {
  const f = new FunctionBuilder(new Array<number>(12).fill(I32))
  const [
    x,
    w,
    out,
    images,
    rows,
    tiles,
    outBlocks,
    xImageBytes,
    xRowBytes,
    outImageBytes,
    outRowBytes,
    biasAt,
  ] = f.params as Local[] as [
    Local,
    Local,
    Local,
    Local,
    Local,
    Local,
    Local,
    Local,
    Local,
    Local,
    Local,
    Local,
  ]
  const pb = f.local(I32)
  const n = f.local(I32)
  const oh = f.local(I32)
  const t = f.local(I32)
  const cb = f.local(I32)
  const ci = f.local(I32)
  const rowIn = f.local(I32)
  const rowOut = f.local(I32)
  const pixIn = f.local(I32)
  const pixOut = f.local(I32)
  const pw = f.local(I32)
  const xa = f.local(I32)
  const blockOut = f.local(I32)
  const vectors = nr / 4
  const acc: Local[] = Array.from({ length: mr * vectors }, () => f.local(V128))
  const b: Local[] = Array.from({ length: vectors }, () => f.local(V128))
  const a = f.local(V128)
  f.forLoop(n, 1, images, () => {
    f.get(n).get(xImageBytes).mul().get(x).add().set(rowIn)
    f.get(n).get(outImageBytes).mul().get(out).add().set(rowOut)
    f.forLoop(oh, 1, rows, () => {
      f.get(rowIn).set(pixIn)
      f.get(rowOut).set(pixOut)
      f.forLoop(t, 1, tiles, () => {
        f.get(w).set(pw)
        f.get(pixOut).set(blockOut)
        f.get(biasAt).set(pb)
        f.forLoop(cb, 1, outBlocks, () => {
          if (bias)
            acc.forEach((r, i) =>
              f
                .get(pb)
                .loadV128((i % vectors) * 16)
                .set(r),
            )
          else for (const r of acc) f.zeroV128().set(r)
          f.get(pixIn).set(xa)
          f.forLoop(ci, 1, inChannels, () => {
            taps.forEach((tap, k) => {
              for (let h = 0; h < vectors; h++)
                f.get(pw)
                  .loadV128((k * nr + h * 4) * 4)
                  .set(b[h] as Local)
              for (let r = 0; r < mr; r++) {
                f.get(xa)
                  .loadSplat((tap + r * inPixel) * 4)
                  .set(a)
                for (let h = 0; h < vectors; h++) {
                  const target = acc[r * vectors + h] as Local
                  f.get(a)
                    .get(b[h] as Local)
                    .get(target)
                    .f32x4MulAdd()
                    .set(target)
                }
              }
            })
            f.increment(pw, taps.length * nr * 4)
            f.increment(xa, 4)
          })
          for (let r = 0; r < mr; r++)
            for (let h = 0; h < vectors; h++)
              f.get(blockOut)
                .get(acc[r * vectors + h] as Local)
                .storeV128((r * outPixel + h * 4) * 4)
          // pw has advanced by one panel (inChannels x taps x nr) over the ci loop: the next block's.
          f.increment(blockOut, nr * 4)
          f.increment(pb, nr * 4)
        })
        f.increment(pixIn, mr * inPixel * 4)
        f.increment(pixOut, mr * outPixel * 4)
      })
      f.incrementBy(rowIn, xRowBytes)
      f.incrementBy(rowOut, outRowBytes)
    })
  })
  return f
}

function buildFilterGrad({
  nr,
  inChannels,
  outChannels,
  taps,
  inPixel,
  cols,
}: FilterGradShape): FunctionBuilder {
  const f = new FunctionBuilder(new Array<number>(8).fill(I32))
  const [x, dy, dw, images, rows, chunkRows, xImageBytes, xRowBytes] = f.params as Local[] as [
    Local,
    Local,
    Local,
    Local,
    Local,
    Local,
    Local,
    Local,
  ]
  const n = f.local(I32)
  const oh0 = f.local(I32)
  const rowsHere = f.local(I32)
  const rr = f.local(I32)
  const ow = f.local(I32)
  const ciBlock = f.local(I32)
  const coBlock = f.local(I32)
  const chunkX = f.local(I32)
  const chunkDy = f.local(I32)
  const px = f.local(I32)
  const pdy = f.local(I32)
  const rowX = f.local(I32)
  const pdw = f.local(I32)
  const vectors = nr / 4
  const acc: Local[] = Array.from({ length: 4 * vectors }, () => f.local(V128))
  const b: Local[] = Array.from({ length: vectors }, () => f.local(V128))
  const a = f.local(V128)
  const dyRowBytes = cols * outChannels * 4
  f.forLoop(n, 1, images, () => {
    f.i32(0).set(oh0)
    // Chunks of output rows oh0 .. oh0 + rowsHere; rows >= 1, so the first chunk always exists.
    f.loopWhile(
      () => {
        // rowsHere = min(chunkRows, rows - oh0)
        f.get(rows).get(oh0).sub().set(rowsHere)
        f.get(rowsHere).get(chunkRows).get(rowsHere).get(chunkRows).lessThan().select().set(rowsHere)
        f.get(n).get(xImageBytes).mul().get(x).add().get(oh0).get(xRowBytes).mul().add().set(chunkX)
        f.get(n).get(rows).mul().get(oh0).add().i32(dyRowBytes).mul().get(dy).add().set(chunkDy)
        taps.forEach((tap, k) => {
          f.forLoop(ciBlock, 1, inChannels / 4, () => {
            f.forLoop(coBlock, 1, outChannels / nr, () => {
              // pdw = dw + ((k*Ci + ciBlock*4)*Co + coBlock*nr)*4
              f.get(ciBlock)
                .i32(4 * outChannels * 4)
                .mul()
              f.get(coBlock)
                .i32(nr * 4)
                .mul()
                .add()
              f.i32(k * inChannels * outChannels * 4)
                .add()
                .get(dw)
                .add()
                .set(pdw)
              for (let r = 0; r < 4; r++)
                for (let h = 0; h < vectors; h++)
                  f.get(pdw)
                    .loadV128((r * outChannels + h * 4) * 4)
                    .set(acc[r * vectors + h] as Local)
              f.get(chunkX)
                .i32(tap * 4)
                .add()
                .get(ciBlock)
                .i32(16)
                .mul()
                .add()
                .set(rowX)
              f.get(chunkDy)
                .get(coBlock)
                .i32(nr * 4)
                .mul()
                .add()
                .set(pdy)
              f.forLoop(rr, 1, rowsHere, () => {
                f.get(rowX).set(px)
                f.forLoop(ow, 1, cols, () => {
                  for (let h = 0; h < vectors; h++)
                    f.get(pdy)
                      .loadV128(h * 16)
                      .set(b[h] as Local)
                  for (let r = 0; r < 4; r++) {
                    f.get(px)
                      .loadSplat(r * 4)
                      .set(a)
                    for (let h = 0; h < vectors; h++) {
                      const target = acc[r * vectors + h] as Local
                      f.get(a)
                        .get(b[h] as Local)
                        .get(target)
                        .f32x4MulAdd()
                        .set(target)
                    }
                  }
                  f.increment(px, inPixel * 4)
                  f.increment(pdy, outChannels * 4)
                })
                f.incrementBy(rowX, xRowBytes)
              })
              for (let r = 0; r < 4; r++)
                for (let h = 0; h < vectors; h++)
                  f.get(pdw)
                    .get(acc[r * vectors + h] as Local)
                    .storeV128((r * outChannels + h * 4) * 4)
            })
          })
        })
        f.get(oh0).get(rowsHere).add().set(oh0)
      },
      () => f.get(oh0).get(rows).lessThan(),
    )
  })
  return f
}
