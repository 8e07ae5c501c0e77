// `coop data`, `coop train` and `coop sample` as a user runs them: real child processes on
// real Twemoji files. Covers outputs, --resume reaching the same weights as an uninterrupted
// run, same-seed sampling giving the same PNG bytes, and the errors a user sees.
import { execFile } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import sharp from 'sharp'
import { beforeAll, describe, expect, it } from 'vitest'

const execFileAsync = promisify(execFile)

async function coop(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await execFileAsync(process.execPath, ['node/cli/main.ts', ...args], {
      env: { ...process.env, COOP_LOG_LEVEL: 'warn' },
    })
    return { code: 0, stdout, stderr }
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string }
    return { code: e.code, stdout: e.stdout, stderr: e.stderr }
  }
}

let root: string
let data: string
const STEPS = [
  '--ae-steps',
  '20',
  '--set',
  'training.checkpointEvery=10',
  '--set',
  'autoencoder.batchSize=8',
  '--set',
  'unet.batchSize=8',
]

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'coop-cli-'))
  data = join(root, 'data')
  const result = await coop([
    'data',
    'twemoji',
    '--out',
    data,
    '--per-category',
    '2',
    '--categories',
    'flags,food-drink,smileys-emotion',
  ])
  expect(result.code).toBe(0)
})

describe('coop data twemoji', () => {
  it('lays out <out>/<category>/<name>.png with the CC-BY attribution', () => {
    expect(readdirSync(data).sort()).toEqual([
      'LICENSE-ATTRIBUTION.txt',
      'flags',
      'food-drink',
      'smileys-emotion',
    ])
    expect(readdirSync(join(data, 'flags'))).toHaveLength(2)
    expect(readFileSync(join(data, 'LICENSE-ATTRIBUTION.txt'), 'utf8')).toContain(
      'Twemoji graphics by Twitter, Inc and other contributors, licensed under CC-BY 4.0',
    )
  })

  it('refuses an unknown category', async () => {
    const result = await coop(['data', 'twemoji', '--out', join(root, 'x'), '--categories', 'dinosaurs'])
    expect(result.code).toBe(1)
    expect(result.stderr).toMatch(/UNKNOWN_CATEGORY.*dinosaurs/)
  })
})

