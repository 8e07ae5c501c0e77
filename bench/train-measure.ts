// Measurement pieces of bench/train.bench.ts: synthetic data, one timed training case through the same
// TrainerSession a peer uses, the per-kernel CPU profile of a wasm step, the WebGPU host-call breakdown,
// and the PyTorch reference (bench/reference/train_step.py) run as a child process.
import * as tf from '@tensorflow/tfjs-core'
import { execFileSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { CoopConfig } from '../configs/index.ts'
import { createAutoencoder } from '../trainer/autoencoder.ts'
import type { ImageDataset } from '../trainer/data.ts'
import { createTrainerSession } from '../trainer/session.ts'
import type { TrainerSession } from '../trainer/session.ts'
import type { NamedTensor } from '../trainer/types.ts'
import { resetWebGpuCallStats, webGpuCallStats } from '../trainer/webgpu/device.ts'
import type { WebGpuCallStats } from '../trainer/webgpu/device.ts'

export type Phase = 'autoencoder' | 'unet'

/** Enough images for a few distinct batches; throughput does not depend on pixel values. */
const SYNTHETIC_IMAGES = 96
export const SYSTEM_PYTHON = '/usr/bin/python3'

/** Smooth, image-like synthetic data (the benchmark must not depend on a dataset being laid out). */
export function syntheticDataset(config: CoopConfig): ImageDataset {
  const size = config.image.size
  const pixels = new Float32Array(SYNTHETIC_IMAGES * size * size * 3)
  for (let i = 0; i < pixels.length; i++)
    pixels[i] = 0.9 * Math.sin(i * 0.37 + Math.floor(i / (size * 3)) * 0.11)
  const classCount = Math.max(1, config.classes.length)
  return {
    items: Array.from({ length: SYNTHETIC_IMAGES }, (_, i) => ({
      path: `synthetic/${i}.png`,
      sha256: `sha256:${i.toString(16).padStart(64, '0')}`,
      label: i % classCount,
    })),
    classes: config.classes,
    pixels,
    size,
    skipped: [],
    notAllowed: 0,
    optedOut: [],
  }
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

const autoencoders = new Map<string, NamedTensor[]>()

/** Initial autoencoder weights (the U-Net phase encodes its data with them), made once per config. */
async function autoencoderFor(config: CoopConfig): Promise<NamedTensor[]> {
  const known = autoencoders.get(config.name)
  if (known !== undefined) return known
  const store = createAutoencoder(config, 1)
  const weights = await store.read()
  store.dispose()
  autoencoders.set(config.name, weights)
  return weights
}

export async function openSession(
  config: CoopConfig,
  phase: Phase,
  threads: number,
): Promise<TrainerSession> {
  const autoencoder = await autoencoderFor(config)
  return createTrainerSession({
    config,
    phase,
    dataset: syntheticDataset(config),
    seed: 1,
    autoencoder,
    threads,
  })
}

export interface CaseTiming {
  warmup: number
  minSteps: number
  maxSteps: number
  seconds: number
  /** Steps per trainSteps call: a GPU backend overlaps one step's readback with the next step's work. */
  block: number
}

export interface Measurement {
  backend: string
  threads: number
  config: string
  phase: Phase
  batch: number
  steps: number
  stepMsMedian: number
  imgPerSec: number
  /** Images per second of this process's CPU time (all threads): stable on a shared machine, wall time is not. */
  imgPerCpuSec: number
  /** Process CPU seconds per wall second over the timed steps: about 2 when two threads compute in parallel. */
  cpuPerWall: number
  /** WebGPU only: host-side cost per step of the device calls (see trainer/webgpu/device.ts). */
  webgpu?: WebGpuCallStats & { hostCpuMs: number }
}

/** Linux's USER_HZ, the unit of /proc/<pid>/stat's CPU times, on every mainstream architecture. */
const CLOCK_TICKS_PER_SECOND = 100

/** CPU milliseconds a process has used (Linux /proc; 10 ms resolution): the torch worker's share of a step. */
function processCpuMs(pid: number | undefined): number {
  if (pid === undefined) return 0
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? []
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the command name.
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS_PER_SECOND
  } catch {
    return 0
  }
}

export async function measure(
  backend: string,
  threads: number,
  config: CoopConfig,
  phase: Phase,
  timing: CaseTiming,
): Promise<Measurement> {
  const session = await openSession(config, phase, threads)
  try {
    await session.trainSteps(timing.warmup)
    const blockMs: number[] = []
    let steps = 0
    resetWebGpuCallStats()
    // A torch session trains in a worker process: its CPU counts too (the whole cost, as PyTorch's own).
    const workerPid = 'worker' in session ? (session.worker as { pid?: number }).pid : undefined
    const workerCpuStarted = processCpuMs(workerPid)
    const cpuStarted = process.cpuUsage()
    const started = performance.now()
    while (
      steps < timing.minSteps ||
      (steps < timing.maxSteps && performance.now() - started < timing.seconds * 1000)
    ) {
      const blockStarted = performance.now()
      await session.trainSteps(timing.block)
      blockMs.push((performance.now() - blockStarted) / timing.block)
      steps += timing.block
    }
    const wallMs = performance.now() - started
    const cpu = process.cpuUsage(cpuStarted)
    const cpuMs = (cpu.user + cpu.system) / 1000 + processCpuMs(workerPid) - workerCpuStarted
    const batch = phase === 'unet' ? config.unet.batchSize : config.autoencoder.batchSize
    const stepMsMedian = median(blockMs)
    const calls = webGpuCallStats()
    const perStep = (value: number) => value / steps
    return {
      backend,
      threads,
      config: config.name,
      phase,
      batch,
      steps,
      stepMsMedian,
      imgPerSec: (batch * 1000) / stepMsMedian,
      imgPerCpuSec: (batch * steps * 1000) / cpuMs,
      cpuPerWall: cpuMs / wallMs,
      ...(backend === 'webgpu'
        ? {
            webgpu: {
              ...(Object.fromEntries(
                Object.entries(calls).map(([key, value]) => [key, perStep(value)]),
              ) as unknown as WebGpuCallStats),
              hostCpuMs: perStep(cpuMs),
            },
          }
        : {}),
    }
  } finally {
    session.dispose()
  }
}

export interface KernelShare {
  kernel: string
  calls: number
  ms: number
  share: number
}

/**
 * Where one training step's CPU time goes, per tfjs kernel, on the active backend and the main thread
 * (run it with 1 thread). Each registered kernel is wrapped to add up the thread CPU time it uses; a
 * kernel that calls another registered kernel (CoopConv2DBias -> FusedConv2D) is counted once, as the
 * outer one. The rest of the step (tape, engine bookkeeping, model JS) is "outside kernels".
 */
export async function profileStep(
  config: CoopConfig,
  phase: Phase,
  warmup: number,
): Promise<{ stepCpuMs: number; outsideKernelsMs: number; kernels: KernelShare[] }> {
  const session = await openSession(config, phase, 1)
  const backendName = tf.getBackend()
  const originals = tf.getKernelsForBackend(backendName)
  const byKernel = new Map<string, { calls: number; ms: number }>()
  const threadMs = () => {
    const usage = process.threadCpuUsage()
    return (usage.user + usage.system) / 1000
  }
  let depth = 0
  try {
    await session.trainSteps(warmup)
    for (const config of originals) {
      tf.unregisterKernel(config.kernelName, backendName)
      tf.registerKernel({
        ...config,
        setupFunc: undefined,
        kernelFunc: (args) => {
          if (depth > 0) return config.kernelFunc(args)
          depth++
          const started = threadMs()
          try {
            return config.kernelFunc(args)
          } finally {
            depth--
            const entry = byKernel.get(config.kernelName) ?? { calls: 0, ms: 0 }
            entry.calls++
            entry.ms += threadMs() - started
            byKernel.set(config.kernelName, entry)
          }
        },
      })
    }
    // Thread CPU time advances in scheduler ticks: enough steps that per-kernel sums average them out.
    const steps = 8
    const stepStarted = threadMs()
    await session.trainSteps(steps)
    const stepCpuMs = (threadMs() - stepStarted) / steps
    const kernels = [...byKernel]
      .map(([kernel, entry]) => ({
        kernel,
        calls: entry.calls / steps,
        ms: entry.ms / steps,
        share: entry.ms / steps / stepCpuMs,
      }))
      .sort((a, b) => b.ms - a.ms)
    const inKernels = kernels.reduce((sum, entry) => sum + entry.ms, 0)
    return { stepCpuMs, outsideKernelsMs: stepCpuMs - inKernels, kernels }
  } finally {
    for (const config of originals) {
      tf.unregisterKernel(config.kernelName, backendName)
      tf.registerKernel(config)
    }
    session.dispose()
  }
}

export interface Reference {
  config: string
  phase: Phase
  threads: number
  batch: number
  stepMs: number
  imgPerSec: number
  imgPerCpuSec: number
  torch: string
  parameters: number
}

export function torchAvailable(): boolean {
  try {
    execFileSync(SYSTEM_PYTHON, ['-c', 'import torch'], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}

export function runReference(
  script: string,
  config: CoopConfig,
  phase: Phase,
  threads: number,
  workDir: string,
): Reference {
  const configPath = join(workDir, `${config.name}.json`)
  writeFileSync(configPath, JSON.stringify(config))
  const output = execFileSync(
    SYSTEM_PYTHON,
    [script, '--config', configPath, '--phase', phase, '--threads', String(threads)],
    { encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: String(threads) } },
  )
  return {
    config: config.name,
    ...(JSON.parse(output.trim().split('\n').pop()!) as Omit<Reference, 'config'>),
  }
}
