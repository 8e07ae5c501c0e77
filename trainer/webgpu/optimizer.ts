// The fused optimizer kernels (CoopFusedAdam, CoopFusedEma, CoopFusedSquaredNorm; see
// trainer/kernels/optimizer.ts) for tfjs's `webgpu` backend.
//
// Through tfjs ops, Adam with clipping and the non-finite guard is ~20 dispatches per parameter tensor
// and the EMA 3: about half of all dispatches of a U-Net step, each with its bind group, uniform buffer
// and share of a queue submit. Here every parameter is copied into one flat buffer with
// copyBufferToBuffer (encoder commands, no dispatch), and each update is one dispatch over the flat
// arrays: norm (two reduction passes), Adam, EMA. The flat parameters, moments and shadows stay on the
// device between steps; they are copied in again only when a variable no longer holds the tensor this
// kernel produced last (setWeights, importState).
import * as tf from '@tensorflow/tfjs-core'
import type { KernelConfig, KernelFunc, NamedTensorInfoMap, TensorInfo } from '@tensorflow/tfjs-core'
import { clipScaleLimit, webGpuInternals } from './internals.ts'
import type { WebGpuInternals } from './internals.ts'

const WORKGROUP = 256
/** Partial sums of the first norm pass: enough threads to stream the gradients, few enough to add up fast. */
const NORM_PARTIALS = 16384
/** Partials each thread of the later norm passes adds. */
const CHUNK = 256
/** Grid-stride loops: dispatches stay within WebGPU's 65535 workgroups per dimension for any model size. */
const MAX_WORKGROUPS = 4096

const FINITE = `fn finite(x: f32) -> bool { return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u; }`

const ADAM_WGSL = `
struct Hyper { count: u32, beta1: f32, beta2: f32, stepSize: f32, secondCorrection: f32, epsilon: f32, clipNorm: f32, unused: f32 }
@group(0) @binding(0) var<storage, read_write> param: array<f32>;
@group(0) @binding(1) var<storage, read> grad: array<f32>;
@group(0) @binding(2) var<storage, read_write> m: array<f32>;
@group(0) @binding(3) var<storage, read_write> v: array<f32>;
@group(0) @binding(4) var<storage, read> squaredNorm: array<f32>;
@group(0) @binding(5) var<storage, read> loss: array<f32>;
@group(0) @binding(6) var<uniform> hyper: Hyper;
${FINITE}
@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let sq = squaredNorm[0];
  // A non-finite norm or loss skips the step: nothing is written (the host raises when it reads the loss).
  if (!finite(sq) || !finite(loss[0])) { return; }
  let norm = sqrt(sq);
  var scale = 1.0;
  if (norm > hyper.clipNorm) { scale = hyper.clipNorm / norm; }
  let stride = groups.x * ${WORKGROUP}u;
  for (var i = id.x; i < hyper.count; i += stride) {
    let g = grad[i] * scale;
    let mi = hyper.beta1 * m[i] + (1.0 - hyper.beta1) * g;
    let vi = hyper.beta2 * v[i] + (1.0 - hyper.beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    param[i] = param[i] - hyper.stepSize * mi / (sqrt(vi * hyper.secondCorrection) + hyper.epsilon);
  }
}`

const EMA_WGSL = `
struct Hyper { count: u32, decay: f32, unused0: f32, unused1: f32 }
@group(0) @binding(0) var<storage, read_write> shadow: array<f32>;
@group(0) @binding(1) var<storage, read> param: array<f32>;
@group(0) @binding(2) var<uniform> hyper: Hyper;
@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let stride = groups.x * ${WORKGROUP}u;
  for (var i = id.x; i < hyper.count; i += stride) {
    shadow[i] = hyper.decay * shadow[i] + (1.0 - hyper.decay) * param[i];
  }
}`

/**
 * Sum of squares without workgroup barriers (they are ~40x slower than plain loops on SwiftShader, the
 * CPU driver the tests run on, and buy little here): pass 1, `threads` strided partial sums of squares;
 * then chunks of 256 partials are added until one value is left.
 */
