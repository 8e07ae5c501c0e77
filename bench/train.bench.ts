// Training throughput: images/s for one autoencoder step and one U-Net step, per available tfjs backend,
// on the `tiny` and `emoji32` configs, through the same TrainerSession the node uses (forward, backward,
// gradient clipping, Adam, EMA). When Debian's python3-torch is present, the same architectures and
// batches run in PyTorch (bench/reference/train_step.py) and the ratio is reported.
//
//   npm run bench:train -- [--backends wasm,cpu] [--configs tiny,emoji32] [--seconds 8] [--no-torch] [--no-profile]
//
// Writes bench/results/train.json. A figure, not a test: nothing here asserts a speed.

import * as tf from '@tensorflow/tfjs-core'
import { execFileSync } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { availableParallelism, cpus, loadavg, tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { loadConfig } from '../configs/index.ts'
import type { CoopConfig } from '../configs/index.ts'
import { createAutoencoder } from '../trainer/autoencoder.ts'
import { BackendError, initBackend } from '../trainer/backend.ts'
import type { ImageDataset } from '../trainer/data.ts'
import { createTrainerSession } from '../trainer/session.ts'

type Phase = 'autoencoder' | 'unet'

const HERE = dirname(fileURLToPath(import.meta.url))
const RESULTS_PATH = join(HERE, 'results', 'train.json')
const REFERENCE_SCRIPT = join(HERE, 'reference', 'train_step.py')
const SYSTEM_PYTHON = '/usr/bin/python3'
/** Every backend `--backend` accepts except `auto`, best first. */
const ALL_BACKENDS = ['tensorflow', 'webgpu', 'wasm', 'cpu']
const PHASES: Phase[] = ['autoencoder', 'unet']
/** Enough images for a few distinct batches; throughput does not depend on pixel values. */
const SYNTHETIC_IMAGES = 96
/** Untimed steps first: XNNPACK operator set-up, wasm heap growth, V8 warm-up. */
const WARMUP_STEPS = 2
const MIN_TIMED_STEPS = 3
const MAX_TIMED_STEPS = 30
/**
 * The pure cpu backend needs minutes per emoji32 step, all of it in its scalar conv kernels (nothing to
 * warm up), so one timed step is its figure.
 */
const SLOW_BACKEND_STEPS = { warmup: 0, minTimed: 1 }

const { values: options } = parseArgs({
  options: {
    backends: { type: 'string', default: ALL_BACKENDS.join(',') },
    configs: { type: 'string', default: 'tiny,emoji32' },
    seconds: { type: 'string', default: '8' },
    'no-torch': { type: 'boolean', default: false },
    'no-profile': { type: 'boolean', default: false },
  },
  strict: true,
})
const secondsPerCase = Number(options.seconds)

/** Smooth, image-like synthetic data (the benchmark must not depend on a dataset being laid out). */
function syntheticDataset(config: CoopConfig): ImageDataset {
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
  }
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

interface Measurement {
  backend: string
  config: string
  phase: Phase
  batch: number
  steps: number
  stepMsMedian: number
  imgPerSec: number
  /** Images per second of this process's CPU time: stable on a shared machine, where wall time is not. */
  imgPerCpuSec: number
  /** When it was measured: a run with --backends keeps the other backends' earlier figures. */
  measuredAt: string
}

async function measure(backend: string, config: CoopConfig, phase: Phase): Promise<Measurement> {
  const dataset = syntheticDataset(config)
  const autoencoderStore = createAutoencoder(config, 1)
  const autoencoder = await autoencoderStore.read()
  autoencoderStore.dispose()
  const session = await createTrainerSession({ config, phase, dataset, seed: 1, autoencoder })
  try {
    const slow = backend === 'cpu'
    await session.trainSteps(slow ? SLOW_BACKEND_STEPS.warmup : WARMUP_STEPS)
    const minTimed = slow ? SLOW_BACKEND_STEPS.minTimed : MIN_TIMED_STEPS
    const stepMs: number[] = []
    const cpuMs: number[] = []
    const started = performance.now()
    while (
      stepMs.length < minTimed ||
      (stepMs.length < MAX_TIMED_STEPS && performance.now() - started < secondsPerCase * 1000)
    ) {
      const stepStarted = performance.now()
      const cpuStarted = process.cpuUsage()
      await session.trainSteps(1)
      const cpu = process.cpuUsage(cpuStarted)
      stepMs.push(performance.now() - stepStarted)
      cpuMs.push((cpu.user + cpu.system) / 1000)
    }
    const batch = phase === 'unet' ? config.unet.batchSize : config.autoencoder.batchSize
    const stepMsMedian = median(stepMs)
    return {
      backend,
      config: config.name,
      phase,
      batch,
      steps: stepMs.length,
      stepMsMedian,
      imgPerSec: (batch * 1000) / stepMsMedian,
      imgPerCpuSec: (batch * 1000) / median(cpuMs),
      measuredAt: new Date().toISOString(),
    }
  } finally {
    session.dispose()
  }
}

interface KernelShare {
  kernel: string
  calls: number
  ms: number
  share: number
}

/** Where one U-Net step's time goes, per tfjs kernel, on the active backend. */
/**
 * Where one U-Net step's CPU time goes, per tfjs kernel, on the active backend. Each registered kernel is
 * wrapped to add up the process CPU time it uses (not wall time: on a shared machine a preempted kernel
 * would look slow); the rest of the step (tape, engine bookkeeping, JS of the model) is reported as
 * "outside kernels". Composite kernels call their parts directly, so nothing is counted twice.
 */
async function profileUnetStep(
  config: CoopConfig,
): Promise<{ stepCpuMs: number; outsideKernelsMs: number; kernels: KernelShare[] }> {
  const autoencoderStore = createAutoencoder(config, 1)
  const session = await createTrainerSession({
    config,
    phase: 'unet',
    dataset: syntheticDataset(config),
    seed: 1,
    autoencoder: await autoencoderStore.read(),
  })
  autoencoderStore.dispose()
  const backendName = tf.getBackend()
  const originals = tf.getKernelsForBackend(backendName)
  const byKernel = new Map<string, { calls: number; ms: number }>()
  try {
    await session.trainSteps(WARMUP_STEPS)
    for (const config of originals) {
      tf.unregisterKernel(config.kernelName, backendName)
      tf.registerKernel({
        ...config,
        setupFunc: undefined,
        kernelFunc: (args) => {
          const started = process.cpuUsage()
          try {
            return config.kernelFunc(args)
          } finally {
            const used = process.cpuUsage(started)
            const entry = byKernel.get(config.kernelName) ?? { calls: 0, ms: 0 }
            entry.calls++
            entry.ms += (used.user + used.system) / 1000
            byKernel.set(config.kernelName, entry)
          }
        },
      })
    }
    const stepStarted = process.cpuUsage()
    await session.trainSteps(1)
    const step = process.cpuUsage(stepStarted)
    const stepCpuMs = (step.user + step.system) / 1000
    const inKernels = [...byKernel.values()].reduce((sum, entry) => sum + entry.ms, 0)
    const kernels = [...byKernel]
      .map(([kernel, entry]) => ({ kernel, calls: entry.calls, ms: entry.ms, share: entry.ms / stepCpuMs }))
      .sort((a, b) => b.ms - a.ms)
    return { stepCpuMs, outsideKernelsMs: stepCpuMs - inKernels, kernels }
  } finally {
    for (const config of originals) {
      tf.unregisterKernel(config.kernelName, backendName)
      tf.registerKernel(config)
    }
    session.dispose()
  }
}

interface Reference {
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

function torchAvailable(): boolean {
  try {
    execFileSync(SYSTEM_PYTHON, ['-c', 'import torch'], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}

function runReference(config: CoopConfig, phase: Phase, threads: number, workDir: string): Reference {
  const configPath = join(workDir, `${config.name}.json`)
  writeFileSync(configPath, JSON.stringify(config))
  const output = execFileSync(
    SYSTEM_PYTHON,
    [REFERENCE_SCRIPT, '--config', configPath, '--phase', phase, '--threads', String(threads)],
    { encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: String(threads) } },
  )
  return {
    config: config.name,
    ...(JSON.parse(output.trim().split('\n').pop()!) as Omit<Reference, 'config'>),
  }
}

function table(headers: string[], rows: string[][]): string {
  const line = (cells: string[]) => `| ${cells.join(' | ')} |`
  return [line(headers), line(headers.map(() => '---')), ...rows.map(line)].join('\n')
}

const configs = options.configs.split(',').map((name) => loadConfig(name))
const requestedBackends = options.backends.split(',')
/** Figures of backends not measured in this run are carried over from the previous results file. */
function earlierMeasurements(): Measurement[] {
  if (!existsSync(RESULTS_PATH)) return []
  try {
    const previous = JSON.parse(readFileSync(RESULTS_PATH, 'utf8')) as { measurements?: Measurement[] }
    return (previous.measurements ?? []).filter(
      (m) => typeof m.measuredAt === 'string' && !requestedBackends.includes(m.backend),
    )
  } catch {
    return []
  }
}
const measurements: Measurement[] = earlierMeasurements()
const unavailable: { backend: string; reason: string }[] = []
let profile:
  | { backend: string; config: string; stepCpuMs: number; outsideKernelsMs: number; kernels: KernelShare[] }
  | undefined

for (const backend of requestedBackends) {
  try {
    await initBackend(backend)
  } catch (error) {
    if (!(error instanceof BackendError)) throw error
    unavailable.push({ backend, reason: error.message })
    console.error(`${backend}: unavailable (${error.message})`)
    continue
  }
  for (const config of configs) {
    for (const phase of PHASES) {
      const result = await measure(backend, config, phase)
      measurements.push(result)
      console.error(
        `${backend} ${config.name} ${phase}: ${result.imgPerSec.toFixed(1)} img/s (${result.stepMsMedian.toFixed(1)} ms/step), ${result.imgPerCpuSec.toFixed(1)} img/CPU-s`,
      )
    }
  }
  const emoji32 = configs.find((config) => config.name === 'emoji32')
  if (!options['no-profile'] && profile === undefined && emoji32 !== undefined && backend !== 'cpu') {
    profile = { backend, config: emoji32.name, ...(await profileUnetStep(emoji32)) }
  }
}

const references: Reference[] = []
const torchThreads = [...new Set([1, availableParallelism()])]
if (!options['no-torch'] && torchAvailable()) {
  const workDir = mkdtempSync(join(tmpdir(), 'coop-bench-'))
  try {
    for (const config of configs) {
      for (const phase of PHASES) {
        for (const threads of torchThreads) {
          const reference = runReference(config, phase, threads, workDir)
          references.push(reference)
          console.error(
            `pytorch ${config.name} ${phase} ${threads} thread(s): ${reference.imgPerSec.toFixed(1)} img/s`,
          )
        }
      }
    }
  } finally {
    rmSync(workDir, { recursive: true, force: true })
  }
} else if (!options['no-torch']) {
  console.error(
    `PyTorch reference skipped: ${SYSTEM_PYTHON} cannot import torch (apt-get install python3-torch)`,
  )
}

function referenceFor(config: string, phase: Phase, threads: number): Reference | undefined {
  return references.find((r) => r.config === config && r.phase === phase && r.threads === threads)
}

/** The fastest PyTorch run for a case: on a shared machine more threads can be slower, not faster. */
function bestReference(config: string, phase: Phase): Reference | undefined {
  return torchThreads
    .map((threads) => referenceFor(config, phase, threads))
    .filter((r): r is Reference => r !== undefined)
    .sort((a, b) => b.imgPerSec - a.imgPerSec)[0]
}

const configOrder = configs.map((config) => config.name)
measurements.sort(
  (a, b) =>
    ALL_BACKENDS.indexOf(a.backend) - ALL_BACKENDS.indexOf(b.backend) ||
    configOrder.indexOf(a.config) - configOrder.indexOf(b.config) ||
    PHASES.indexOf(a.phase) - PHASES.indexOf(b.phase),
)
const rows = measurements.map((m) => {
  const reference = bestReference(m.config, m.phase)
  const single = referenceFor(m.config, m.phase, 1)
  const fraction = (value: number) => (value >= 1 ? value.toFixed(2) : `1/${(1 / value).toFixed(1)}`)
  let ratio = '-'
  if (reference !== undefined) {
    const threads = `${reference.threads} thread${reference.threads > 1 ? 's' : ''}`
    ratio = `${fraction(m.imgPerSec / reference.imgPerSec)} (vs ${threads})`
  }
  const cpuRatio = single === undefined ? '-' : fraction(m.imgPerCpuSec / single.imgPerCpuSec)
  return [
    m.backend,
    m.config,
    m.phase,
    String(m.batch),
    m.stepMsMedian.toFixed(1),
    m.imgPerSec.toFixed(1),
    m.imgPerCpuSec.toFixed(1),
    ratio,
    cpuRatio,
  ]
})
const output = [
  table(
    [
      'backend',
      'config',
      'phase',
      'batch',
      'ms/step (median)',
      'img/s',
      'img/CPU-s',
      'ours ÷ fastest PyTorch (img/s)',
      'ours ÷ PyTorch 1 thread (img/CPU-s)',
    ],
    rows,
  ),
]
if (references.length > 0) {
  output.push(
    '',
    table(
      ['PyTorch (CPU)', 'config', 'phase', 'threads', 'ms/step', 'img/s', 'img/CPU-s'],
      references.map((r) => [
        `torch ${r.torch}`,
        r.config,
        r.phase,
        String(r.threads),
        r.stepMs.toFixed(1),
        r.imgPerSec.toFixed(1),
        r.imgPerCpuSec.toFixed(1),
      ]),
    ),
  )
}
if (profile !== undefined) {
  output.push(
    '',
    `CPU time of one ${profile.config} U-Net training step on ${profile.backend}, per tfjs kernel (${profile.stepCpuMs.toFixed(1)} ms in all; ${profile.outsideKernelsMs.toFixed(1)} ms outside kernels: tape, engine, model JS):`,
    '',
    table(
      ['kernel', 'calls', 'ms', 'share'],
      profile.kernels
        .slice(0, 15)
        .map((k) => [k.kernel, String(k.calls), k.ms.toFixed(2), `${(100 * k.share).toFixed(1)}%`]),
    ),
  )
}
for (const entry of unavailable) output.push('', `${entry.backend}: unavailable (${entry.reason})`)
console.log(output.join('\n'))

mkdirSync(dirname(RESULTS_PATH), { recursive: true })
writeFileSync(
  RESULTS_PATH,
  `${JSON.stringify(
    {
      date: new Date().toISOString(),
      machine: {
        cpu: cpus()[0]?.model ?? 'unknown',
        cores: availableParallelism(),
        loadAverage1m: loadavg()[0],
        node: process.version,
        tfjs: tf.version_core,
      },
      secondsPerCase,
      measurements,
      unavailable,
      references,
      ratios: measurements.map((m) => {
        const reference = bestReference(m.config, m.phase)
        return {
          backend: m.backend,
          config: m.config,
          phase: m.phase,
          oursOverPytorch: reference === undefined ? null : m.imgPerSec / reference.imgPerSec,
          pytorchThreads: reference?.threads ?? null,
          oursOverPytorchPerCpuSecond: (() => {
            const single = referenceFor(m.config, m.phase, 1)
            return single === undefined ? null : m.imgPerCpuSec / single.imgPerCpuSec
          })(),
        }
      }),
      profile,
    },
    null,
    2,
  )}\n`,
)
console.error(`wrote ${RESULTS_PATH}`)
