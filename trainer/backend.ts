// Chooses and initialises the tfjs backend that training runs on.
//
// Native backends (tfjs-node-gpu, tfjs-node) are optionalDependencies that only install where their
// libtensorflow download is reachable, and WebGPU needs a Vulkan/Metal/D3D adapter; so every candidate is
// loaded with a dynamic import and probed, best first. `wasm` is the floor for training: it gets the
// gradient kernels it lacks from ./kernels/wasm.ts. The pure `cpu` backend (conv backprop ~0.05 GFLOP/s)
// is only chosen when nothing else loads.
import { CodedError } from '../protocol/coded-error.ts'

import * as tf from '@tensorflow/tfjs-core'
import { readdir } from 'node:fs/promises'
import { registerHooks } from 'node:module'
import type { Logger } from 'pino'
import { AUTO_BACKEND_ORDER, NVIDIA_GPU_PROC_DIR, REQUESTED_BACKENDS } from './kernels/constants.ts'
import { registerConvBiasKernels } from './kernels/conv-bias.ts'
import { registerCpuKernelFixes } from './kernels/cpu.ts'
import { registerSiluKernels } from './kernels/silu.ts'
import { registerGroupNormKernels } from './kernels/groupnorm.ts'
import { registerFusedOptimizerKernels } from './kernels/optimizer.ts'
import { registerWasmTrainingKernels } from './kernels/wasm.ts'
import { setUpWebGpu, WebGpuUnavailable } from './webgpu/device.ts'
import { registerWebGpuTrainingKernels } from './webgpu/kernels.ts'
import { registerWebGpuOptimizerKernels } from './webgpu/optimizer.ts'
import { registerWebGpuPrograms } from './webgpu/programs.ts'
import { errorCode } from '../protocol/coded-error.ts'
import { TORCH_INSTALL_HINT } from './torch/constants.ts'
import { describeProbes, probeTorch } from './torch/probe.ts'
import { selectTorchRuntime } from './torch/selection.ts'
import type { TorchRuntime } from './torch/selection.ts'
import { setTrainingThreads, trainingThreads } from './threads.ts'

export type RequestedBackend = (typeof REQUESTED_BACKENDS)[number]

/** A concrete candidate: `tensorflow-gpu` and `tensorflow` both register tfjs's `tensorflow` backend. */
type Candidate = (typeof AUTO_BACKEND_ORDER)[number]

export interface BackendChoice {
  /**
   * What training runs on: the tfjs backend now active (`tf.getBackend()`: 'tensorflow' | 'webgpu' | 'wasm' |
   * 'cpu'), or 'torch' when sessions train in the PyTorch worker (see `torch`).
   */
  name: string
  /** Which implementation serves it, e.g. 'tensorflow-gpu' (tfjs-node-gpu on a GPU) or 'wasm'. */
  candidate: string
  /** Every better candidate that `auto` tried and why it was not used, in trial order. */
  skipped: { name: string; reason: string }[]
  /** With the torch backend: the python, torch version and device the workers use. */
  torch?: TorchRuntime
  /** With the torch backend: the tfjs backend the node's own tensor work (weight init, grids) runs on. */
  tfjs?: string
  /** Threads each training step uses (data-parallel workers on wasm; 1 elsewhere). */
  threads: number
}

export const BACKEND_ERROR_CODES = [
  /** `--backend` named something that is not a backend. */
  'UNKNOWN_BACKEND',
  /** The backend that was asked for explicitly cannot load or cannot run here. */
  'BACKEND_UNAVAILABLE',
] as const

export type BackendErrorCode = (typeof BACKEND_ERROR_CODES)[number]

export class BackendError extends CodedError<BackendErrorCode> {}

/** Raised inside a probe: the candidate cannot be used, for a reason worth one log line. */
class CandidateUnavailable extends Error {
  override name = 'CandidateUnavailable'
}

export function isRequestedBackend(value: string): value is RequestedBackend {
  return (REQUESTED_BACKENDS as readonly string[]).includes(value)
}

function describe(error: unknown): string {
  if (error instanceof Error) {
    const code = errorCode(error)
    // Module-resolution failures carry a long require stack; the first line says all a user needs.
    const firstLine = error.message.split('\n')[0] ?? error.message
    return typeof code === 'string' && code === 'ERR_MODULE_NOT_FOUND' ? 'package not installed' : firstLine
  }
  return String(error)
}

/** Dynamic import through a variable, so TypeScript does not demand types for optional packages. */
async function importOptional(specifier: string): Promise<unknown> {
  return import(specifier)
}

