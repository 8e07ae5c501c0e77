// Federated training against the centralized baseline (issue 5's benchmark): 8 peers, a
// category (non-IID) split, int8 deltas, emoji32's U-Net, the same number of sample-steps on
// both sides. Records the final eval-loss gap and the bytes ratio against a per-step dense fp32
// exchange (H x 4 bytes x parameters per peer per round) in bench/results/federated.json.
// Goal: gap <= 5% at > 1000x fewer bytes.
//
// The defaults (H=16, 4 rounds, 200 autoencoder steps) finish in about 20 minutes on a 2-core CPU.
// int8 sends about 1 byte per parameter per round against 4H bytes for per-step dense exchange,
// so the ratio is close to 4H: > 1000x needs H >= ~260 with int8 (or top-k); pass --inner-steps.
//
// --sweep adds one run per knob moved from the headline settings (H halved and doubled, outer
// lr 1.0, FedAvg = lr 1 without momentum, no compression, top-k 1%), so the report can say
// which knob moves the gap and which the ratio.
//
// Run: npm run bench:federated [-- --inner-steps 32 --rounds 6 --sweep --config tiny ...]
import { mkdir, writeFile } from 'node:fs/promises'
import { cpus, loadavg, totalmem } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { loadConfig } from '../configs/index.ts'
import { ensureTwemoji } from '../node/simulate/data.ts'
import type { SimulationOptions, SimulationResult } from '../node/simulate/run.ts'
import { runSimulation } from '../node/simulate/run.ts'
import { summaryLines, tableHeader, tableRow } from '../node/simulate/report.ts'
import { parseSplit } from '../node/simulate/split.ts'
import { formatTick } from '../node/report/svg-plot.ts'
import { parseAggregator } from '../protocol/aggregation.ts'
import { parseCodec } from '../protocol/compression.ts'
import { initBackend } from '../trainer/backend.ts'
import { loadImageFolder } from '../trainer/data.ts'
import { createTrainerSession } from '../trainer/session.ts'

/** Issue 5's goal for the headline run. */
const GOAL = { maxGapPercent: 5, minBytesRatio: 1000 }

const { values } = parseArgs({
  args: process.argv.slice(2),
  strict: true,
  options: {
    config: { type: 'string', default: 'emoji32' },
    peers: { type: 'string', default: '8' },
    rounds: { type: 'string', default: '4' },
    'inner-steps': { type: 'string', default: '16' },
    split: { type: 'string', default: 'category' },
    compress: { type: 'string', default: 'int8' },
    aggregator: { type: 'string', default: 'mean' },
    'outer-lr': { type: 'string', default: '0.7' },
    'outer-momentum': { type: 'string', default: '0.9' },
    'autoencoder-steps': { type: 'string', default: '200' },
    seed: { type: 'string', default: '0' },
    backend: { type: 'string', default: 'auto' },
    data: { type: 'string' },
    sweep: { type: 'boolean', default: false },
    out: { type: 'string', default: join(import.meta.dirname, 'results', 'federated.json') },
  },
})

const config = loadConfig(values.config)
const backend = await initBackend(values.backend)
const dataDir = values.data ?? (await ensureTwemoji()).dir
const dataset = await loadImageFolder({ dir: dataDir, size: config.image.size })
const seed = Number(values.seed)
const autoencoderSteps = Number(values['autoencoder-steps'])

// One autoencoder for every run, trained once centrally on all images (held-out ones included:
// both the federated model and the baseline see latents from the same encoder, so the comparison
// stays fair while the sweep does not pay for pretraining once per run).
process.stdout.write(
  `backend ${backend.name}, ${dataset.items.length} images, ${cpus().length} CPUs; training the autoencoder for ${autoencoderSteps} steps\n`,
)
const aeStarted = performance.now()
const aeSession = await createTrainerSession({ config, phase: 'autoencoder', dataset, seed })
await aeSession.trainSteps(autoencoderSteps)
const autoencoder = await aeSession.getWeights()
const autoencoderEvalLoss = await aeSession.evalLoss()
aeSession.dispose()
const aeSeconds = (performance.now() - aeStarted) / 1000
process.stdout.write(
  `autoencoder: eval reconstruction loss ${autoencoderEvalLoss.toPrecision(4)} after ${aeSeconds.toFixed(0)} s\n`,
)

const headline: SimulationOptions = {
  config,
  phase: 'unet',
  peers: Number(values.peers),
  rounds: Number(values.rounds),
  innerSteps: Number(values['inner-steps']),
  split: parseSplit(values.split),
  aggregator: parseAggregator(values.aggregator),
  codec: parseCodec(values.compress),
  seed,
  outerLr: Number(values['outer-lr']),
  outerMomentum: Number(values['outer-momentum']),
  dataset,
  dataSource: values.data ?? 'twemoji',
  autoencoder: {
    kind: 'weights',
    weights: autoencoder,
    source: `trained centrally for ${autoencoderSteps} steps by the benchmark`,
  },
}

