// The planted-memorization proof: the same tiny recipe (`coop train`, real child processes) run
// far past convergence on 4 Twemoji (one per class) and, as the control, on 32 (8 per class).
// The audit must flag all 4 planted images and none of the 32, and give the same answer twice.
import { execFile } from 'node:child_process'
import { mkdtemp, readFile, rename, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { layoutTwemoji } from '../../../node/cli/commands/data.ts'

const run = promisify(execFile)
const root = resolve(import.meta.dirname, '..', '..', '..')
const main = join(root, 'node', 'cli', 'main.ts')
const CLASSES = ['flags', 'food-drink', 'smileys-emotion', 'symbols']
// Small batches, no attention, no class dropout, a high U-Net learning rate: the cheapest recipe
// that reproduces 4 images on a CPU in about a minute (900 U-Net steps).
const RECIPE = [
  '--config',
  'tiny',
  '--ae-steps',
  '200',
  '--unet-steps',
  '900',
  '--set',
  'autoencoder.batchSize=4',
  '--set',
  'unet.batchSize=4',
  '--set',
  'training.evalBatch=4',
  '--set',
  'training.checkpointEvery=100000',
  '--set',
  'unet.attention=false',
  '--set',
  'unet.lr=0.004',
  '--set',
  'unet.classDropProb=0',
  '--set',
  'unet.channels=[16,32]',
  // One thread each: the two runs go side by side on the two cores, and at batch 4 a second
  // worker thread costs more than it saves (79 vs 47 CPU-s for one run).
  '--threads',
  '1',
]

interface AuditJson {
  images: { sha256: string; nearest: { l2: number }; ratio: number; flagged: boolean }[]
  summary: { images: number; flagged: number }
  thresholds: { l2: number; ratio: number; sources: string[] }
}

async function coop(args: string[]): Promise<string> {
  const { stdout } = await run(process.execPath, [main, ...args], {
    env: { ...process.env, COOP_LOG_LEVEL: 'warn' },
    maxBuffer: 16 * 1024 * 1024,
    timeout: 1_500_000,
  })
  return stdout
}

describe('memorization audit on a planted and a normal run', () => {
  let dir: string
  const audit = async (name: string, out: string) => {
    await coop([
      'audit',
      'memorization',
      '--checkpoint',
      join(dir, `${name}-run`),
      '--data',
      join(dir, name),
      '--samples-per-class',
      '4',
      '--out',
      out,
    ])
    return JSON.parse(await readFile(out, 'utf8')) as AuditJson
  }

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'coop-audit-'))
    await layoutTwemoji({ out: join(dir, 'planted'), perCategory: 1, categories: CLASSES })
    await layoutTwemoji({ out: join(dir, 'normal'), perCategory: 8, categories: CLASSES })
    // The two trainings are independent: run them side by side on the two cores.
    await Promise.all(
      ['planted', 'normal'].map((name) =>
        coop(['train', '--data', join(dir, name), '--out', join(dir, `${name}-run`), ...RECIPE]),
      ),
    )
  }, 1_800_000)

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  it('flags every image of the run trained far past convergence on 4 images', async () => {
    const report = await audit('planted', join(dir, 'planted.json'))
    expect(report.summary).toMatchObject({ images: 4, flagged: 4 })
    for (const image of report.images) {
      expect(image.nearest.l2).toBeLessThan(report.thresholds.l2)
      expect(image.ratio).toBeLessThan(report.thresholds.ratio)
    }
    expect(report.thresholds.sources.join(' ')).toContain('2301.13188')
  }, 300_000)

  it('flags none of the 32 images of the same recipe on more data', async () => {
    const report = await audit('normal', join(dir, 'normal.json'))
    expect(report.summary).toMatchObject({ images: 32, flagged: 0 })
  }, 300_000)

  it('refuses what does not fit, with one coded line: no checkpoint, classes the model lacks', async () => {
    const fail = async (args: string[]) => {
      try {
        await coop(args)
      } catch (error) {
        return error as { code: number; stderr: string }
      }
      throw new Error(`coop ${args.join(' ')} succeeded`)
    }
    const empty = await fail([
      'audit',
      'memorization',
      '--checkpoint',
      join(dir, 'planted'),
      '--data',
      join(dir, 'planted'),
    ])
    expect(empty.code).toBe(1)
    expect(empty.stderr).toMatch(/NOT_A_CHECKPOINT: .*neither provenance.json/)
    await layoutTwemoji({ out: join(dir, 'other'), perCategory: 1, categories: ['flags'] })
    await rename(join(dir, 'other', 'flags'), join(dir, 'other', 'not-a-class'))
    const mismatch = await fail([
      'audit',
      'memorization',
      '--checkpoint',
      join(dir, 'planted-run'),
      '--data',
      join(dir, 'other'),
      '--out',
      join(dir, 'x.json'),
    ])
    expect(mismatch.stderr).toContain(
      "DATA_MISMATCH: data class 'not-a-class' is not one of the model's classes",
    )
  }, 300_000)

  it('gives the same per-image results when run again', async () => {
    const first = JSON.parse(await readFile(join(dir, 'planted.json'), 'utf8')) as AuditJson
    const second = await audit('planted', join(dir, 'planted-again.json'))
    expect(second.images).toEqual(first.images)
  }, 300_000)
})