async function activate(backendName: string): Promise<void> {
  // setBackend resolves false (after a console warning) rather than throwing when initialisation fails.
  const ok = await tf.setBackend(backendName)
  if (!ok) throw new CandidateUnavailable(`tfjs backend '${backendName}' failed to initialise`)
  await tf.ready()
}

async function nvidiaGpuCount(): Promise<number> {
  try {
    return (await readdir(NVIDIA_GPU_PROC_DIR)).length
  } catch {
    return 0
  }
}

async function probeTensorflowGpu(): Promise<void> {
  const gpus = await nvidiaGpuCount()
  if (gpus === 0) throw new CandidateUnavailable(`no NVIDIA GPU listed in ${NVIDIA_GPU_PROC_DIR}`)
  try {
    await importOptional('@tensorflow/tfjs-node-gpu')
  } catch (error) {
    throw new CandidateUnavailable(`@tensorflow/tfjs-node-gpu: ${describe(error)}`, { cause: error })
  }
  await activate('tensorflow')
}

async function probeTensorflowCpu(): Promise<void> {
  try {
    await importOptional('@tensorflow/tfjs-node')
  } catch (error) {
    throw new CandidateUnavailable(`@tensorflow/tfjs-node: ${describe(error)}`, { cause: error })
  }
  await activate('tensorflow')
}

/**
 * Whether a GPU may be present: Linux exposes GPUs as DRM render nodes or NVIDIA device files (without one
 * only a CPU emulation could answer); other platforms are assumed to have one (Metal, D3D12).
 */
export async function gpuDeviceVisible(): Promise<boolean> {
  if (process.platform !== 'linux') return true
  try {
    if ((await readdir('/dev/dri')).some((name) => name.startsWith('renderD'))) return true
  } catch {
    // no DRM devices
  }
  try {
    return (await readdir('/dev')).some((name) => /^nvidia\d+$/.test(name))
  } catch {
    return false
  }
}

async function probeWebGpu(explicit: boolean): Promise<void> {
  // Dawn prints Vulkan loader warnings on stderr when it looks for adapters: `auto` does not wake it on a
  // Linux machine without a GPU device, so such machines stay silent unless webgpu was asked for.
  if (!explicit && !(await gpuDeviceVisible()))
    throw new CandidateUnavailable('no GPU device (/dev/dri/renderD*, /dev/nvidia*)')
  try {
    await setUpWebGpu({ allowSoftware: explicit })
  } catch (error) {
    if (error instanceof WebGpuUnavailable) throw new CandidateUnavailable(error.message, { cause: error })
    throw new CandidateUnavailable(`webgpu (Dawn): ${describe(error)}`, { cause: error })
  }
  await activate('webgpu')
  registerWebGpuTrainingKernels()
  registerWebGpuOptimizerKernels()
  registerWebGpuPrograms()
}

async function probeWasm(): Promise<void> {
  await import('@tensorflow/tfjs-backend-wasm')
  await activate('wasm')
  registerWasmTrainingKernels()
}

async function probeCpu(): Promise<void> {
  await activate('cpu')
}

/**
 * The PyTorch worker: a python3 with torch (with CUDA, for `auto`). The node still runs some tensor work
 * itself (initial weights from the seed, reconstruction grids), so the best tfjs CPU backend is made
 * active beside it. Nothing is spawned by `auto` on a machine without an NVIDIA GPU.
 */
async function probeTorchWorker(requested: RequestedBackend): Promise<TorchRuntime> {
  if (requested === 'auto' && (await nvidiaGpuCount()) === 0)
    throw new CandidateUnavailable(`no NVIDIA GPU listed in ${NVIDIA_GPU_PROC_DIR}`)
  const results = await probeTorch()
  const usable = results.flatMap((r) => ('runtime' in r ? [r.runtime] : []))
  const cuda = usable.find((r) => r.device === 'cuda')
  const runtime = requested === 'auto' ? cuda : (cuda ?? usable[0])
  if (runtime === undefined) {
    if (usable.length > 0)
      throw new CandidateUnavailable(`torch has no CUDA device (${describeProbes(results)})`)
    throw new CandidateUnavailable(
      `no python3 with torch (${describeProbes(results)}); ${TORCH_INSTALL_HINT}`,
    )
  }
  try {
    await probeWasm()
  } catch {
    await probeCpu()
  }
  return runtime
}

let gradientsRegistered = false