const variants: { knob: string; options: SimulationOptions }[] = [{ knob: 'headline', options: headline }]
if (values.sweep) {
  const h = headline.innerSteps
  variants.push(
    {
      knob: `H=${Math.max(1, Math.round(h / 2))}`,
      options: { ...headline, innerSteps: Math.max(1, Math.round(h / 2)), rounds: headline.rounds * 2 },
    },
    {
      knob: `H=${h * 2}`,
      options: { ...headline, innerSteps: h * 2, rounds: Math.max(1, Math.round(headline.rounds / 2)) },
    },
    { knob: 'outer lr 1.0', options: { ...headline, outerLr: 1 } },
    { knob: 'FedAvg (lr 1, no momentum)', options: { ...headline, outerLr: 1, outerMomentum: 0 } },
    { knob: 'compress none', options: { ...headline, codec: { kind: 'none' } } },
    { knob: 'compress topk:0.01', options: { ...headline, codec: { kind: 'topk', fraction: 0.01 } } },
  )
}

interface RunRecord {
  knob: string
  result: SimulationResult
  seconds: number
}
function summarise(run: RunRecord) {
  const { knob, result, seconds } = run
  return {
    knob,
    config: result.settings.config,
    peers: result.settings.peers,
    rounds: result.settings.rounds,
    innerSteps: result.settings.innerSteps,
    split: result.settings.split,
    aggregator: result.settings.aggregator,
    compress: result.settings.compress,
    outerLr: result.settings.outerLr,
    outerMomentum: result.settings.outerMomentum,
    sampleSteps: result.rounds[result.rounds.length - 1]?.baselineSampleSteps ?? 0,
    federatedEvalLoss: result.final.federatedEvalLoss,
    baselineEvalLoss: result.final.baselineEvalLoss,
    gapPercent: result.final.gapPercent,
    bytesRatio: result.final.bytesRatio,
    bytesPerPeerPerRound: result.rounds[1]?.bytesPerPeer ?? 0,
    parameters: result.parameters,
    seconds: Math.round(seconds),
    perRound: result.rounds.map((r) => ({
      round: r.round,
      federated: r.federatedEvalLoss,
      baseline: r.baselineEvalLoss,
      gapPercent: r.gapPercent,
    })),
  }
}

/** Written after every run, so an interrupted sweep still leaves its finished runs. */
async function writeReport(runs: RunRecord[], complete: boolean): Promise<void> {
  const rows = runs.map(summarise)
  const head = rows[0] as ReturnType<typeof summarise>
  const met =
    head.gapPercent !== null && head.gapPercent <= GOAL.maxGapPercent && head.bytesRatio > GOAL.minBytesRatio
  const report = {
    complete,
    benchmark: 'federated',
    date: new Date().toISOString(),
    machine: {
      cpus: cpus().length,
      cpuModel: cpus()[0]?.model ?? 'unknown',
      memoryGiB: Math.round(totalmem() / 2 ** 30),
      loadAverage1m: loadavg()[0],
      backend: backend.name,
    },
    data: { source: values.data ?? 'twemoji', images: dataset.items.length },
    autoencoder: { steps: autoencoderSteps, evalLoss: autoencoderEvalLoss, seconds: Math.round(aeSeconds) },
    goal: GOAL,
    headline: { gapPercent: head.gapPercent, bytesRatio: head.bytesRatio, met },
    runs: rows,
  }
  await mkdir(join(values.out, '..'), { recursive: true })
  await writeFile(values.out, `${JSON.stringify(report, null, 2)}\n`)
}

const runs: RunRecord[] = []
for (const { knob, options } of variants) {
  process.stdout.write(
    `\n== ${knob}: ${options.peers} peers x ${options.rounds} rounds x H=${options.innerSteps}\n${tableHeader()}\n`,
  )
  const started = performance.now()
  const result = await runSimulation(options, {
    onRound: (row, seconds) => process.stdout.write(`${tableRow(row, seconds)}\n`),
  })
  const seconds = (performance.now() - started) / 1000
  for (const line of summaryLines(result)) process.stdout.write(`${line}\n`)
  runs.push({ knob, result, seconds })
  await writeReport(runs, runs.length === variants.length)
}
process.stdout.write(`wrote ${values.out}\n`)

const rows = runs.map(summarise)

process.stdout.write('\nknob                          gap %    bytes ratio   fed loss   base loss   time s\n')
for (const row of rows)
  process.stdout.write(
    `${row.knob.padEnd(28)}  ${(row.gapPercent === null ? 'diverged' : row.gapPercent.toFixed(1)).padStart(7)}  ${`${Math.round(row.bytesRatio)}x`.padStart(12)}  ${String(row.federatedEvalLoss?.toPrecision(4) ?? '-').padStart(9)}  ${row.baselineEvalLoss.toPrecision(4).padStart(10)}  ${String(row.seconds).padStart(7)}\n`,
  )
const head = rows[0] as ReturnType<typeof summarise>
const met =
  head.gapPercent !== null && head.gapPercent <= GOAL.maxGapPercent && head.bytesRatio > GOAL.minBytesRatio
process.stdout.write(
  `\nheadline: gap ${head.gapPercent?.toFixed(2) ?? 'diverged'}% at ${Math.round(head.bytesRatio)}x fewer bytes (${formatTick(head.bytesPerPeerPerRound)}B per peer per round); goal gap <= ${GOAL.maxGapPercent}% at > ${GOAL.minBytesRatio}x: ${met ? 'met' : 'not met'}\n`,
)
