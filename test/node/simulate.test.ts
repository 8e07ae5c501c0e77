// The simulator end to end on a real Twemoji subset and the tiny config: determinism of
// `coop simulate` as a real child process, and the Byzantine scenario of issue 5.
import { execFile } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { loadConfig } from '../../configs/index.ts'
import type { Aggregator } from '../../protocol/aggregation.ts'
import type { NamedTensor } from '../../protocol/compression.ts'
import { layoutTwemoji } from '../../node/cli/commands/data.ts'
import type { ByzantineSpec } from '../../node/simulate/byzantine.ts'
import type { SimulationResult } from '../../node/simulate/run.ts'
import { runSimulation } from '../../node/simulate/run.ts'
import { initBackend } from '../../trainer/backend.ts'
import type { ImageDataset } from '../../trainer/data.ts'
import { loadImageFolder } from '../../trainer/data.ts'
import { saveCheckpoint } from '../../trainer/checkpoint.ts'
import { createTrainerSession } from '../../trainer/session.ts'

const run = promisify(execFile)
const ROOT = join(import.meta.dirname, '..', '..')
const NODE = join(ROOT, 'node_modules', '.bin', 'node')
const CLI = join(ROOT, 'node', 'cli', 'main.ts')

let work: string
let dataDir: string

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'coop-simulate-'))
  dataDir = join(work, 'twemoji')
  // 24 images from each of the 9 categories: real, licensed images, small enough for CI.
  await layoutTwemoji({ out: dataDir, perCategory: 24 })
})

afterAll(() => {
  rmSync(work, { recursive: true, force: true })
})

async function simulateCli(out: string, extra: string[]): Promise<string> {
  const args = [
    CLI,
    'simulate',
    '--config',
    'tiny',
    '--data',
    dataDir,
    '--out',
    out,
    '--backend',
    'wasm',
    // One thread per run: data-parallel workers cost more than they save on tiny batches, and the
    // runs below go side by side (test/trainer/parallel.test.ts covers the worker threads).
    '--threads',
    '1',
    ...extra,
  ]
  const { stdout } = await run(NODE, args, { cwd: ROOT, env: { ...process.env, COOP_LOG_LEVEL: 'silent' } })
  return stdout
}

