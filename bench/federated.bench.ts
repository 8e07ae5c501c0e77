// Federated training against centralized baselines (issue 10's benchmark): 8 peers, a category
// (non-IID) split, emoji32's U-Net, the same number of sample-steps on every side. Writes
// bench/results/federated.json with a `headline` (eval-loss gap, bytes ratio against a per-step
// dense fp32 exchange, and the sample-quality gap) and every run with the settings that rerun it.
//
// Two baselines train on the pooled data for the same sample-steps (node/simulate/run.ts):
//   - data-parallel: H steps per round with a batch 8x larger: what the same 8 peers would train
//     exchanging dense fp32 gradients every step, i.e. exactly the exchange the bytes ratio is
//     measured against. The headline gap is against it.
//   - sequential: 8H steps per round with the peers' batch size (8x more optimizer steps); the
//     gap to it is reported too (`gapPercentSequential`), as earlier versions of this benchmark did.
//
// --sweep adds one run per knob (see VARIANTS), so bench/README.md can say which knob moved what.
// --jobs N runs that many variants at once in child processes (the autoencoder is trained once).
// --only "knob|knob" runs the headline and only those sweep knobs.
// --quality-per-class 0 skips the sample-quality scoring (eval loss and bytes only).
//
// Run: npm run bench:federated [-- --config tiny --sweep --jobs 2 --out bench/results/federated-sweep-tiny.json]
// `--set key=value` (repeatable) changes the model config, as `coop demo --set` does.
import { execFile } from 'node:child_process'
import { mkdtemp, mkdir, readFile, rm, writeFile } from 'node:fs/promises'
import { cpus, loadavg, tmpdir, totalmem } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { parseArgs } from 'node:util'
import { loadConfig } from '../configs/index.ts'
import { parseOverride } from '../node/cli/args.ts'
import { ensureTwemoji } from '../node/simulate/data.ts'
import type { SimulationOptions, SimulationResult } from '../node/simulate/run.ts'
import { runSimulation } from '../node/simulate/run.ts'
import { qualityLine, summaryLines, tableHeader, tableRow } from '../node/simulate/report.ts'
import { formatSplit, parseSplit } from '../node/simulate/split.ts'
import { formatAggregator, parseAggregator } from '../protocol/aggregation.ts'
import { formatCodec, parseCodec } from '../protocol/compression.ts'
import { formatOuterSchedule, parseOuterSchedule } from '../protocol/outer-schedule.ts'
import { decodeSafetensors, encodeSafetensors } from '../protocol/safetensors.ts'
import { initBackend } from '../trainer/backend.ts'
import { loadImageFolder } from '../trainer/data.ts'
import { createTrainerSession } from '../trainer/session.ts'

/** Issue 10's goal for the headline run (moonshot: 5 %). */
const GOAL = { maxGapPercent: 10, minBytesRatio: 1000, maxClassAccuracyPoints: 10 }

const { values } = parseArgs({
  args: process.argv.slice(2),
  strict: true,
  options: {
    config: { type: 'string', default: 'emoji32' },
    set: { type: 'string', multiple: true },
    peers: { type: 'string', default: '8' },
    rounds: { type: 'string', default: '8' },
    'inner-steps': { type: 'string', default: '64' },
    split: { type: 'string', default: 'category' },
    compress: { type: 'string', default: 'topk:1:2bit' },
    aggregator: { type: 'string', default: 'mean' },
    'outer-lr': { type: 'string', default: '0.7' },
    'outer-momentum': { type: 'string', default: '0.9' },
    'outer-schedule': { type: 'string', default: 'constant' },
    'autoencoder-steps': { type: 'string', default: '200' },
    'quality-per-class': { type: 'string', default: '16' },
    seed: { type: 'string', default: '0' },
    backend: { type: 'string', default: 'wasm' },
    data: { type: 'string' },
    sweep: { type: 'boolean', default: false },
    sequential: { type: 'boolean', default: false },
    only: { type: 'string' },
    jobs: { type: 'string', default: '1' },
    /** Internal: run one variant (JSON) with the autoencoder in this file, write the result to --out. */
    child: { type: 'string' },
    'autoencoder-file': { type: 'string' },
    out: { type: 'string', default: join(import.meta.dirname, 'results', 'federated.json') },
  },
})

