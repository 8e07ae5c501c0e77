// Element-wise backward kernels in WebAssembly SIMD over the tfjs wasm heap.
import { buildModule, FunctionBuilder, I32, OP, V128, wasmApi } from './emit.ts'
import type { Local } from './emit.ts'

export interface ElementwiseKernels {
  /**
   * Zero-pads the rows of `images` images of `rows` rows of `rowBytes` bytes: the destination (rows of
   * `outRowBytes`, images of `outImageBytes`, `outBytes` in all) is zeroed, then every source row is
   * copied to `out + firstRowOffset + image * outImageBytes + row * outRowBytes`. Bulk-memory copies.
   */
  padRows(
    x: number,
    out: number,
    images: number,
    rows: number,
    rowBytes: number,
    outRowBytes: number,
    outImageBytes: number,
    outBytes: number,
    firstRowOffset: number,
  ): void
  /** out = dy * s * (1 + x * (1 - s)): the gradient of x * sigmoid(x), given s = sigmoid(x). `count` % 4 == 0. */
  siluGrad(dy: number, x: number, s: number, out: number, count: number): void
}

const instances = new WeakMap<object, ElementwiseKernels>()

export function elementwiseKernels(memory: object): ElementwiseKernels {
  const existing = instances.get(memory)
  if (existing !== undefined) return existing
  const module = new wasmApi.Module(
    buildModule([
      { name: 'siluGrad', builder: buildSiluGrad() },
      { name: 'padRows', builder: buildPadRows() },
    ]),
  )
  const exports = new wasmApi.Instance(module, { env: { memory } }).exports as unknown as ElementwiseKernels
  instances.set(memory, exports)
  return exports
}

function buildSiluGrad(): FunctionBuilder {
  const f = new FunctionBuilder([I32, I32, I32, I32, I32])
  const [dy, x, s, out, count] = f.params as Local[] as [Local, Local, Local, Local, Local]
  const i = f.local(I32)
  const one = f.local(V128)
  const sv = f.local(V128)
  f.op([0x43, 0, 0, 0x80, 0x3f]).op(OP.f32x4Splat).set(one)
  f.get(count).i32(16).mul().set(count) // vectors -> bytes
  f.forLoop(i, 16, count, () => {
    f.get(s).get(i).add().loadV128(0).set(sv)
    f.get(out).get(i).add()
    f.get(dy).get(i).add().loadV128(0).get(sv).op(OP.f32x4Mul)
    f.get(one)
    f.get(x).get(i).add().loadV128(0).get(one).get(sv).op(OP.f32x4Sub).op(OP.f32x4Mul)
    f.op(OP.f32x4Add).op(OP.f32x4Mul)
    f.storeV128(0)
  })
  return f
}

function buildPadRows(): FunctionBuilder {
  const f = new FunctionBuilder([I32, I32, I32, I32, I32, I32, I32, I32, I32])
  const [x, out, images, rows, rowBytes, outRowBytes, outImageBytes, outBytes, firstRowOffset] =
    f.params as Local[] as [Local, Local, Local, Local, Local, Local, Local, Local, Local]
  const n = f.local(I32)
  const r = f.local(I32)
  const target = f.local(I32)
  const source = f.local(I32)
  f.get(out).i32(0).get(outBytes).op([0xfc, 0x0b, 0x00]) // memory.fill(out, 0, outBytes)
  f.get(x).set(source)
  f.forLoop(n, 1, images, () => {
    f.get(n).get(outImageBytes).mul().get(out).add().get(firstRowOffset).add().set(target)
    f.forLoop(r, 1, rows, () => {
      f.get(target).get(source).get(rowBytes).op([0xfc, 0x0a, 0x00, 0x00]) // memory.copy
      f.incrementBy(source, rowBytes)
      f.incrementBy(target, outRowBytes)
    })
  })
  return f
}