describe('coop train and coop sample', () => {
  const straight = () => join(root, 'straight')
  beforeAll(async () => {
    const result = await coop([
      'train',
      '--config',
      'tiny',
      '--data',
      data,
      '--out',
      straight(),
      ...STEPS,
      '--unet-steps',
      '20',
      '--seed',
      '3',
    ])
    expect(result.code, result.stderr).toBe(0)
  })

  it('writes both checkpoints, metrics.jsonl lines {phase, step, loss, imgPerSec} and progress grids', () => {
    for (const phase of ['autoencoder', 'unet'])
      expect(readdirSync(join(straight(), phase)).sort()).toEqual([
        'checkpoint.json',
        'config.json',
        'model.safetensors',
        'state.json',
        'state.safetensors',
      ])
    const lines = readFileSync(join(straight(), 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l))
    expect(lines.map((l) => `${l.phase}:${l.step}`)).toEqual([
      'autoencoder:10',
      'autoencoder:20',
      'unet:10',
      'unet:20',
    ])
    for (const line of lines) {
      expect(Number.isFinite(line.loss)).toBe(true)
      expect(line.imgPerSec).toBeGreaterThan(0)
    }
    expect(readdirSync(join(straight(), 'samples')).sort()).toEqual([
      'autoencoder-0000010.png',
      'autoencoder-0000020.png',
      'unet-0000010.png',
      'unet-0000020.png',
    ])
  })

  it('--resume after an interrupted run reaches the same weights as the uninterrupted run', async () => {
    const out = join(root, 'interrupted')
    expect(
      (
        await coop([
          'train',
          '--config',
          'tiny',
          '--data',
          data,
          '--out',
          out,
          ...STEPS,
          '--unet-steps',
          '10',
          '--seed',
          '3',
        ])
      ).code,
    ).toBe(0)
    const again = await coop([
      'train',
      '--config',
      'tiny',
      '--data',
      data,
      '--out',
      out,
      ...STEPS,
      '--unet-steps',
      '20',
      '--seed',
      '3',
    ])
    expect(again.code).toBe(1)
    expect(again.stderr).toMatch(/OUTPUT_EXISTS/)
    const resumed = await coop([
      'train',
      '--config',
      'tiny',
      '--data',
      data,
      '--out',
      out,
      ...STEPS,
      '--unet-steps',
      '20',
      '--seed',
      '3',
      '--resume',
    ])
    expect(resumed.code).toBe(0)
    expect(resumed.stdout).toMatch(/unet: 20 steps \(resumed at 10\)/)
    for (const file of [
      'unet/model.safetensors',
      'unet/state.safetensors',
      'unet/state.json',
      'autoencoder/model.safetensors',
    ])
      expect(readFileSync(join(out, file)).equals(readFileSync(join(straight(), file)))).toBe(true)
    expect(readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n')).toHaveLength(4)
    // Training the autoencoder further would change the latents the U-Net learned: refused.
    const stale = await coop([
      'train',
      '--config',
      'tiny',
      '--data',
      data,
      '--out',
      out,
      ...STEPS,
      '--ae-steps',
      '30',
      '--resume',
    ])
    expect(stale.code).toBe(1)
    expect(stale.stderr).toMatch(/RESUME_MISMATCH/)
  })

  it('the same seed gives the same PNG bytes; another seed another image', async () => {
    const a = join(root, 'a.png')
    const b = join(root, 'b.png')
    const c = join(root, 'c.png')
    const common = ['sample', '--checkpoint', straight(), '--n', '6', '--steps', '5']
    expect((await coop([...common, '--out', a, '--seed', '1'])).code).toBe(0)
    expect((await coop([...common, '--out', b, '--seed', '1'])).code).toBe(0)
    expect(
      (await coop([...common, '--out', c, '--seed', '2', '--class', 'flags', '--guidance', '1.5'])).code,
    ).toBe(0)
    expect(readFileSync(a).equals(readFileSync(b))).toBe(true)
    expect(readFileSync(a).equals(readFileSync(c))).toBe(false)
    const meta = await sharp(readFileSync(a)).metadata()
    // 6 samples, one column per class (9 classes > 6): a single row of 32px cells with 2px gaps.
    expect([meta.width, meta.height]).toEqual([6 * 32 + 7 * 2, 32 + 2 * 2])
    const unknown = await coop([...common, '--out', join(root, 'd.png'), '--class', 'dinosaurs'])
    expect(unknown.code).toBe(1)
    expect(unknown.stderr).toMatch(/UNKNOWN_CLASS/)
    // An existing grid is never overwritten without --force.
    const again = await coop([...common, '--out', a, '--seed', '2'])
    expect(again.code).toBe(1)
    expect(again.stderr).toMatch(/OUTPUT_EXISTS/)
    expect(readFileSync(a).equals(readFileSync(b))).toBe(true)
    expect((await coop([...common, '--out', a, '--seed', '2', '--force'])).code).toBe(0)
    expect(readFileSync(a).equals(readFileSync(b))).toBe(false)
  })

  it('reports bad inputs as one clear line: unknown config key, empty folder, missing checkpoint', async () => {
    const config = join(root, 'typo.json')
    writeFileSync(config, JSON.stringify({ extends: 'tiny', unet: { chanels: [8, 16] } }))
    const typo = await coop(['train', '--config', config, '--data', data, '--out', join(root, 'typo')])
    expect(typo.code).toBe(1)
    expect(typo.stderr).toMatch(/UNKNOWN_KEY: unet\.chanels/)
    const empty = join(root, 'empty')
    mkdirSync(empty)
    const noData = await coop(['train', '--config', 'tiny', '--data', empty, '--out', join(root, 'o')])
    expect(noData.code).toBe(1)
    expect(noData.stderr).toMatch(/DATA_EMPTY/)
    const noCheckpoint = await coop([
      'sample',
      '--checkpoint',
      join(root, 'none'),
      '--out',
      join(root, 'x.png'),
    ])
    expect(noCheckpoint.code).toBe(1)
    expect(noCheckpoint.stderr).toMatch(/CHECKPOINT_MISSING/)
  })
})