interface Variant {
  knob: string
  rounds: number
  innerSteps: number
  compress: string
  outerLr: number
  outerMomentum: number
  /** 'constant' or 'warmup:<W>,final:<f>' (the charter's rounds.outerSchedule). */
  outerSchedule: string
}

const headlineVariant: Variant = {
  knob: 'headline',
  rounds: Number(values.rounds),
  innerSteps: Number(values['inner-steps']),
  compress: values.compress,
  outerLr: Number(values['outer-lr']),
  outerMomentum: Number(values['outer-momentum']),
  outerSchedule: formatOuterSchedule(parseOuterSchedule(values['outer-schedule'])),
}

/** One knob moved from the headline per variant (plus the settings issue 5 measured). */
function sweepVariants(h: Variant): Variant[] {
  const at = (knob: string, change: Partial<Variant>): Variant => ({ ...h, ...change, knob })
  return [
    at('int8, H=16', { compress: 'int8', innerSteps: 16 }),
    at('dense 2-bit, H=16', { compress: 'topk:1:2bit', innerSteps: 16 }),
    at('int8, H=80', { compress: 'int8', innerSteps: 80 }),
    at('dense 2-bit, H=80', { compress: 'topk:1:2bit', innerSteps: 80 }),
    at('issue 5 settings (int8, 4 rounds)', { compress: 'int8', rounds: 4 }),
    at('int8', { compress: 'int8' }),
    at('no compression', { compress: 'none' }),
    at('top-k 1/64, 2-bit', { compress: 'topk:0.015625:2bit' }),
    at('top-k 1/4, 2-bit', { compress: 'topk:0.25:2bit' }),
    at('top-k 1/16, F32 values', { compress: 'topk:0.0625' }),
    at(`H=${h.innerSteps * 2}, half the rounds`, {
      innerSteps: h.innerSteps * 2,
      rounds: Math.max(1, Math.round(h.rounds / 2)),
    }),
    at(`H=${Math.max(1, h.innerSteps / 2)}, twice the rounds`, {
      innerSteps: Math.max(1, Math.round(h.innerSteps / 2)),
      rounds: h.rounds * 2,
    }),
    at(`${h.rounds * 2} rounds (longer run)`, { rounds: h.rounds * 2 }),
    at('outer lr 1.0', { outerLr: 1 }),
    at('outer lr 0.5', { outerLr: 0.5 }),
    at('outer momentum 0.8', { outerMomentum: 0.8 }),
    at('FedAvg (lr 1, no momentum)', { outerLr: 1, outerMomentum: 0 }),
    at('outer lr warm-up 1 round, decay to 0.5', { outerSchedule: 'warmup:1,final:0.5' }),
    at('outer lr decay to 0.25', { outerSchedule: 'warmup:0,final:0.25' }),
    at('outer lr 1.0, decay to 0.25', { outerLr: 1, outerSchedule: 'warmup:0,final:0.25' }),
  ]
}

const configSets = values.set ?? []
const config = loadConfig(values.config, Object.fromEntries(configSets.map(parseOverride)))
const backend = await initBackend(values.backend)
const dataDir = values.data ?? (await ensureTwemoji()).dir
const dataset = await loadImageFolder({ dir: dataDir, size: config.image.size })
const seed = Number(values.seed)
const autoencoderSteps = Number(values['autoencoder-steps'])
const qualityPerClass = Number(values['quality-per-class'])

function optionsFor(variant: Variant, autoencoder: SimulationOptions['autoencoder']): SimulationOptions {
  const schedule = parseOuterSchedule(variant.outerSchedule)
  return {
    config,
    phase: 'unet',
    peers: Number(values.peers),
    rounds: variant.rounds,
    innerSteps: variant.innerSteps,
    split: parseSplit(values.split),
    aggregator: parseAggregator(values.aggregator),
    codec: parseCodec(variant.compress),
    seed,
    outerLr: variant.outerLr,
    outerMomentum: variant.outerMomentum,
    ...(schedule === undefined ? {} : { outerSchedule: schedule }),
    dataset,
    dataSource: values.data ?? 'twemoji',
    ...(autoencoder === undefined ? {} : { autoencoder }),
    backend: backend.name,
    baseline: 'data-parallel',
    // The sequential baseline costs as much as the federated run: the headline only (and --sequential).
    ...(variant.knob === 'headline' || values.sequential ? { secondBaseline: 'sequential' as const } : {}),
    ...(qualityPerClass > 0
      ? {
          quality: {
            perClass: qualityPerClass,
            every: 0,
            guidance: config.diffusion.guidance,
            steps: 20,
            seed: 7,
          },
        }
      : {}),
  }
}