describe('coop simulate', () => {
  // Two CLI runs, each training, sampling and scoring samples, side by side on the two cores.
  it('gives byte-identical results.json for the same seed, with a table per round and both plots', async () => {
    const options = [
      '--peers',
      '3',
      '--rounds',
      '2',
      '--inner-steps',
      '3',
      '--split',
      'dirichlet:0.5',
      '--compress',
      'topk:0.1',
      '--autoencoder-steps',
      '20',
      '--seed',
      '3',
      // Sample quality after round 1 and after the last (4 samples per class keeps it cheap).
      '--quality-per-class',
      '4',
      '--quality-every',
      '1',
    ]
    const first = join(work, 'run-a')
    const second = join(work, 'run-b')
    const [stdout] = await Promise.all([simulateCli(first, options), simulateCli(second, options)])
    const a = readFileSync(join(first, 'results.json'))
    expect(a.equals(readFileSync(join(second, 'results.json')))).toBe(true)
    for (const plot of ['loss-vs-round.svg', 'loss-vs-bytes.svg']) {
      expect(readFileSync(join(first, plot), 'utf8')).toMatch(/^<svg[^>]*>[\s\S]*<path d="M[\s\S]*<\/svg>\n$/)
      expect(readFileSync(join(first, plot)).equals(readFileSync(join(second, plot)))).toBe(true)
    }
    const result = JSON.parse(a.toString('utf8')) as SimulationResult
    expect(result.rounds.map((r) => r.round)).toEqual([0, 1, 2])
    expect(result.autoencoder?.steps).toBe(20)
    expect(result.data.peers.reduce((n, p) => n + p.items, 0)).toBe(result.data.baselineItems)
    // Same sample-steps on both sides, and top-k at 10% sends far fewer bytes than dense per-step exchange.
    for (const row of result.rounds) expect(row.federatedSampleSteps).toBe(row.baselineSampleSteps)
    expect(result.final.bytesRatio).toBeGreaterThan(3)
    expect(stdout).toMatch(/training an autoencoder centrally for 20 steps/)
    expect(stdout).toMatch(/round\s+federated\s+baseline\s+gap %/)
    expect(stdout.split('\n').filter((line) => /^\s+[0-2]\s+\d/.test(line))).toHaveLength(3)
    // Quality of both models: numbers in range, from 4 samples of each of the 9 classes, per scored round.
    expect(result.settings.quality).toMatchObject({
      perClass: 4,
      every: 1,
      classifier: expect.stringMatching(/^sha256:/),
    })
    expect(result.settings.backend).toBe('wasm')
    expect(result.settings.seed).toBe(3)
    expect(result.final.quality).not.toBeNull()
    for (const figures of [result.final.quality?.federated, result.final.quality?.baseline]) {
      expect(figures?.samples).toBe(36)
      expect(figures?.classAccuracy).toBeGreaterThanOrEqual(0)
      expect(figures?.classAccuracy).toBeLessThanOrEqual(1)
      expect(figures?.frechetDistance).toBeGreaterThan(0)
      expect(Number.isFinite(figures?.frechetDistance)).toBe(true)
    }
    expect(result.rounds.filter((r) => r.quality !== undefined).map((r) => r.round)).toEqual([1, 2])
    expect(stdout).toMatch(
      /sample quality \(36 class-conditional samples.*federated class accuracy [0-9.]+%, Fréchet distance/,
    )
  }, 600_000)

  it('refuses a non-empty --out and bad option values with a clear code', async () => {
    const used = join(work, 'run-a')
    // Four independent refusals, each its own process: run them side by side.
    await Promise.all([
      expect(simulateCli(used, ['--rounds', '1'])).rejects.toMatchObject({
        code: 1,
        stderr: expect.stringMatching(/OUT_NOT_EMPTY/),
      }),
      expect(simulateCli(join(work, 'bad'), ['--aggregator', 'trimmed:0.7'])).rejects.toMatchObject({
        code: 2,
      }),
      expect(
        simulateCli(join(work, 'bad'), ['--peers', '4', '--byzantine', '4:signflip']),
      ).rejects.toMatchObject({ code: 2 }),
      expect(simulateCli(join(work, 'bad'), ['--no-quality', '--quality-every', '2'])).rejects.toMatchObject({
        code: 2,
      }),
    ])
    expect(existsSync(join(work, 'bad', 'results.json'))).toBe(false)
  })
})

describe('Byzantine peers on tiny: 4 peers, 1 scale:50 attacker', () => {
  let dataset: ImageDataset
  let autoencoder: NamedTensor[]

  beforeAll(async () => {
    // One thread, as the CLI runs above: worker threads cost more than they save on tiny.
    await initBackend('wasm', undefined, { threads: 1 })
    const config = loadConfig('tiny')
    dataset = await loadImageFolder({ dir: dataDir, size: config.image.size })
    const trainer = await createTrainerSession({ config, phase: 'autoencoder', dataset, seed: 0 })
    await trainer.trainSteps(40)
    autoencoder = await trainer.getWeights()
    trainer.dispose()
  })

  async function simulate(aggregator: Aggregator, byzantine?: ByzantineSpec): Promise<number> {
    const result = await runSimulation({
      config: loadConfig('tiny'),
      phase: 'unet',
      peers: 4,
      rounds: 3,
      innerSteps: 5,
      split: 'iid',
      aggregator,
      codec: { kind: 'int8' },
      ...(byzantine === undefined ? {} : { byzantine }),
      seed: 1,
      outerLr: 0.7,
      outerMomentum: 0.9,
      dataset,
      dataSource: 'twemoji subset',
      autoencoder: { kind: 'weights', weights: autoencoder, source: 'test' },
    })
    // A diverged federated model is the worst outcome: count it as infinitely bad.
    return result.final.federatedEvalLoss ?? Number.POSITIVE_INFINITY
  }

  it('mean is clearly hurt; median and trimmed mean stay within 10% of the clean run', async () => {
    const attack: ByzantineSpec = { count: 1, attack: { kind: 'scale', factor: 50 } }
    const clean = await simulate({ kind: 'mean' })
    const attackedMean = await simulate({ kind: 'mean' }, attack)
    const attackedMedian = await simulate({ kind: 'median' }, attack)
    const attackedTrimmed = await simulate({ kind: 'trimmed', fraction: 0.25 }, attack)
    expect(Number.isFinite(clean)).toBe(true)
    expect(attackedMean).toBeGreaterThan(clean * 1.5)
    expect(Math.abs(attackedMedian - clean) / clean).toBeLessThanOrEqual(0.1)
    expect(Math.abs(attackedTrimmed - clean) / clean).toBeLessThanOrEqual(0.1)
    // Four simulations in this process: over the default 120 s on a loaded machine.
  }, 300_000)

  it('records a diverged federated model instead of crashing, and keeps the baseline', async () => {
    const result = await runSimulation({
      config: loadConfig('tiny'),
      phase: 'unet',
      peers: 2,
      rounds: 3,
      innerSteps: 1,
      split: 'iid',
      aggregator: { kind: 'mean' },
      codec: { kind: 'none' },
      byzantine: { count: 1, attack: { kind: 'scale', factor: 1e38 } },
      seed: 1,
      outerLr: 0.7,
      outerMomentum: 0.9,
      dataset,
      dataSource: 'twemoji subset',
      autoencoder: { kind: 'weights', weights: autoencoder, source: 'test' },
    })
    expect(result.final.diverged?.round).toBe(1)
    expect(result.final.federatedEvalLoss).toBeNull()
    expect(result.rounds).toHaveLength(2)
    expect(Number.isFinite(result.final.baselineEvalLoss)).toBe(true)
  })

  it('coop simulate uses an autoencoder checkpoint when given one, and refuses one of another config', async () => {
    const tiny = join(work, 'ae-tiny')
    await saveCheckpoint(tiny, {
      weights: autoencoder,
      config: loadConfig('tiny'),
      metadata: { phase: 'autoencoder' },
    })
    const out = join(work, 'run-ckpt')
    // The run and the refusal are independent processes: side by side.
    const [stdout] = await Promise.all([
      simulateCli(out, [
        '--peers',
        '2',
        '--rounds',
        '1',
        '--inner-steps',
        '2',
        // What this test is about is the autoencoder; sample quality has its own test above.
        '--no-quality',
        '--autoencoder',
        tiny,
      ]),
      expect(
        simulateCli(join(work, 'run-ckpt-bad'), ['--config', 'emoji32', '--autoencoder', tiny]),
      ).rejects.toMatchObject({ code: 1, stderr: expect.stringMatching(/BAD_OPTION/) }),
    ])
    expect(stdout).toContain(`autoencoder: loaded from ${tiny}`)
    expect(stdout).not.toMatch(/training an autoencoder/)
    const result = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8')) as SimulationResult
    expect(result.autoencoder?.source).toBe(`checkpoint ${tiny}`)
  })
})