const SQUARES_WGSL = `
struct Info { count: u32, threads: u32, unused0: u32, unused1: u32 }
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> info: Info;
@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
  let t = id.x;
  if (t >= info.threads) { return; }
  var sum = 0.0;
  for (var i = t; i < info.count; i += info.threads) {
    let value = x[i];
    sum += value * value;
  }
  out[t] = sum;
}`

const CHUNK_SUMS_WGSL = `
struct Info { count: u32, chunks: u32, unused0: u32, unused1: u32 }
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> info: Info;
@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
  let t = id.x;
  if (t >= info.chunks) { return; }
  var sum = 0.0;
  for (var i = t * ${CHUNK}u; i < min((t + 1u) * ${CHUNK}u, info.count); i++) { sum += x[i]; }
  out[t] = sum;
}`

interface Pipelines {
  adam: GPUComputePipeline
  ema: GPUComputePipeline
  squares: GPUComputePipeline
  chunkSums: GPUComputePipeline
}

const pipelineCache = new WeakMap<GPUDevice, Pipelines>()

function pipelines(device: GPUDevice): Pipelines {
  let cached = pipelineCache.get(device)
  if (cached === undefined) {
    const make = (code: string, label: string) =>
      device.createComputePipeline({
        label,
        layout: 'auto',
        compute: { module: device.createShaderModule({ code, label }), entryPoint: 'main' },
      })
    cached = {
      adam: make(ADAM_WGSL, 'CoopFusedAdam'),
      ema: make(EMA_WGSL, 'CoopFusedEma'),
      squares: make(SQUARES_WGSL, 'CoopFusedSquaredNorm'),
      chunkSums: make(CHUNK_SUMS_WGSL, 'CoopChunkSums'),
    }
    pipelineCache.set(device, cached)
  }
  return cached
}

/** Flat device copies for one list of tensor sizes (one model), kept between steps. */
interface FlatState {
  sizes: number[]
  offsets: number[]
  total: number
  buffers: Map<string, GPUBuffer>
  /** Per slot name, the dataIds whose values the flat buffer currently holds. */
  holds: Map<string, object[]>
  uniform: GPUBuffer
  /** Norm passes: (uniform, input elements, output elements) after the first. */
  normPasses: { uniform: GPUBuffer; outputs: number }[]
  squaresUniform: GPUBuffer
  partials: number
}

const states = new Map<string, FlatState>()

function stateFor(backend: WebGpuInternals, infos: TensorInfo[]): FlatState {
  const sizes = infos.map((info) => tf.util.sizeFromShape(info.shape))
  const key = sizes.join(',')
  const existing = states.get(key)
  if (existing !== undefined) return existing
  const offsets: number[] = []
  let total = 0
  for (const size of sizes) {
    offsets.push(total)
    total += size
  }
  const device = backend.device
  const partials = Math.max(1, Math.min(NORM_PARTIALS, Math.ceil(total / 8)))
  const uniform = (values: number[]) => {
    const buffer = device.createBuffer({ size: 16, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST })
    device.queue.writeBuffer(buffer, 0, new Uint32Array(values))
    return buffer
  }
  const normPasses: { uniform: GPUBuffer; outputs: number }[] = []
  for (let remaining = partials; remaining > 1;) {
    const outputs = Math.ceil(remaining / CHUNK)
    normPasses.push({ uniform: uniform([remaining, outputs, 0, 0]), outputs })
    remaining = outputs
  }
  const state: FlatState = {
    sizes,
    offsets,
    total,
    buffers: new Map(),
    holds: new Map(),
    uniform: device.createBuffer({ size: 32, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST }),
    partials,
    squaresUniform: uniform([total, partials, 0, 0]),
    normPasses,
  }
  states.set(key, state)
  return state
}

function flat(backend: WebGpuInternals, state: FlatState, name: string, elements = state.total): GPUBuffer {
  let buffer = state.buffers.get(name)
  if (buffer === undefined) {
    buffer = backend.device.createBuffer({
      label: `coop-flat-${name}`,
      size: Math.max(16, elements * 4),
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
    })
    state.buffers.set(name, buffer)
  }
  return buffer
}