async function runVariant(
  variant: Variant,
  autoencoder: SimulationOptions['autoencoder'],
): Promise<{ result: SimulationResult; seconds: number; cpuSeconds: number }> {
  const started = performance.now()
  const cpu = process.cpuUsage()
  const result = await runSimulation(optionsFor(variant, autoencoder), {
    onRound: (row, seconds) => {
      process.stdout.write(`[${variant.knob}] ${tableRow(row, seconds)}\n`)
      const quality = qualityLine(row)
      if (quality !== undefined) process.stdout.write(`[${variant.knob}] ${quality}\n`)
    },
  })
  const used = process.cpuUsage(cpu)
  return {
    result,
    seconds: (performance.now() - started) / 1000,
    cpuSeconds: (used.user + used.system) / 1e6,
  }
}

async function loadAutoencoderFile(path: string): Promise<SimulationOptions['autoencoder']> {
  const { tensors, metadata } = decodeSafetensors(new Uint8Array(await readFile(path)))
  const weights = [...tensors.values()].map((t) => ({
    name: t.name,
    shape: [...t.shape],
    data: t.data as Float32Array,
  }))
  return { kind: 'weights', weights, source: metadata.source ?? path }
}

if (values.child !== undefined) {
  // A worker of --jobs: one variant, its result as JSON to --out.
  const variant = JSON.parse(values.child) as Variant
  const autoencoder = await loadAutoencoderFile(values['autoencoder-file'] as string)
  const run = await runVariant(variant, autoencoder)
  await writeFile(values.out, JSON.stringify({ knob: variant.knob, ...run }))
  process.exit(0)
}

// One autoencoder for every run, trained once centrally on all images: every model sees latents
// from the same encoder, so the comparison stays fair and the sweep does not pretrain per run.
const loadStart = loadavg()[0]
process.stdout.write(
  `backend ${backend.name}, ${dataset.items.length} images, ${cpus().length} CPUs, load ${loadStart?.toFixed(1)}; training the autoencoder for ${autoencoderSteps} steps\n`,
)
const aeStarted = performance.now()
const aeSession = await createTrainerSession({ config, phase: 'autoencoder', dataset, seed })
await aeSession.trainSteps(autoencoderSteps)
const autoencoderWeights = await aeSession.getWeights()
const autoencoderEvalLoss = await aeSession.evalLoss()
aeSession.dispose()
const aeSeconds = (performance.now() - aeStarted) / 1000
const aeSource = `trained centrally for ${autoencoderSteps} steps (seed ${seed}) by the benchmark`
process.stdout.write(
  `autoencoder: eval reconstruction loss ${autoencoderEvalLoss.toPrecision(4)} after ${aeSeconds.toFixed(0)} s\n`,
)
const autoencoder: SimulationOptions['autoencoder'] = {
  kind: 'weights',
  weights: autoencoderWeights,
  source: aeSource,
}

let variants: Variant[] = [headlineVariant, ...(values.sweep ? sweepVariants(headlineVariant) : [])]
if (values.only !== undefined) {
  const wanted = new Set(values.only.split('|').map((k) => k.trim()))
  variants = variants.filter((v) => v.knob === 'headline' || wanted.has(v.knob))
}

interface RunRecord {
  knob: string
  result: SimulationResult
  seconds: number
  cpuSeconds: number
}

