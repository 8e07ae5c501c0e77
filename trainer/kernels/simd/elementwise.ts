// Element-wise backward kernels in WebAssembly SIMD over the tfjs wasm heap.
import { buildModule, FunctionBuilder, I32, OP, V128, wasmApi } from './emit.ts'
import type { Local } from './emit.ts'

export interface ElementwiseKernels {
  /** out = dy * s * (1 + x * (1 - s)): the gradient of x * sigmoid(x), given s = sigmoid(x). `count` % 4 == 0. */
  siluGrad(dy: number, x: number, s: number, out: number, count: number): void
}

const instances = new WeakMap<object, ElementwiseKernels>()

export function elementwiseKernels(memory: object): ElementwiseKernels {
  const existing = instances.get(memory)
  if (existing !== undefined) return existing
  const module = new wasmApi.Module(buildModule([{ name: 'siluGrad', builder: buildSiluGrad() }]))
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
