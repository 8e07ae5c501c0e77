// Element-wise optimizer kernels in WebAssembly SIMD over the tfjs wasm heap: Adam, the weight EMA and
// the sum of squares for global-norm clipping. As JS loops they cost ~50 ms per emoji32 U-Net step
// (585k parameters, float64 arithmetic); here they are memory-bound f32x4 loops. Arithmetic is float32,
// the same formula in the vector body and the scalar tail, so results do not depend on alignment.
import { buildModule, F32, FunctionBuilder, I32, OP, V128, wasmApi } from './emit.ts'
import type { Local } from './emit.ts'

export interface OptimizerKernels {
  /** Adam over `count` elements: reads param/grad/m/v, writes the three outputs (heap byte addresses). */
  adam(
    param: number,
    grad: number,
    m: number,
    v: number,
    paramOut: number,
    mOut: number,
    vOut: number,
    count: number,
    gradientScale: number,
    beta1: number,
    beta2: number,
    stepSize: number,
    secondCorrection: number,
    epsilon: number,
  ): void
  /** out = decay * shadow + (1 - decay) * param. */
  ema(shadow: number, param: number, out: number, count: number, decay: number): void
  /** Writes the four lane-wise partial sums of squares of `count` elements to `out` (16 bytes). */
  sumSquares(x: number, count: number, out: number): void
}

const instances = new WeakMap<object, OptimizerKernels>()

/** The kernels bound to a tfjs wasm heap (compiled once per memory). */
export function optimizerKernels(memory: object): OptimizerKernels {
  const existing = instances.get(memory)
  if (existing !== undefined) return existing
  const module = new wasmApi.Module(
    buildModule([
      { name: 'adam', builder: buildAdam() },
      { name: 'ema', builder: buildEma() },
      { name: 'sumSquares', builder: buildSumSquares() },
    ]),
  )
  const exports = new wasmApi.Instance(module, { env: { memory } }).exports as unknown as OptimizerKernels
  instances.set(memory, exports)
  return exports
}

/**
 * Loops i over [0, count): `vector(offset)` for each full group of 4 (byte offset from the pointers'
 * start), then `scalar(offset)` for the rest. Pointers are advanced by the caller-supplied list.
 */
function elementLoop(
  f: FunctionBuilder,
  count: Local,
  pointers: Local[],
  vector: () => void,
  scalar: () => void,
): void {
  const i = f.local(I32)
  const vectorEnd = f.local(I32)
  f.get(count).i32(-4).op([0x71]).set(vectorEnd) // i32.and: count rounded down to a multiple of 4
  f.forLoop(i, 4, vectorEnd, () => {
    vector()
    for (const p of pointers) f.increment(p, 16)
  })
  f.get(vectorEnd).set(i)
  f.op([0x02, 0x40]) // block
  f.get(i).get(count).op([0x4f, 0x0d, 0x00]) // i32.ge_u; br_if 0: no tail
  f.doWhile(i, 1, count, () => {
    scalar()
    for (const p of pointers) f.increment(p, 4)
  })
  f.op([0x0b])
}