function summarise(run: RunRecord) {
  const { knob, result, seconds, cpuSeconds } = run
  const s = result.settings
  const q = result.final.quality
  const figures = (f: { classAccuracy: number; frechetDistance: number } | null | undefined) =>
    f === null || f === undefined
      ? null
      : { classAccuracy: f.classAccuracy, frechetDistance: f.frechetDistance }
  return {
    knob,
    settings: {
      config: s.config,
      set: configSets,
      peers: s.peers,
      rounds: s.rounds,
      innerSteps: s.innerSteps,
      split: s.split,
      aggregator: s.aggregator,
      compress: s.compress,
      outerLr: s.outerLr,
      outerMomentum: s.outerMomentum,
      outerSchedule: s.outerSchedule,
      batchSize: s.batchSize,
      seed: s.seed,
      evalItems: s.evalItems,
      baseline: s.baseline,
      secondBaseline: s.secondBaseline,
      autoencoderSteps,
      quality: s.quality,
      backend: s.backend,
      data: values.data ?? 'twemoji',
      command: `npm run bench:federated -- --config ${s.config} --peers ${s.peers} --rounds ${s.rounds} --inner-steps ${s.innerSteps} --split ${s.split} --aggregator ${s.aggregator} --compress ${s.compress} --outer-lr ${s.outerLr} --outer-momentum ${s.outerMomentum} --outer-schedule ${s.outerSchedule} --autoencoder-steps ${autoencoderSteps} --quality-per-class ${qualityPerClass} --seed ${s.seed} --backend ${s.backend}${configSets.map((set) => ` --set ${set}`).join('')}`,
    },
    sampleSteps: result.rounds[result.rounds.length - 1]?.baselineSampleSteps ?? 0,
    federatedEvalLoss: result.final.federatedEvalLoss,
    baselineEvalLoss: result.final.baselineEvalLoss,
    gapPercent: result.final.gapPercent,
    sequentialBaselineEvalLoss: result.final.secondBaseline?.evalLoss ?? null,
    gapPercentSequential: result.final.secondBaseline?.gapPercent ?? null,
    bytesRatio: result.final.bytesRatio,
    bytesPerPeerPerRound: result.rounds[1]?.bytesPerPeer ?? 0,
    parameters: result.parameters,
    quality:
      q === null
        ? null
        : {
            federated: figures(q.federated),
            baseline: figures(q.baseline),
            sequentialBaseline: figures(q.secondBaseline),
          },
    seconds: Math.round(seconds),
    cpuSeconds: Math.round(cpuSeconds),
    perRound: result.rounds.map((r) => ({
      round: r.round,
      federated: r.federatedEvalLoss,
      baseline: r.baselineEvalLoss,
      sequentialBaseline: r.secondBaseline?.evalLoss ?? null,
      gapPercent: r.gapPercent,
    })),
  }
}

type Row = ReturnType<typeof summarise>

function headlineOf(head: Row) {
  const fed = head.quality?.federated ?? null
  const base = head.quality?.baseline ?? null
  const classAccuracyGapPoints =
    fed !== null && base !== null ? (base.classAccuracy - fed.classAccuracy) * 100 : null
  const met =
    head.gapPercent !== null &&
    head.gapPercent <= GOAL.maxGapPercent &&
    head.bytesRatio >= GOAL.minBytesRatio &&
    classAccuracyGapPoints !== null &&
    classAccuracyGapPoints <= GOAL.maxClassAccuracyPoints
  return {
    gapPercent: head.gapPercent,
    gapPercentSequential: head.gapPercentSequential,
    bytesRatio: head.bytesRatio,
    quality: {
      federated: fed,
      baseline: base,
      sequentialBaseline: head.quality?.sequentialBaseline ?? null,
      /** Baseline minus federated class accuracy, in percentage points. */
      classAccuracyGapPoints,
      /** Federated Fréchet distance over the baseline's (same sample count on both sides). */
      frechetRatio: fed !== null && base !== null ? fed.frechetDistance / base.frechetDistance : null,
    },
    met,
  }
}

/** Written after every run, so an interrupted sweep still leaves its finished runs. */
async function writeReport(runs: RunRecord[], complete: boolean): Promise<void> {
  const ordered = variants
    .map((v) => runs.find((r) => r.knob === v.knob))
    .filter((r): r is RunRecord => r !== undefined)
  const rows = ordered.map(summarise)
  const head = rows.find((r) => r.knob === 'headline')
  const report = {
    complete,
    benchmark: 'federated',
    date: new Date().toISOString(),
    machine: {
      cpus: cpus().length,
      cpuModel: cpus()[0]?.model ?? 'unknown',
      memoryGiB: Math.round(totalmem() / 2 ** 30),
      loadAverage1mAtStart: loadStart,
      loadAverage1mAtEnd: loadavg()[0],
      jobs: Number(values.jobs),
      backend: backend.name,
    },
    data: { source: values.data ?? 'twemoji', images: dataset.items.length },
    autoencoder: {
      steps: autoencoderSteps,
      seed,
      evalLoss: autoencoderEvalLoss,
      seconds: Math.round(aeSeconds),
    },
    goal: GOAL,
    headline: head === undefined ? null : headlineOf(head),
    runs: rows,
  }
  await mkdir(join(values.out, '..'), { recursive: true })
  await writeFile(values.out, `${JSON.stringify(report, null, 2)}\n`)
}

