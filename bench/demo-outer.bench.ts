// The demo's outer optimiser, measured in the demo's own setting (issue 10): 4 peers holding whole
// categories as `coop demo` splits them (node/demo/split.ts), 120 images per category, emoji32,
// int8 deltas, 25 local steps per round, in one process with no network (the nodes' trainer
// session, codec, aggregation and outer step). Every variant trains the same rounds from the same
// seeds, so variants differ only by the outer optimiser. The figure is the sample quality
// (trainer/quality) of what the demo samples from: the mean of the last --window rounds' weights
// (node/demo/evaluate.ts); the last round's raw weights are scored too.
//
// The autoencoder is trained once, centrally, on the pooled images (--autoencoder-steps), and
// shared by every run: the benchmark compares U-Net phases.
//
// Run: npm run bench:demo-outer [-- --variants 0.7/0.9,0.7/0.8 --seeds 0,1 --rounds 24]
// (each run: rounds x 4 peers x 25 steps; ~10 minutes per run on 2 idle cores).
// The model config is the demo's (DEFAULT_RUN: emoji32 with v-prediction on the cosine schedule);
// `--set key=value` (repeatable) changes it for every run, as `coop demo --set` does;
// `--score-at 24,32` also scores the averaged model at those rounds; `--backend torch` trains (and
// samples) in the PyTorch worker, on CUDA where there is one.
import { mkdir, writeFile } from 'node:fs/promises'
import { cpus, loadavg } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { loadConfig } from '../configs/index.ts'
import { parseOverride } from '../node/cli/args.ts'
import { meanWeights } from '../node/demo/evaluate.ts'
import { splitByCategory } from '../node/demo/split.ts'
import { pseudoGradient } from '../node/round/tensors.ts'
import { ensureTwemoji, subsetDataset } from '../node/simulate/data.ts'
import { aggregateDeltas, outerStep } from '../protocol/aggregation.ts'
import type { NamedTensor } from '../protocol/compression.ts'
import { compressDelta, decompressDelta, layoutOf, parseCodec } from '../protocol/compression.ts'
import { sha256Digest } from '../protocol/digest.ts'
import { decodeSafetensors, encodeSafetensors } from '../protocol/safetensors.ts'
import { initBackend } from '../trainer/backend.ts'
import { loadImageFolder } from '../trainer/data.ts'
import { loadQualityModel, scoreModel } from '../trainer/quality/index.ts'
import { Rng } from '../trainer/rng.ts'
import { createTrainerSession } from '../trainer/session.ts'
import { DEFAULT_RUN, QUALITY_SEED, SAMPLE_GUIDANCE, SAMPLE_STEPS } from '../node/demo/constants.ts'

const { values } = parseArgs({
  args: process.argv.slice(2),
  strict: true,
  options: {
    variants: { type: 'string', default: '0.7/0.9,0.7/0.8' },
    seeds: { type: 'string', default: '0,1' },
    rounds: { type: 'string', default: '24' },
    window: { type: 'string', default: '8' },
    'per-class': { type: 'string', default: '32' },
    'autoencoder-steps': { type: 'string', default: '600' },
    threads: { type: 'string', default: String(Math.min(2, cpus().length)) },
    backend: { type: 'string', default: 'wasm' },
    set: { type: 'string', multiple: true },
    label: { type: 'string' },
    'score-at': { type: 'string', default: '' },
    out: { type: 'string', default: join(import.meta.dirname, 'results', 'demo-outer.json') },
  },
})

const PEERS = 4
const INNER_STEPS = DEFAULT_RUN.innerSteps
const PER_CATEGORY = DEFAULT_RUN.imagesPerCategory
const CODEC = parseCodec('int8')
const rounds = Number(values.rounds)
const window = Number(values.window)
const perClass = Number(values['per-class'])
const seeds = values.seeds.split(',').map(Number)
const variants = values.variants.split(',').map((text) => {
  const [lr, momentum] = text.split('/').map(Number)
  if (!(Number.isFinite(lr) && Number.isFinite(momentum)))
    throw new Error(`--variants: expected lr/momentum pairs, got '${text}'`)
  return { outerLr: lr as number, outerMomentum: momentum as number }
})
const scoreAt = values['score-at']
  .split(',')
  .filter((text) => text !== '')
  .map(Number)
if (!(rounds >= 1 && window >= 1 && window <= rounds && perClass >= 1))
  throw new Error('--rounds, --window (at most --rounds) and --per-class must be positive')
if (!scoreAt.every((r) => Number.isInteger(r) && r >= 1 && r < rounds))
  throw new Error('--score-at: rounds before the last one, e.g. 24,32')
// The demo's own config (emoji32 with its overrides), then --set on top.
const overrides = {
  ...DEFAULT_RUN.configOverrides,
  ...Object.fromEntries((values.set ?? []).map(parseOverride)),
}

const backend = await initBackend(values.backend, undefined, { threads: Number(values.threads) })
const config = loadConfig(DEFAULT_RUN.config, overrides)
const all = await loadImageFolder({ dir: (await ensureTwemoji()).dir, size: config.image.size })

