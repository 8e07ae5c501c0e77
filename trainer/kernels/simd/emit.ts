// A minimal WebAssembly binary emitter: just what the SIMD kernels in this folder need (i32 arithmetic,
// loops, f32/v128 loads and stores, f32x4 arithmetic including relaxed-SIMD fused multiply-add), so the
// kernels are generated from TypeScript at run time, specialised to each convolution's shape, and need
// no toolchain or binary in the repository. Opcodes: https://webassembly.github.io/spec/core/binary/
// and the relaxed-SIMD proposal (f32x4.relaxed_madd = 0xfd 0x105).

/** The parts of the WebAssembly JS API used here (the project's TypeScript lib has no DOM types). */
export interface WasmApi {
  validate(bytes: Uint8Array): boolean
  Module: new (bytes: Uint8Array) => object
  Instance: new (module: object, imports: object) => { exports: Record<string, unknown> }
  Memory: new (descriptor: { initial: number }) => { buffer: ArrayBuffer }
}

export const wasmApi = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly

export const I32 = 0x7f
export const F32 = 0x7d
export const V128 = 0x7b

/** f32x4 (0xfd-prefixed) and scalar f32 opcodes used by the element-wise kernels. */
export const OP = {
  f32x4Splat: [0xfd, 0x13],
  f32x4Add: [0xfd, 0xe4, 0x01],
  f32x4Sub: [0xfd, 0xe5, 0x01],
  f32x4Mul: [0xfd, 0xe6, 0x01],
  f32x4Div: [0xfd, 0xe7, 0x01],
  f32x4Sqrt: [0xfd, 0xe3, 0x01],
  f32Add: [0x92],
  f32Sub: [0x93],
  f32Mul: [0x94],
  f32Div: [0x95],
  f32Sqrt: [0x91],
} as const

function uleb(value: number): number[] {
  const out: number[] = []
  let v = value >>> 0
  do {
    let byte = v & 0x7f
    v >>>= 7
    if (v !== 0) byte |= 0x80
    out.push(byte)
  } while (v !== 0)
  return out
}

function sleb(value: number): number[] {
  const out: number[] = []
  let v = value | 0
  for (;;) {
    const byte = v & 0x7f
    v >>= 7
    if ((v === 0 && (byte & 0x40) === 0) || (v === -1 && (byte & 0x40) !== 0)) {
      out.push(byte)
      return out
    }
    out.push(byte | 0x80)
  }
}

function name(text: string): number[] {
  const bytes = [...new TextEncoder().encode(text)]
  return [...uleb(bytes.length), ...bytes]
}

function section(id: number, content: number[]): number[] {
  return [id, ...uleb(content.length), ...content]
}

/** A local variable of a function being built. */
export interface Local {
  readonly index: number
  readonly type: number
}

/** Builds one function body; methods append instructions and return `this` where chaining reads well. */
export class FunctionBuilder {
  readonly params: Local[]
  private readonly locals: Local[] = []
  private readonly code: number[] = []

  constructor(paramTypes: number[]) {
    this.params = paramTypes.map((type, index) => ({ index, type }))
  }

  local(type: number): Local {
    const local = { index: this.params.length + this.locals.length, type }
    this.locals.push(local)
    return local
  }

  get(local: Local): this {
    this.code.push(0x20, ...uleb(local.index))
    return this
  }

  set(local: Local): this {
    this.code.push(0x21, ...uleb(local.index))
    return this
  }

  tee(local: Local): this {
    this.code.push(0x22, ...uleb(local.index))
    return this
  }

  i32(value: number): this {
    this.code.push(0x41, ...sleb(value))
    return this
  }

  add(): this {
    this.code.push(0x6a)
    return this
  }

  sub(): this {
    this.code.push(0x6b)
    return this
  }

  mul(): this {
    this.code.push(0x6c)
    return this
  }

  /** i32.lt_u */
  lessThan(): this {
    this.code.push(0x49)
    return this
  }

  /** Appends raw opcode bytes (see OP). */
  op(bytes: readonly number[]): this {
    this.code.push(...bytes)
    return this
  }

  /** local += value (i32). */
  increment(local: Local, value: number): this {
    return this.get(local).i32(value).add().set(local)
  }

  /** local += other (i32). */
  incrementBy(local: Local, other: Local): this {
    return this.get(local).get(other).add().set(local)
  }

  /** `do { body } while (counter += step, counter < limit)`: the body runs at least once. */
  doWhile(counter: Local, step: number, limit: Local | number, body: () => void): this {
    this.code.push(0x03, 0x40) // loop (empty block type)
    body()
    this.get(counter).i32(step).add().tee(counter)
    if (typeof limit === 'number') this.i32(limit)
    else this.get(limit)
    this.lessThan()
    this.code.push(0x0d, 0x00) // br_if 0 (back to the loop start)
    this.code.push(0x0b) // end
    return this
  }

