// GPU training throughput: the `torch` and `webgpu` backends on `emoji32` and `gpu256`, both phases, each
// next to plain PyTorch CUDA (bench/reference/train_step.py, the same architectures and batch) run in the
// same call on the same GPU. Writes bench/results/gpu.json as
//   {"device", "date", "measurements": [{"backend", "config", "phase", "batch", "imgPerSec",
//    "pytorchCudaImgPerSec", "ratio"}]}
// (a row whose backend could not run has imgPerSec and ratio null; the reason goes to stderr).
//
// On a GPU machine without registry access (../shared/gpu/README.md):
//   ../shared/gpu/bundle.sh   then there:   bash .gpu/run.sh node bench/gpu.bench.ts
// It also copies the JSON to $OUT when that is set. About 6-8 minutes on an H100 with the defaults;
// --backends / --configs split it into shorter calls.
//
//   --cpu-smoke   runs every step of the above on this CPU (torch on the CPU, PyTorch reference on the CPU,
//                 batch 2, one timed step per case) and writes to a temporary file, never to gpu.json: it
//                 checks the script end to end before the one GPU call, and its figures mean nothing. gpu256
//                 makes it slow (~15 min on a loaded 2-core machine); where a CPU WebGPU adapter
//                 (SwiftShader) is installed, add --backends torch, or webgpu will take hours on gpu256.
import { execFileSync } from 'node:child_process'
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { availableParallelism, tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { loadConfig } from '../configs/index.ts'
import type { CoopConfig } from '../configs/index.ts'
import { createAutoencoder } from '../trainer/autoencoder.ts'
import { initBackend } from '../trainer/backend.ts'
import type { ImageDataset } from '../trainer/data.ts'
import { createTrainerSession } from '../trainer/session.ts'
import { probeTorch } from '../trainer/torch/probe.ts'

type Phase = 'autoencoder' | 'unet'

const HERE = dirname(fileURLToPath(import.meta.url))
const REFERENCE_SCRIPT = join(HERE, 'reference', 'train_step.py')
const PHASES: Phase[] = ['autoencoder', 'unet']
/** Distinct images for the batches; throughput does not depend on pixel values. */
const SYNTHETIC_IMAGES = 96
/** --cpu-smoke: enough for batches of 2; encoding 96 images at 256 px for the U-Net phase takes minutes on a CPU. */
const SMOKE_IMAGES = 8
/** Untimed steps first: cuDNN autotuning (the worker enables it), allocator growth, shader compilation. */
const WARMUP_STEPS = 3
const MIN_TIMED_STEPS = 2
const MAX_TIMED_STEPS = 2000
/** --cpu-smoke runs each path once: gpu256 steps take seconds each on a CPU, and the figures mean nothing. */
const SMOKE_STEPS = { warmup: 1, timed: 1 }

const { values: options } = parseArgs({
  options: {
    backends: { type: 'string', default: 'torch,webgpu' },
    configs: { type: 'string', default: 'emoji32,gpu256' },
    seconds: { type: 'string', default: '10' },
    out: { type: 'string' },
    'cpu-smoke': { type: 'boolean', default: false },
  },
  strict: true,
})
const smoke = options['cpu-smoke']
const secondsPerCase = smoke ? 1 : Number(options.seconds)
const outPath =
  options.out ??
  (smoke
    ? join(mkdtempSync(join(tmpdir(), 'coop-gpu-smoke-')), 'gpu.json')
    : join(HERE, 'results', 'gpu.json'))
if (smoke) {
  // The worker and the reference compute on this CPU, one thread each (the machine is shared).
  process.env.COOP_TORCH_DEVICE = 'cpu'
  process.env.COOP_TORCH_THREADS = '1'
}

function configFor(name: string): CoopConfig {
  if (!smoke) return loadConfig(name)
  return loadConfig(name, { 'autoencoder.batchSize': 2, 'unet.batchSize': 2, 'training.evalBatch': 2 })
}

/** Byte-exact synthetic pixels (as decoded images are), so the worker gets them as bytes like real data. */
function syntheticDataset(config: CoopConfig): ImageDataset {
  const size = config.image.size
  const images = smoke ? SMOKE_IMAGES : SYNTHETIC_IMAGES
  const pixels = new Float32Array(images * size * size * 3)
  for (let i = 0; i < pixels.length; i++) {
    const value = 0.9 * Math.sin(i * 0.37 + Math.floor(i / (size * 3)) * 0.11)
    pixels[i] = Math.round((value + 1) * 127.5) / 127.5 - 1
  }
  const classCount = Math.max(1, config.classes.length)
  return {
    items: Array.from({ length: images }, (_, i) => ({
      path: `synthetic/${i}.png`,
      sha256: `sha256:${i.toString(16).padStart(64, '0')}`,
      label: config.classes.length === 0 ? -1 : i % classCount,
    })),
    classes: config.classes,
    pixels,
    size,
    skipped: [],
    notAllowed: 0,
    optedOut: [],
  }
}

function batchOf(config: CoopConfig, phase: Phase): number {
  return phase === 'unet' ? config.unet.batchSize : config.autoencoder.batchSize
}

/** Images per second over one trainSteps(n) call (one host sync at its end), after warm-up and a calibration step. */
async function measure(config: CoopConfig, phase: Phase): Promise<number> {
  const dataset = syntheticDataset(config)
  const store = createAutoencoder(config, 1)
  const autoencoder = await store.read()
  store.dispose()
  const session = await createTrainerSession({ config, phase, dataset, seed: 1, autoencoder })
  try {
    await session.trainSteps(smoke ? SMOKE_STEPS.warmup : WARMUP_STEPS)
    let started = performance.now()
    await session.trainSteps(1)
    const stepSeconds = (performance.now() - started) / 1000
    const steps = smoke
      ? SMOKE_STEPS.timed
      : Math.max(MIN_TIMED_STEPS, Math.min(MAX_TIMED_STEPS, Math.round(secondsPerCase / stepSeconds)))
    started = performance.now()
    const { lossMean } = await session.trainSteps(steps)
    const seconds = (performance.now() - started) / 1000
    if (!Number.isFinite(lossMean)) throw new Error(`loss ${lossMean}`)
    return (steps * batchOf(config, phase)) / seconds
  } finally {
    session.dispose()
  }
}

function gpuName(): string {
  if (smoke) return 'cpu (--cpu-smoke: not a GPU figure)'
  try {
    const name = execFileSync('nvidia-smi', ['--query-gpu=name', '--format=csv,noheader'], {
      encoding: 'utf8',
    })
    return name.trim().split('\n')[0] ?? 'unknown'
  } catch {
    return 'unknown (nvidia-smi failed)'
  }
}

async function referencePython(): Promise<string> {
  const found = (await probeTorch()).find((r) => 'runtime' in r)
  if (found === undefined) throw new Error('no python3 with torch for the PyTorch reference')
  return found.python
}

function runReference(python: string, config: CoopConfig, phase: Phase, workDir: string): number {
  const configPath = join(workDir, `${config.name}.json`)
  writeFileSync(configPath, JSON.stringify(config))
  const args = ['-B', REFERENCE_SCRIPT, '--config', configPath, '--phase', phase]
  if (smoke)
    args.push('--steps', String(SMOKE_STEPS.timed), '--warmup', String(SMOKE_STEPS.warmup), '--device', 'cpu')
  else args.push('--seconds', String(secondsPerCase), '--device', 'cuda')
  args.push('--threads', String(smoke ? 1 : availableParallelism()))
  const output = execFileSync(python, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] })
  return (JSON.parse(output.trim().split('\n').pop() ?? '') as { imgPerSec: number }).imgPerSec
}