const runs: RunRecord[] = []
const jobs = Math.max(1, Number(values.jobs))
process.stdout.write(`${variants.length} runs, ${jobs} at a time\n${tableHeader()}\n`)
if (jobs === 1) {
  for (const variant of variants) {
    const run = await runVariant(variant, autoencoder)
    for (const line of summaryLines(run.result)) process.stdout.write(`[${variant.knob}] ${line}\n`)
    runs.push({ knob: variant.knob, ...run })
    await writeReport(runs, runs.length === variants.length)
  }
} else {
  const work = await mkdtemp(join(tmpdir(), 'bench-federated-'))
  const aeFile = join(work, 'autoencoder.safetensors')
  await writeFile(
    aeFile,
    encodeSafetensors(
      autoencoderWeights.map((t) => ({ name: t.name, dtype: 'F32' as const, shape: t.shape, data: t.data })),
      { source: aeSource },
    ),
  )
  const exec = promisify(execFile)
  let next = 0
  const worker = async () => {
    for (;;) {
      const index = next++
      if (index >= variants.length) return
      const variant = variants[index] as Variant
      const out = join(work, `run-${index}.json`)
      const args = [
        import.meta.filename,
        ...process.argv.slice(2).filter((a) => a !== '--sweep'),
        '--child',
        JSON.stringify(variant),
        '--autoencoder-file',
        aeFile,
        '--out',
        out,
      ]
      const child = exec(process.execPath, args, { maxBuffer: 64 * 1024 * 1024 })
      child.child.stdout?.on('data', (chunk: Buffer) => process.stdout.write(chunk))
      child.child.stderr?.on('data', (chunk: Buffer) => process.stderr.write(chunk))
      await child
      const run = JSON.parse(await readFile(out, 'utf8')) as RunRecord
      for (const line of summaryLines(run.result)) process.stdout.write(`[${variant.knob}] ${line}\n`)
      runs.push(run)
      await writeReport(runs, runs.length === variants.length)
    }
  }
  await Promise.all(Array.from({ length: jobs }, worker))
  await rm(work, { recursive: true, force: true })
}
process.stdout.write(`wrote ${values.out}\n`)

const rows = variants.map((v) => summarise(runs.find((r) => r.knob === v.knob) as RunRecord))
const percent = (v: number | null | undefined) => (v === null || v === undefined ? '-' : v.toFixed(1))
/** A model's class accuracy in percent, or '-' where quality was not scored (--quality-per-class 0). */
const accuracy = (f: { classAccuracy: number } | null | undefined) =>
  percent(f === null || f === undefined ? null : f.classAccuracy * 100)
process.stdout.write(
  '\nknob                                   gap % (DP)  gap % (seq)  bytes ratio  class acc fed/base  FD fed/base      CPU s\n',
)
for (const row of rows)
  process.stdout.write(
    `${row.knob.padEnd(38)} ${percent(row.gapPercent).padStart(10)}  ${percent(row.gapPercentSequential).padStart(11)}  ${`${Math.round(row.bytesRatio)}x`.padStart(11)}  ${`${accuracy(row.quality?.federated)}/${accuracy(row.quality?.baseline)}`.padStart(18)}  ${`${row.quality?.federated?.frechetDistance.toFixed(1) ?? '-'}/${row.quality?.baseline?.frechetDistance.toFixed(1) ?? '-'}`.padStart(14)}  ${String(row.cpuSeconds).padStart(8)}\n`,
  )
const head = rows.find((r) => r.knob === 'headline')
if (head !== undefined) {
  const h = headlineOf(head)
  process.stdout.write(
    `\nheadline (${formatCodec(parseCodec(head.settings.compress))}, ${formatSplit(parseSplit(head.settings.split))}, ${formatAggregator(parseAggregator(head.settings.aggregator))}): gap ${percent(h.gapPercent)}% vs data-parallel (${percent(h.gapPercentSequential)}% vs sequential) at ${Math.round(h.bytesRatio)}x fewer bytes; class accuracy gap ${percent(h.quality.classAccuracyGapPoints)} points; goal gap <= ${GOAL.maxGapPercent}% at >= ${GOAL.minBytesRatio}x within ${GOAL.maxClassAccuracyPoints} points: ${h.met ? 'met' : 'not met'}\n`,
  )
}