/** Copies each tensor into its slot of the flat buffer, unless the buffer already holds exactly these tensors. */
function gather(backend: WebGpuInternals, state: FlatState, name: string, infos: TensorInfo[]): GPUBuffer {
  const buffer = flat(backend, state, name)
  const held = state.holds.get(name)
  if (held !== undefined && held.length === infos.length && held.every((id, i) => id === infos[i]!.dataId))
    return buffer
  const encoder = backend.encoderOutsidePass()
  infos.forEach((info, i) => {
    if (state.sizes[i] === 0) return
    encoder.copyBufferToBuffer(backend.bufferOf(info), 0, buffer, state.offsets[i]! * 4, state.sizes[i]! * 4)
  })
  state.holds.set(
    name,
    infos.map((info) => info.dataId),
  )
  return buffer
}

/** New tensors holding the flat buffer's slots; the flat buffer is then known to hold them. */
function scatter(backend: WebGpuInternals, state: FlatState, name: string, like: TensorInfo[]): TensorInfo[] {
  const buffer = flat(backend, state, name)
  const encoder = backend.encoderOutsidePass()
  const outputs = like.map((info, i) => {
    const out = backend.makeTensorInfo(info.shape, 'float32')
    if (state.sizes[i]! > 0)
      encoder.copyBufferToBuffer(buffer, state.offsets[i]! * 4, backend.bufferOf(out), 0, state.sizes[i]! * 4)
    return out
  })
  state.holds.set(
    name,
    outputs.map((out) => out.dataId),
  )
  return outputs
}

function indexed(inputs: NamedTensorInfoMap, prefix: string, count: number): TensorInfo[] {
  return Array.from({ length: count }, (_, i) => inputs[`${prefix}${i}`] as TensorInfo)
}

function dispatch(
  backend: WebGpuInternals,
  pipeline: GPUComputePipeline,
  buffers: GPUBuffer[],
  uniform: GPUBuffer,
  workgroups: number,
): void {
  const entries = [...buffers, uniform].map((buffer, binding) => ({ binding, resource: { buffer } }))
  const bindGroup = backend.device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries })
  const pass = backend.encoderOutsidePass().beginComputePass()
  pass.setPipeline(pipeline)
  pass.setBindGroup(0, bindGroup)
  pass.dispatchWorkgroups(workgroups)
  pass.end()
}

function workgroupsFor(count: number): number {
  return Math.max(1, Math.min(MAX_WORKGROUPS, Math.ceil(count / WORKGROUP)))
}

const squaredNormKernel: KernelFunc = ({ inputs, backend: raw, attrs }) => {
  const backend = webGpuInternals(raw)
  const count = (attrs as unknown as { count: number }).count
  const grads = indexed(inputs, 'x', count)
  const state = stateFor(backend, grads)
  const flatGrad = gather(backend, state, 'grad', grads)
  const out = backend.makeTensorInfo([], 'float32')
  const { squares, chunkSums } = pipelines(backend.device)
  // Ping-pong between two partial buffers; the last pass writes the output scalar.
  const buffers = [
    flat(backend, state, 'partialsA', state.partials),
    flat(backend, state, 'partialsB', state.partials),
  ]
  const target = (pass: number, last: boolean) =>
    last ? backend.bufferOf(out) : (buffers[pass % 2] as GPUBuffer)
  const passes = state.normPasses
  dispatch(
    backend,
    squares,
    [flatGrad, target(0, passes.length === 0)],
    state.squaresUniform,
    Math.ceil(state.partials / WORKGROUP),
  )
  passes.forEach((pass, i) => {
    dispatch(
      backend,
      chunkSums,
      [buffers[i % 2] as GPUBuffer, target(i + 1, i === passes.length - 1)],
      pass.uniform,
      Math.ceil(pass.outputs / WORKGROUP),
    )
  })
  return out
}