interface Row {
  backend: string
  config: string
  phase: Phase
  batch: number
  imgPerSec: number | null
  pytorchCudaImgPerSec: number | null
  ratio: number | null
}

const configs = options.configs.split(',').map(configFor)
const backends = options.backends.split(',')
const workDir = mkdtempSync(join(tmpdir(), 'coop-gpu-bench-'))
const reference = new Map<string, number | null>()
try {
  const python = await referencePython()
  for (const config of configs)
    for (const phase of PHASES) {
      try {
        const value = runReference(python, config, phase, workDir)
        reference.set(`${config.name}/${phase}`, value)
        console.error(`pytorch ${config.name} ${phase}: ${value.toFixed(1)} img/s`)
      } catch (error) {
        reference.set(`${config.name}/${phase}`, null)
        console.error(`pytorch ${config.name} ${phase}: failed (${(error as Error).message.split('\n')[0]})`)
      }
    }
} finally {
  rmSync(workDir, { recursive: true, force: true })
}

const rows: Row[] = []
for (const backend of backends) {
  let unavailable: string | undefined
  try {
    const choice = await initBackend(backend)
    if (backend === 'torch' && !smoke && choice.torch?.device !== 'cuda')
      unavailable = `torch computes on ${choice.torch?.device}, not CUDA`
  } catch (error) {
    unavailable = (error as Error).message
  }
  for (const config of configs)
    for (const phase of PHASES) {
      const pytorch = reference.get(`${config.name}/${phase}`) ?? null
      let imgPerSec: number | null = null
      if (unavailable === undefined) {
        try {
          imgPerSec = await measure(config, phase)
        } catch (error) {
          console.error(
            `${backend} ${config.name} ${phase}: failed (${(error as Error).message.split('\n')[0]})`,
          )
        }
      } else console.error(`${backend} ${config.name} ${phase}: unavailable (${unavailable})`)
      const ratio = imgPerSec !== null && pytorch !== null ? imgPerSec / pytorch : null
      rows.push({
        backend,
        config: config.name,
        phase,
        batch: batchOf(config, phase),
        imgPerSec,
        pytorchCudaImgPerSec: pytorch,
        ratio,
      })
      if (imgPerSec !== null)
        console.error(`${backend} ${config.name} ${phase}: ${imgPerSec.toFixed(1)} img/s`)
    }
}

const result = { device: gpuName(), date: new Date().toISOString(), measurements: rows }
const cell = (value: number | null, digits: number) => (value === null ? '-' : value.toFixed(digits))
console.log(
  [
    result.device,
    '',
    '| backend | config | phase | batch | img/s | PyTorch CUDA img/s | ratio |',
    '| --- | --- | --- | --- | --- | --- | --- |',
    ...rows.map(
      (r) =>
        `| ${r.backend} | ${r.config} | ${r.phase} | ${r.batch} | ${cell(r.imgPerSec, 1)} | ${cell(r.pytorchCudaImgPerSec, 1)} | ${cell(r.ratio, 3)} |`,
    ),
  ].join('\n'),
)
mkdirSync(dirname(outPath), { recursive: true })
writeFileSync(outPath, `${JSON.stringify(result, null, 2)}\n`)
console.error(`wrote ${outPath}`)
if (process.env.OUT !== undefined && process.env.OUT !== '') {
  copyFileSync(outPath, join(process.env.OUT, smoke ? 'gpu-smoke.json' : 'gpu.json'))
  console.error(`copied to ${join(process.env.OUT, smoke ? 'gpu-smoke.json' : 'gpu.json')}`)
}