  /** `do { body() } while (condition())`: `condition` leaves an i32 on the stack. */
  loopWhile(body: () => void, condition: () => void): this {
    this.code.push(0x03, 0x40)
    body()
    condition()
    this.code.push(0x0d, 0x00, 0x0b)
    return this
  }

  /** i32 `select`: stack a, b, condition -> condition ? a : b. */
  select(): this {
    this.code.push(0x1b)
    return this
  }

  /** `for (counter = 0; counter < limit; counter += step) body()`, skipped when limit is 0. */
  forLoop(counter: Local, step: number, limit: Local | number, body: () => void): this {
    this.i32(0).set(counter)
    this.code.push(0x02, 0x40) // block
    if (typeof limit === 'number') this.i32(limit)
    else this.get(limit)
    this.code.push(0x45, 0x0d, 0x00) // i32.eqz; br_if 0 (to the block end): nothing to do
    this.doWhile(counter, step, limit, body)
    this.code.push(0x0b)
    return this
  }

  /** v128.load32_splat: one f32 from [address + offset] in all four lanes. */
  loadSplat(offset: number): this {
    this.code.push(0xfd, 0x09, 0x02, ...uleb(offset))
    return this
  }

  loadV128(offset: number): this {
    this.code.push(0xfd, 0x00, 0x04, ...uleb(offset))
    return this
  }

  /** Stack: address, value. */
  storeV128(offset: number): this {
    this.code.push(0xfd, 0x0b, 0x04, ...uleb(offset))
    return this
  }

  loadF32(offset: number): this {
    this.code.push(0x2a, 0x02, ...uleb(offset))
    return this
  }

  /** Stack: address, value. */
  storeF32(offset: number): this {
    this.code.push(0x38, 0x02, ...uleb(offset))
    return this
  }

  zeroV128(): this {
    this.code.push(0xfd, 0x0c, ...new Array<number>(16).fill(0))
    return this
  }

  f32x4Add(): this {
    this.code.push(0xfd, ...uleb(0xe4))
    return this
  }

  /** Stack: a, b, c -> a * b + c, fused on hardware with FMA (relaxed SIMD). */
  f32x4MulAdd(): this {
    this.code.push(0xfd, ...uleb(0x105))
    return this
  }

  /** f32x4.extract_lane */
  extractLane(lane: number): this {
    this.code.push(0xfd, 0x1f, lane)
    return this
  }

  bytes(): number[] {
    const groups: number[] = []
    let count = 0
    for (let i = 0; i < this.locals.length;) {
      const type = (this.locals[i] as Local).type
      let run = 0
      while (i < this.locals.length && (this.locals[i] as Local).type === type) {
        run++
        i++
      }
      groups.push(...uleb(run), type)
      count++
    }
    const body = [...uleb(count), ...groups, ...this.code, 0x0b]
    return [...uleb(body.length), ...body]
  }
}

/** A module of exported functions over an imported memory (`env.memory`: the tfjs wasm heap). */
export function buildModule(functions: { name: string; builder: FunctionBuilder }[]): Uint8Array {
  const types = functions.flatMap(({ builder }) => [
    0x60,
    ...uleb(builder.params.length),
    ...builder.params.map((p) => p.type),
    0,
  ])
  const bytes = [
    ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00],
    ...section(1, [...uleb(functions.length), ...types]),
    // Import env.memory, limits {min: 1}, no maximum.
    ...section(2, [1, ...name('env'), ...name('memory'), 0x02, 0x00, 0x01]),
    ...section(3, [...uleb(functions.length), ...functions.flatMap((_, i) => uleb(i))]),
    ...section(7, [
      ...uleb(functions.length),
      ...functions.flatMap((f, i) => [...name(f.name), 0x00, ...uleb(i)]),
    ]),
    ...section(10, [...uleb(functions.length), ...functions.flatMap((f) => f.builder.bytes())]),
  ]
  return new Uint8Array(bytes)
}

let relaxedSimd: boolean | undefined

/** Whether this engine validates relaxed-SIMD f32x4.relaxed_madd (V8 >= 11.4, Node >= 22). */
export function hasRelaxedSimd(): boolean {
  if (relaxedSimd === undefined) {
    const f = new FunctionBuilder([V128, V128, V128])
    const [a, b, c] = f.params as [Local, Local, Local]
    f.get(a).get(b).get(c).f32x4MulAdd()
    const probe = buildModule([{ name: 'f', builder: f }])
    // The probe returns nothing but leaves a v128 on the stack: patch the type to return one.
    relaxedSimd = wasmApi.validate(withResult(probe))
  }
  return relaxedSimd as boolean
}

/** The probe's single type entry `(v128 v128 v128) -> ()` rewritten to return a v128. */
function withResult(module: Uint8Array): Uint8Array {
  const bytes = [...module]
  // Type section starts at byte 8: id 1, size, count 1, 0x60, 3 params, 0 results -> 1 result v128.
  const resultsAt = 8 + 2 + 1 + 1 + 1 + 3
  bytes.splice(resultsAt, 1, 1, V128)
  bytes[9] = (bytes[9] as number) + 1
  return new Uint8Array(bytes)
}