const adamKernel: KernelFunc = ({ inputs, backend: raw, attrs }) => {
  const backend = webGpuInternals(raw)
  const { count, learningRate, beta1, beta2, epsilon, step, clipNorm } = attrs as unknown as {
    count: number
    learningRate: number
    beta1: number
    beta2: number
    epsilon: number
    step: number
    clipNorm: number
  }
  const params = indexed(inputs, 'param', count)
  const state = stateFor(backend, params)
  const flatParam = gather(backend, state, 'param', params)
  const flatGrad = gather(backend, state, 'grad', indexed(inputs, 'grad', count))
  const flatM = gather(backend, state, 'm', indexed(inputs, 'm', count))
  const flatV = gather(backend, state, 'v', indexed(inputs, 'v', count))
  // queue.writeBuffer lands before the next submit: flush earlier commands that read this uniform first.
  backend.submitQueue()
  const hyper = new ArrayBuffer(32)
  new Uint32Array(hyper, 0, 1)[0] = state.total
  new Float32Array(hyper, 4, 7).set([
    beta1,
    beta2,
    learningRate / (1 - beta1 ** step),
    1 / (1 - beta2 ** step),
    epsilon,
    clipScaleLimit(clipNorm),
    0,
  ])
  backend.device.queue.writeBuffer(state.uniform, 0, hyper)
  const { adam } = pipelines(backend.device)
  dispatch(
    backend,
    adam,
    [
      flatParam,
      flatGrad,
      flatM,
      flatV,
      backend.bufferOf(inputs.squaredNorm as TensorInfo),
      backend.bufferOf(inputs.loss as TensorInfo),
    ],
    state.uniform,
    workgroupsFor(state.total),
  )
  const outParams = scatter(backend, state, 'param', params)
  const outM = scatter(backend, state, 'm', params)
  const outV = scatter(backend, state, 'v', params)
  backend.submitQueue()
  return params.flatMap((_, i) => [outParams[i]!, outM[i]!, outV[i]!])
}

const emaKernel: KernelFunc = ({ inputs, backend: raw, attrs }) => {
  const backend = webGpuInternals(raw)
  const { count, decay } = attrs as unknown as { count: number; decay: number }
  const shadows = indexed(inputs, 'shadow', count)
  const state = stateFor(backend, shadows)
  const flatShadow = gather(backend, state, 'shadow', shadows)
  const flatParam = gather(backend, state, 'emaParam', indexed(inputs, 'param', count))
  backend.submitQueue()
  const hyper = new ArrayBuffer(16)
  new Uint32Array(hyper, 0, 1)[0] = state.total
  new Float32Array(hyper, 4, 1)[0] = decay
  // A separate uniform from Adam's, written after the submit above (see adamKernel).
  backend.device.queue.writeBuffer(emaUniform(backend, state), 0, hyper)
  dispatch(
    backend,
    pipelines(backend.device).ema,
    [flatShadow, flatParam],
    emaUniform(backend, state),
    workgroupsFor(state.total),
  )
  const outputs = scatter(backend, state, 'shadow', shadows)
  backend.submitQueue()
  return outputs
}

const emaUniforms = new WeakMap<FlatState, GPUBuffer>()

function emaUniform(backend: WebGpuInternals, state: FlatState): GPUBuffer {
  let buffer = emaUniforms.get(state)
  if (buffer === undefined) {
    buffer = backend.device.createBuffer({
      size: 16,
      usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
    })
    emaUniforms.set(state, buffer)
  }
  return buffer
}

let registered = false

/** Registers the three fused optimizer kernels for `webgpu`. Idempotent. */
export function registerWebGpuOptimizerKernels(): void {
  if (registered) return
  const configs: KernelConfig[] = [
    { kernelName: 'CoopFusedAdam', backendName: 'webgpu', kernelFunc: adamKernel },
    { kernelName: 'CoopFusedEma', backendName: 'webgpu', kernelFunc: emaKernel },
    { kernelName: 'CoopFusedSquaredNorm', backendName: 'webgpu', kernelFunc: squaredNormKernel },
  ]
  for (const config of configs)
    if (tf.getKernel(config.kernelName, 'webgpu') === undefined) tf.registerKernel(config)
  registered = true
}