// 120 images per category, a seeded draw; categories go whole to peers as the demo gives them.
const rng = new Rng(2026)
const byCategory = all.classes.map((_, label) => {
  const indices = all.items.flatMap((item, i) => (item.label === label ? [i] : []))
  for (let i = indices.length - 1; i > 0; i--) {
    const j = rng.nextUint32() % (i + 1)
    ;[indices[i], indices[j]] = [indices[j] as number, indices[i] as number]
  }
  return indices.slice(0, PER_CATEGORY)
})
const shares = splitByCategory(
  all.classes.map((category, label) => ({
    category,
    files: (byCategory[label] as number[]).map(String),
  })),
  PEERS,
  { minImages: 1 },
)
const peerIndices = shares.map((share) =>
  share.categories.flatMap((category) => byCategory[all.classes.indexOf(category)] as number[]),
)
const pool = byCategory.flat()

console.log(`autoencoder: ${values['autoencoder-steps']} central steps on ${pool.length} images...`)
const aeTrainer = await createTrainerSession({
  config,
  phase: 'autoencoder',
  dataset: subsetDataset(all, pool),
  seed: 0,
})
await aeTrainer.trainSteps(Number(values['autoencoder-steps']))
const autoencoder = await aeTrainer.getEmaWeights()
aeTrainer.dispose()
const qualityModel = await loadQualityModel()

interface Figures {
  classAccuracy: number
  frechetDistance: number
}
async function score(unet: NamedTensor[]): Promise<Figures> {
  const q = await scoreModel(qualityModel, {
    config,
    autoencoder,
    unet,
    perClass,
    guidance: SAMPLE_GUIDANCE,
    steps: SAMPLE_STEPS,
    seed: QUALITY_SEED,
  })
  return { classAccuracy: q.classAccuracy, frechetDistance: q.frechetDistance }
}

async function run(outerLr: number, outerMomentum: number, seed: number) {
  const sessions = await Promise.all(
    peerIndices.map((indices, k) =>
      createTrainerSession({
        config,
        phase: 'unet',
        dataset: subsetDataset(all, indices),
        seed: seed + 1 + k,
        autoencoder,
      }),
    ),
  )
  try {
    let weights = await (sessions[0] as (typeof sessions)[number]).getWeights()
    let momentum: NamedTensor[] | undefined
    const history: NamedTensor[][] = []
    const early: ({ round: number } & Figures)[] = []
    for (let round = 1; round <= rounds; round++) {
      const contributions = []
      for (const session of sessions) {
        await session.setWeights(weights)
        const { samples } = await session.trainSteps(INNER_STEPS)
        const payload = encodeSafetensors(
          compressDelta(pseudoGradient(weights, await session.getWeights()), CODEC).entries,
        )
        contributions.push({
          digest: sha256Digest(payload),
          samples,
          delta: decompressDelta(decodeSafetensors(payload).tensors, layoutOf(weights), CODEC),
        })
      }
      const aggregated = aggregateDeltas(
        contributions,
        { kind: 'mean' },
        {
          maxSamples: INNER_STEPS * config.unet.batchSize,
        },
      )
      const next = outerStep(weights, momentum, aggregated, { lr: outerLr, momentum: outerMomentum })
      weights = next.weights
      momentum = next.momentum
      history.push(weights)
      if (history.length > window) history.shift()
      process.stdout.write(
        `\r  lr ${outerLr} momentum ${outerMomentum} seed ${seed}: round ${round}/${rounds}`,
      )
      if (scoreAt.includes(round)) {
        early.push({ round, ...(await score(meanWeights(history))) })
        console.log(`\n  round ${round}: ${JSON.stringify(early[early.length - 1])}`)
      }
    }
    process.stdout.write('\n')
    return { averaged: await score(meanWeights(history)), last: await score(weights), early }
  } finally {
    for (const session of sessions) session.dispose()
  }
}

const started = performance.now()
const rows = []
for (const { outerLr, outerMomentum } of variants)
  for (const seed of seeds) {
    const t = performance.now()
    const result = await run(outerLr, outerMomentum, seed)
    rows.push({
      label: values.label ?? null,
      overrides,
      outerLr,
      outerMomentum,
      seed,
      ...result,
      seconds: (performance.now() - t) / 1000,
    })
  }

const fmt = (x: number, digits: number) => x.toFixed(digits)
console.log(
  `\n| outer lr | momentum | seed | class acc. (mean of last ${window}) | FD | class acc. (last round) | FD |`,
)
console.log('|---|---|---|---|---|---|---|')
for (const r of rows)
  console.log(
    `| ${r.outerLr} | ${r.outerMomentum} | ${r.seed} | ${fmt(r.averaged.classAccuracy, 3)} | ${fmt(r.averaged.frechetDistance, 2)} | ${fmt(r.last.classAccuracy, 3)} | ${fmt(r.last.frechetDistance, 2)} |`,
  )
await mkdir(join(values.out, '..'), { recursive: true })
await writeFile(
  values.out,
  `${JSON.stringify(
    {
      bench: 'demo-outer',
      date: new Date().toISOString(),
      machine: { cores: cpus().length, loadavg: loadavg(), backend: backend.name },
      settings: {
        config: config.name,
        overrides,
        peers: PEERS,
        split: shares.map((s) => s.categories),
        imagesPerCategory: PER_CATEGORY,
        innerSteps: INNER_STEPS,
        compress: 'int8',
        aggregator: 'mean',
        rounds,
        window,
        autoencoderSteps: Number(values['autoencoder-steps']),
        quality: { perClass, guidance: SAMPLE_GUIDANCE, steps: SAMPLE_STEPS, seed: QUALITY_SEED },
      },
      rows,
      seconds: (performance.now() - started) / 1000,
    },
    null,
    2,
  )}\n`,
)
console.log(`wrote ${values.out}`)
process.exit(0)
