// Training throughput: images/s of one autoencoder step and one U-Net step through the TrainerSession a
// peer uses (forward, backward, clipping, Adam, EMA), per backend and wasm thread count, side by side
// with PyTorch on the CPU (bench/reference/train_step.py, 1 and 2 threads) in the same run. Cases are
// interleaved and repeated (--reps), so each repetition's ratio compares measurements taken minutes
// apart at most, under the same machine load; the tables report medians over repetitions.
//
//   npm run bench:train -- [--backends wasm,webgpu] [--threads 1,2] [--configs emoji32] [--reps 3]
//                          [--seconds 6] [--no-torch] [--no-profile] [--out bench/results/train.json]
//
// A figure, not a test: nothing here asserts a speed.

import * as tf from '@tensorflow/tfjs-core'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { availableParallelism, cpus, loadavg, tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { loadConfig } from '../configs/index.ts'
import { BackendError, gpuDeviceVisible, initBackend } from '../trainer/backend.ts'
import { simdConvolutionsEnabled } from '../trainer/kernels/wasm.ts'
import { webGpuAdapterDescription } from '../trainer/webgpu/device.ts'
import { measure, profileStep, runReference, torchAvailable } from './train-measure.ts'
import type { KernelShare, Measurement, Phase, Reference } from './train-measure.ts'

const HERE = dirname(fileURLToPath(import.meta.url))
const REFERENCE_SCRIPT = join(HERE, 'reference', 'train_step.py')
const PHASES: Phase[] = ['autoencoder', 'unet']
/** The pure cpu backend needs minutes per emoji32 step, all in its scalar conv kernels: one step is its figure. */
const SLOW_BACKENDS = new Set(['cpu'])
/** A GPU step is queued, not computed, when trainSteps returns: time several so readback overlaps work. */
const GPU_BLOCK_STEPS = 4

const { values: options } = parseArgs({
  options: {
    backends: { type: 'string' },
    threads: { type: 'string', default: '1,2' },
    configs: { type: 'string', default: 'emoji32' },
    reps: { type: 'string', default: '3' },
    seconds: { type: 'string', default: '6' },
    warmup: { type: 'string', default: '2' },
    'min-steps': { type: 'string', default: '3' },
    'max-steps': { type: 'string', default: '30' },
    'no-torch': { type: 'boolean', default: false },
    'no-profile': { type: 'boolean', default: false },
    out: { type: 'string', default: join(HERE, 'results', 'train.json') },
  },
  strict: true,
})

function positive(name: string, value: string): number {
  const n = Number(value)
  if (!Number.isInteger(n) || n < 0) throw new Error(`--${name} must be a whole number, got '${value}'`)
  return n
}

/** Default backends: wasm, plus whichever faster ones can run here (no Dawn probe without a GPU device). */
async function defaultBackends(): Promise<string[]> {
  const found: string[] = []
  try {
    await import('@tensorflow/tfjs-node' as string)
    found.push('tensorflow')
  } catch {
    // not installed
  }
  if (await gpuDeviceVisible()) found.push('webgpu')
  // The PyTorch worker (`--backend torch`) where Debian's python3-torch is installed.
  if (torchAvailable()) found.unshift('torch')
  return [...found, 'wasm']
}

const configs = options.configs.split(',').map((name) => loadConfig(name))
const backends = options.backends === undefined ? await defaultBackends() : options.backends.split(',')
const threadCounts = [...new Set(options.threads.split(',').map((t) => positive('threads', t)))]
const reps = Math.max(1, positive('reps', options.reps))
const timing = {
  seconds: Number(options.seconds),
  warmup: positive('warmup', options.warmup),
  minSteps: Math.max(1, positive('min-steps', options['min-steps'])),
  maxSteps: positive('max-steps', options['max-steps']),
}
const withTorch = !options['no-torch'] && torchAvailable()
if (!options['no-torch'] && !withTorch)
  console.error(
    `PyTorch reference skipped: /usr/bin/python3 cannot import torch (apt-get install python3-torch)`,
  )

const measurements: (Measurement & { rep: number })[] = []
const references: (Reference & { rep: number })[] = []
const unavailable: { backend: string; reason: string }[] = []
const loads: { rep: number; loadAverage1mStart: number; loadAverage1mEnd: number }[] = []
const workDir = mkdtempSync(join(tmpdir(), 'coop-bench-'))

/** Which variants a backend runs: wasm once per thread count, the others on one thread. */
function variants(backend: string): number[] {
  return backend === 'wasm' ? threadCounts : [1]
}

const available = new Set<string>()
for (const backend of backends) {
  try {
    await initBackend(backend)
    available.add(backend)
  } catch (error) {
    if (!(error instanceof BackendError)) throw error
    unavailable.push({ backend, reason: error.message })
    console.error(`${backend}: unavailable (${error.message})`)
  }
}

try {
  for (let rep = 1; rep <= reps; rep++) {
    const loadStart = loadavg()[0] as number
    for (const config of configs)
      for (const phase of PHASES) {
        for (const backend of available)
          for (const threads of variants(backend)) {
            await initBackend(backend, undefined, { threads })
            const slow = SLOW_BACKENDS.has(backend)
            const result = await measure(backend, threads, config, phase, {
              ...timing,
              ...(slow ? { warmup: 0, minSteps: 1, maxSteps: 1 } : {}),
              block: backend === 'webgpu' ? GPU_BLOCK_STEPS : 1,
            })
            measurements.push({ ...result, rep })
            console.error(
              `rep ${rep} ${backend} x${threads} ${config.name} ${phase}: ${result.imgPerSec.toFixed(1)} img/s, ${result.imgPerCpuSec.toFixed(1)} img/CPU-s, CPU/wall ${result.cpuPerWall.toFixed(2)}`,
            )
          }
        if (withTorch)
          for (const threads of [1, 2]) {
            const reference = runReference(REFERENCE_SCRIPT, config, phase, threads, workDir)
            references.push({ ...reference, rep })
            console.error(
              `rep ${rep} pytorch x${threads} ${config.name} ${phase}: ${reference.imgPerSec.toFixed(1)} img/s, ${reference.imgPerCpuSec.toFixed(1)} img/CPU-s`,
            )
          }
      }
    loads.push({ rep, loadAverage1mStart: loadStart, loadAverage1mEnd: loadavg()[0] as number })
  }
} finally {
  rmSync(workDir, { recursive: true, force: true })
}

const profiles: {
  backend: string
  config: string
  phase: Phase
  stepCpuMs: number
  outsideKernelsMs: number
  kernels: KernelShare[]
}[] = []
const profiled = configs.find((c) => c.name === 'emoji32') ?? configs[0]
if (!options['no-profile'] && available.has('wasm') && profiled !== undefined) {
  await initBackend('wasm', undefined, { threads: 1 })
  for (const phase of PHASES)
    profiles.push({
      backend: 'wasm',
      config: profiled.name,
      phase,
      ...(await profileStep(profiled, phase, timing.warmup)),
    })
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

function torchIn(rep: number, config: string, phase: Phase, threads?: number): Reference[] {
  return references.filter(
    (r) =>
      r.rep === rep &&
      r.config === config &&
      r.phase === phase &&
      (threads === undefined || r.threads === threads),
  )
}

/** Per repetition, ours / PyTorch (best of its thread counts, or a given one); the median over repetitions. */
function ratio(
  m: { backend: string; threads: number; config: string; phase: Phase },
  torchThreads?: number,
): number | null {
  const values: number[] = []
  for (let rep = 1; rep <= reps; rep++) {
    const ours = measurements.find(
      (x) =>
        x.rep === rep &&
        x.backend === m.backend &&
        x.threads === m.threads &&
        x.config === m.config &&
        x.phase === m.phase,
    )
    const theirs = torchIn(rep, m.config, m.phase, torchThreads)
    if (ours === undefined || theirs.length === 0) continue
    values.push(ours.imgPerSec / Math.max(...theirs.map((r) => r.imgPerSec)))
  }
  return values.length === 0 ? null : median(values)
}

const caseKeys = [
  ...new Map(measurements.map((m) => [`${m.backend}|${m.threads}|${m.config}|${m.phase}`, m])).values(),
]
const summary = caseKeys.map((m) => {
  const runs = measurements.filter(
    (x) => x.backend === m.backend && x.threads === m.threads && x.config === m.config && x.phase === m.phase,
  )
  return {
    backend: m.backend,
    threads: m.threads,
    config: m.config,
    phase: m.phase,
    batch: m.batch,
    imgPerSec: median(runs.map((r) => r.imgPerSec)),
    imgPerCpuSec: median(runs.map((r) => r.imgPerCpuSec)),
    cpuPerWall: median(runs.map((r) => r.cpuPerWall)),
    oursOverPytorchBest: ratio(m),
    oursOverPytorch1: ratio(m, 1),
    oursOverPytorch2: ratio(m, 2),
  }
})
const torchSummary = [
  ...new Map(references.map((r) => [`${r.config}|${r.phase}|${r.threads}`, r])).values(),
].map((r) => {
  const runs = references.filter(
    (x) => x.config === r.config && x.phase === r.phase && x.threads === r.threads,
  )
  return {
    config: r.config,
    phase: r.phase,
    threads: r.threads,
    torch: r.torch,
    imgPerSec: median(runs.map((x) => x.imgPerSec)),
    imgPerCpuSec: median(runs.map((x) => x.imgPerCpuSec)),
  }
})

function table(headers: string[], rows: string[][]): string {
  const line = (cells: string[]) => `| ${cells.join(' | ')} |`
  return [line(headers), line(headers.map(() => '---')), ...rows.map(line)].join('\n')
}

const fraction = (value: number | null) =>
  value === null ? '-' : value >= 1 ? value.toFixed(2) : `${value.toFixed(2)} (1/${(1 / value).toFixed(1)})`
const output = [
  table(
    [
      'backend',
      'threads',
      'config',
      'phase',
      'batch',
      'img/s',
      'img/CPU-s',
      'CPU/wall',
      '÷ PyTorch best',
      '÷ PyTorch 1 thr',
      '÷ PyTorch 2 thr',
    ],
    summary.map((s) => [
      s.backend,
      String(s.threads),
      s.config,
      s.phase,
      String(s.batch),
      s.imgPerSec.toFixed(1),
      s.imgPerCpuSec.toFixed(1),
      s.cpuPerWall.toFixed(2),
      fraction(s.oursOverPytorchBest),
      fraction(s.oursOverPytorch1),
      fraction(s.oursOverPytorch2),
    ]),
  ),
]
if (torchSummary.length > 0)
  output.push(
    '',
    table(
      ['PyTorch (CPU)', 'config', 'phase', 'threads', 'img/s', 'img/CPU-s'],
      torchSummary.map((r) => [
        `torch ${r.torch}`,
        r.config,
        r.phase,
        String(r.threads),
        r.imgPerSec.toFixed(1),
        r.imgPerCpuSec.toFixed(1),
      ]),
    ),
  )
output.push(
  '',
  `load average (1 min) per repetition: ${loads.map((l) => `${l.loadAverage1mStart.toFixed(1)} -> ${l.loadAverage1mEnd.toFixed(1)}`).join(', ')} on ${availableParallelism()} cores; medians over ${reps} repetition(s)`,
)
const gpuRows = summary.filter((s) => s.backend === 'webgpu')
if (gpuRows.length > 0) {
  const breakdown = gpuRows.map((s) => {
    const runs = measurements.filter(
      (m) => m.backend === 'webgpu' && m.config === s.config && m.phase === s.phase,
    )
    const pick = (key: keyof NonNullable<Measurement['webgpu']>) =>
      median(runs.map((r) => r.webgpu?.[key] ?? 0))
    return [
      s.config,
      s.phase,
      ((1000 * s.batch) / s.imgPerSec).toFixed(1),
      pick('hostCpuMs').toFixed(1),
      `${pick('dispatches').toFixed(0)}`,
      `${pick('submits').toFixed(1)} / ${pick('submitMs').toFixed(1)}`,
      `${pick('pipelineCompilations').toFixed(1)} / ${pick('pipelineCompilationMs').toFixed(1)}`,
      `${pick('bufferCreations').toFixed(0)} / ${pick('bufferCreationMs').toFixed(1)}`,
      `${pick('bindGroups').toFixed(0)} / ${pick('bindGroupMs').toFixed(1)}`,
      `${pick('bufferWrites').toFixed(0)} / ${pick('bufferWriteMs').toFixed(1)}`,
    ]
  })
  output.push(
    '',
    `WebGPU per step (${webGpuAdapterDescription() ?? 'adapter unknown'}): host CPU and the device calls it makes (count / host ms):`,
    '',
    table(
      [
        'config',
        'phase',
        'step ms',
        'host CPU ms',
        'dispatches',
        'submits',
        'pipelines compiled',
        'buffers created',
        'bind groups',
        'uniform writes',
      ],
      breakdown,
    ),
  )
}
for (const profile of profiles)
  output.push(
    '',
    `CPU time of one ${profile.config} ${profile.phase} step on ${profile.backend} (1 thread), per tfjs kernel (${profile.stepCpuMs.toFixed(1)} ms in all; ${profile.outsideKernelsMs.toFixed(1)} ms outside kernels: tape, engine, model JS):`,
    '',
    table(
      ['kernel', 'calls', 'ms', 'share'],
      profile.kernels
        .slice(0, 12)
        .map((k) => [k.kernel, k.calls.toFixed(0), k.ms.toFixed(2), `${(100 * k.share).toFixed(1)}%`]),
    ),
  )
for (const entry of unavailable) output.push('', `${entry.backend}: unavailable (${entry.reason})`)
console.log(output.join('\n'))

mkdirSync(dirname(options.out), { recursive: true })
writeFileSync(
  options.out,
  `${JSON.stringify(
    {
      date: new Date().toISOString(),
      machine: {
        cpu: cpus()[0]?.model ?? 'unknown',
        cores: availableParallelism(),
        node: process.version,
        tfjs: tf.version_core,
        wasmRelaxedSimdKernels: simdConvolutionsEnabled(),
      },
      options: { ...timing, reps, threads: threadCounts, configs: configs.map((c) => c.name) },
      loads,
      summary,
      pytorch: torchSummary,
      measurements,
      references,
      unavailable,
      profiles,
    },
    null,
    2,
  )}\n`,
)
console.error(`wrote ${options.out}`)
