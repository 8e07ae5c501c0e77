// `coop train --backend torch` and `coop sample` across backends, as a user runs them (real child
// processes, real Twemoji): a torch-trained checkpoint is an ordinary checkpoint that the tfjs path
// samples, a tfjs-trained one samples on torch, and both backends draw the same images from the same
// checkpoint and seed, up to float rounding.
import { execFile } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import sharp from 'sharp'
import { beforeAll, describe, expect, it } from 'vitest'
import { TORCH_TEST_TIMEOUT_MS, torchRuntime } from './torch-helpers.ts'

const execFileAsync = promisify(execFile)
let env: NodeJS.ProcessEnv

async function coop(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await execFileAsync(process.execPath, ['node/cli/main.ts', ...args], { env })
    return { code: 0, stdout, stderr }
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string }
    return { code: e.code, stdout: e.stdout, stderr: e.stderr }
  }
}

let root: string
let data: string
type Run = Awaited<ReturnType<typeof coop>>
/** Both trainings run side by side from beforeAll: independent processes; each test checks its own. */
let torchTraining: Promise<Run>
let wasmTraining: Promise<Run>
const TRAIN = ['--config', 'tiny', '--ae-steps', '10', '--unet-steps', '10', '--seed', '2']
const SET = [
  '--set',
  'training.checkpointEvery=10',
  '--set',
  'autoencoder.batchSize=8',
  '--set',
  'unet.batchSize=8',
]

async function pixels(png: string): Promise<Buffer> {
  return sharp(png).raw().toBuffer()
}

function meanAbsoluteDifference(a: Buffer, b: Buffer): number {
  expect(a.length).toBe(b.length)
  let sum = 0
  for (let i = 0; i < a.length; i++) sum += Math.abs((a[i] as number) - (b[i] as number))
  return sum / a.length
}

beforeAll(async () => {
  const runtime = await torchRuntime()
  env = {
    ...process.env,
    COOP_LOG_LEVEL: 'warn',
    COOP_PYTHON: runtime.python,
    COOP_TORCH_DEVICE: 'cpu',
    COOP_TORCH_THREADS: '1',
  }
  root = mkdtempSync(join(tmpdir(), 'coop-torch-cli-'))
  data = join(root, 'data')
  const result = await coop([
    'data',
    'twemoji',
    '--out',
    data,
    '--per-category',
    '2',
    '--categories',
    'flags,food-drink,symbols',
  ])
  expect(result.code, result.stderr).toBe(0)
  const train = (backend: string) =>
    coop([
      'train',
      ...TRAIN,
      ...SET,
      '--data',
      data,
      '--out',
      join(root, `${backend}-run`),
      '--backend',
      backend,
    ])
  torchTraining = train('torch')
  wasmTraining = train('wasm')
}, TORCH_TEST_TIMEOUT_MS)

describe(
  'coop train --backend torch, coop sample across backends',
  { timeout: TORCH_TEST_TIMEOUT_MS },
  () => {
    it('trains on torch into the same checkpoint layout, with progress grids drawn by the worker', async () => {
      const out = join(root, 'torch-run')
      const result = await torchTraining
      expect(result.code, result.stderr).toBe(0)
      expect(result.stdout).toMatch(/backend torch/)
      expect(readdirSync(join(out, 'unet')).sort()).toEqual([
        'checkpoint.json',
        'config.json',
        'model.safetensors',
        'state.json',
        'state.safetensors',
      ])
      expect(readdirSync(join(out, 'samples')).sort()).toEqual([
        'autoencoder-0000010.png',
        'unet-0000010.png',
      ])
    })

    it('a torch-trained checkpoint samples on wasm, a wasm-trained one on torch: the same images either way', async () => {
      const tfjsRun = join(root, 'wasm-run')
      const [torchTrained, trained] = await Promise.all([torchTraining, wasmTraining])
      expect(torchTrained.code, torchTrained.stderr).toBe(0)
      expect(trained.code, trained.stderr).toBe(0)
      const checkpoints = [join(root, 'torch-run'), tfjsRun]
      // The four samplings are independent processes: side by side.
      const sample = async (checkpoint: string, backend: string, index: number): Promise<Buffer> => {
        const png = join(root, `${backend}-${index}-${checkpoint.endsWith('wasm-run') ? 'w' : 't'}.png`)
        const sampled = await coop([
          'sample',
          '--checkpoint',
          checkpoint,
          '--out',
          png,
          '--n',
          '6',
          '--steps',
          '8',
          '--seed',
          '5',
          '--backend',
          backend,
        ])
        expect(sampled.code, sampled.stderr).toBe(0)
        return await pixels(png)
      }
      const sampledGrids = await Promise.all(
        checkpoints.map((checkpoint) =>
          Promise.all(['wasm', 'torch'].map((backend, index) => sample(checkpoint, backend, index))),
        ),
      )
      for (const [i, checkpoint] of checkpoints.entries()) {
        const grids = sampledGrids[i] as Buffer[]
        const difference = meanAbsoluteDifference(grids[0] as Buffer, grids[1] as Buffer)
        console.log(`${checkpoint}: mean |wasm - torch| over the grid's bytes ${difference.toFixed(4)}`)
        // Same weights, same starting noise, deterministic DDIM: equal but for float rounding near .5 levels.
        expect(difference).toBeLessThan(0.5)
      }
      // And the bytes are not trivially equal because the grid is blank.
      const grid = await pixels(join(root, 'wasm-0-t.png'))
      expect(new Set(grid).size).toBeGreaterThan(50)
      expect(readFileSync(join(root, 'torch-run', 'unet', 'config.json'), 'utf8')).toContain('"tiny"')
    })
  },
)