function buildAdam(): FunctionBuilder {
  const f = new FunctionBuilder([I32, I32, I32, I32, I32, I32, I32, I32, F32, F32, F32, F32, F32, F32])
  const [param, grad, m, v, paramOut, mOut, vOut, count, scale, beta1, beta2, stepSize, second, epsilon] =
    f.params as Local[] as Local[] as [
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
      Local,
      Local,
    ]
  const oneMinusBeta1 = f.local(F32)
  const oneMinusBeta2 = f.local(F32)
  f.op([0x43, 0, 0, 0x80, 0x3f]).get(beta1).op(OP.f32Sub).set(oneMinusBeta1) // f32.const 1.0
  f.op([0x43, 0, 0, 0x80, 0x3f]).get(beta2).op(OP.f32Sub).set(oneMinusBeta2)
  const vectorOf = (scalar: Local) => {
    const local = f.local(V128)
    f.get(scalar).op(OP.f32x4Splat).set(local)
    return local
  }
  const [vs, vb1, vb2, v1b1, v1b2, vstep, vsecond, veps] = [
    scale,
    beta1,
    beta2,
    oneMinusBeta1,
    oneMinusBeta2,
    stepSize,
    second,
    epsilon,
  ].map(vectorOf) as [Local, Local, Local, Local, Local, Local, Local, Local]
  const g = f.local(V128)
  const mv = f.local(V128)
  const vv = f.local(V128)
  const gs = f.local(F32)
  const ms = f.local(F32)
  const vsc = f.local(F32)
  elementLoop(
    f,
    count,
    [param, grad, m, v, paramOut, mOut, vOut],
    () => {
      f.get(grad).loadV128(0).get(vs).op(OP.f32x4Mul).set(g)
      f.get(m).loadV128(0).get(vb1).op(OP.f32x4Mul).get(g).get(v1b1).op(OP.f32x4Mul).op(OP.f32x4Add).set(mv)
      f.get(v).loadV128(0).get(vb2).op(OP.f32x4Mul)
      f.get(g).get(g).op(OP.f32x4Mul).get(v1b2).op(OP.f32x4Mul).op(OP.f32x4Add).set(vv)
      f.get(mOut).get(mv).storeV128(0)
      f.get(vOut).get(vv).storeV128(0)
      f.get(paramOut)
      f.get(param).loadV128(0)
      f.get(mv).get(vstep).op(OP.f32x4Mul)
      f.get(vv).get(vsecond).op(OP.f32x4Mul).op(OP.f32x4Sqrt).get(veps).op(OP.f32x4Add)
      f.op(OP.f32x4Div).op(OP.f32x4Sub).storeV128(0)
    },
    () => {
      f.get(grad).loadF32(0).get(scale).op(OP.f32Mul).set(gs)
      f.get(m)
        .loadF32(0)
        .get(beta1)
        .op(OP.f32Mul)
        .get(gs)
        .get(oneMinusBeta1)
        .op(OP.f32Mul)
        .op(OP.f32Add)
        .set(ms)
      f.get(v).loadF32(0).get(beta2).op(OP.f32Mul)
      f.get(gs).get(gs).op(OP.f32Mul).get(oneMinusBeta2).op(OP.f32Mul).op(OP.f32Add).set(vsc)
      f.get(mOut).get(ms).storeF32(0)
      f.get(vOut).get(vsc).storeF32(0)
      f.get(paramOut)
      f.get(param).loadF32(0)
      f.get(ms).get(stepSize).op(OP.f32Mul)
      f.get(vsc).get(second).op(OP.f32Mul).op(OP.f32Sqrt).get(epsilon).op(OP.f32Add)
      f.op(OP.f32Div).op(OP.f32Sub).storeF32(0)
    },
  )
  return f
}

function buildEma(): FunctionBuilder {
  const f = new FunctionBuilder([I32, I32, I32, I32, F32])
  const [shadow, param, out, count, decay] = f.params as Local[] as [Local, Local, Local, Local, Local]
  const rest = f.local(F32)
  f.op([0x43, 0, 0, 0x80, 0x3f]).get(decay).op(OP.f32Sub).set(rest)
  const vd = f.local(V128)
  const vr = f.local(V128)
  f.get(decay).op(OP.f32x4Splat).set(vd)
  f.get(rest).op(OP.f32x4Splat).set(vr)
  elementLoop(
    f,
    count,
    [shadow, param, out],
    () => {
      f.get(out)
      f.get(shadow).loadV128(0).get(vd).op(OP.f32x4Mul)
      f.get(param).loadV128(0).get(vr).op(OP.f32x4Mul)
      f.op(OP.f32x4Add).storeV128(0)
    },
    () => {
      f.get(out)
      f.get(shadow).loadF32(0).get(decay).op(OP.f32Mul)
      f.get(param).loadF32(0).get(rest).op(OP.f32Mul)
      f.op(OP.f32Add).storeF32(0)
    },
  )
  return f
}

function buildSumSquares(): FunctionBuilder {
  const f = new FunctionBuilder([I32, I32, I32])
  const [x, count, out] = f.params as Local[] as [Local, Local, Local]
  const sum = f.local(V128)
  const tail = f.local(F32)
  const value = f.local(V128)
  const scalar = f.local(F32)
  f.zeroV128().set(sum)
  f.op([0x43, 0, 0, 0, 0]).set(tail)
  elementLoop(
    f,
    count,
    [x],
    () => {
      f.get(x).loadV128(0).tee(value).get(value).op(OP.f32x4Mul).get(sum).op(OP.f32x4Add).set(sum)
    },
    () => {
      f.get(x).loadF32(0).tee(scalar).get(scalar).op(OP.f32Mul).get(tail).op(OP.f32Add).set(tail)
    },
  )
  f.get(out).get(sum).storeV128(0)
  // The tail's sum goes into lane 0's slot after the vector sums: out[0] += tail.
  f.get(out).get(out).loadF32(0).get(tail).op(OP.f32Add).storeF32(0)
  return f
}