/**
 * tfjs-core's Node entry point registers no gradient functions (the `@tensorflow/tfjs` bundle does it for
 * its users): without this every tf.grads / optimizer call fails with "gradient function not found". The
 * registrations ship only as ESM files with extensionless relative imports, which Node's resolver
 * rejects, so a resolve hook scoped to tfjs-core's dist folder retries such imports with `.js`. Gradient,
 * kernel and engine registries are process globals in tfjs, so the ESM copy registers into the same ones
 * the CommonJS entry point reads. Tensor methods (`t.reshape(...)`) are registered the same way.
 */
async function registerGradients(): Promise<void> {
  if (gradientsRegistered) return
  registerHooks({
    resolve(specifier, context, nextResolve) {
      try {
        return nextResolve(specifier, context)
      } catch (error) {
        const fromTfjsCore = context.parentURL?.includes('/@tensorflow/tfjs-core/dist/') ?? false
        if (!fromTfjsCore || !specifier.startsWith('.') || specifier.endsWith('.js')) throw error
        try {
          return nextResolve(`${specifier}.js`, context)
        } catch {
          return nextResolve(`${specifier}/index.js`, context)
        }
      }
    },
  })
  await import('@tensorflow/tfjs-core/dist/register_all_gradients.js')
  await import('@tensorflow/tfjs-core/dist/public/chained_ops/register_all_chained_ops.js')
  gradientsRegistered = true
}

const PROBES: Record<Exclude<Candidate, 'torch'>, (explicit: boolean) => Promise<void>> = {
  'tensorflow-gpu': probeTensorflowGpu,
  tensorflow: probeTensorflowCpu,
  webgpu: probeWebGpu,
  wasm: probeWasm,
  cpu: probeCpu,
}

function candidatesFor(requested: RequestedBackend): readonly Candidate[] {
  switch (requested) {
    case 'auto':
      return AUTO_BACKEND_ORDER
    case 'tensorflow':
      return ['tensorflow-gpu', 'tensorflow']
    default:
      return [requested]
  }
}

/**
 * Makes the best available backend (or the one asked for) active. After it resolves, plain tfjs-core ops
 * and their gradients train correctly on that backend. With `auto` it never fails (pure `cpu` always
 * loads); an explicit request that cannot be met is a BackendError('BACKEND_UNAVAILABLE').
 */
export async function initBackend(
  requested: string,
  log?: Logger,
  options: { threads?: number } = {},
): Promise<BackendChoice> {
  if (!isRequestedBackend(requested)) {
    throw new BackendError(
      'UNKNOWN_BACKEND',
      `unknown backend '${requested}': expected one of ${REQUESTED_BACKENDS.join(', ')}`,
    )
  }
  if (options.threads !== undefined) setTrainingThreads(options.threads)
  await registerGradients()
  // The cpu backend is loaded whatever is chosen: it is the last resort, tests compare against it, and its
  // kernel fix must be registered after the package's own import-time registrations, which it overrides.
  await import('@tensorflow/tfjs-backend-cpu')
  registerCpuKernelFixes()
  registerFusedOptimizerKernels()
  registerGroupNormKernels()
  registerConvBiasKernels()
  registerSiluKernels()
  const skipped: { name: string; reason: string }[] = []
  for (const candidate of candidatesFor(requested)) {
    let torch: TorchRuntime | undefined
    try {
      if (candidate === 'torch') torch = await probeTorchWorker(requested)
      else await PROBES[candidate](requested !== 'auto')
    } catch (error) {
      skipped.push({ name: candidate, reason: describe(error) })
      continue
    }
    selectTorchRuntime(torch)
    if (torch !== undefined) {
      // The worker sets its own thread count (COOP_TORCH_THREADS); the node's side of a step is one thread.
      const choice = { name: 'torch', candidate, skipped, torch, tfjs: tf.getBackend(), threads: 1 }
      const { python, device, cudaDevice, threads } = torch
      log?.info(
        {
          backend: candidate,
          requested,
          device: device === 'cuda' ? `cuda (${cudaDevice})` : `cpu (${threads} threads)`,
          python,
          torch: torch.torch,
          tfjs: choice.tfjs,
          skipped,
        },
        'training backend selected',
      )
      return choice
    }
    // Worker threads serve wasm only (trainer/parallel/): other backends train on one thread.
    const threads = tf.getBackend() === 'wasm' ? trainingThreads() : 1
    const choice = { name: tf.getBackend(), candidate, skipped, threads }
    log?.info({ backend: candidate, requested, skipped, threads }, 'training backend selected')
    return choice
  }
  const reasons = skipped.map((entry) => `${entry.name}: ${entry.reason}`).join('; ')
  throw new BackendError('BACKEND_UNAVAILABLE', `backend '${requested}' cannot run here (${reasons})`)
}
