import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { loadConfig } from '../../../configs/index.ts'
import type { CollectedCheckpoint } from '../../../node/demo/collect.ts'
import { gridWorkerHelps, renderGridsInWorker } from '../../../node/demo/grids.ts'

function checkpoint(round: number): CollectedCheckpoint {
  return { id: `unet-${round}`, phase: 'unet', round, parentId: 'parent' } as unknown as CollectedCheckpoint
}

describe('demo grids on a second thread', () => {
  const dirs: string[] = []
  afterAll(async () => {
    for (const dir of dirs) await rm(dir, { recursive: true, force: true })
  })

  it('uses a worker only where it adds a core: a CPU backend, two cores, two grids', () => {
    expect(gridWorkerHelps('wasm', 23, 2)).toBe(true)
    expect(gridWorkerHelps('cpu', 2, 16)).toBe(true)
    expect(gridWorkerHelps('wasm', 1, 2)).toBe(false)
    expect(gridWorkerHelps('wasm', 23, 1)).toBe(false)
    // GPU backends sample on the device: a second CPU thread adds nothing.
    expect(gridWorkerHelps('webgpu', 23, 16)).toBe(false)
    expect(gridWorkerHelps('torch', 23, 16)).toBe(false)
  })

  it('a worker that cannot start its evaluator reports why and leaves every grid to the caller', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'coop-grids-'))
    dirs.push(dir)
    const queue = [checkpoint(4), checkpoint(5), checkpoint(6)]
    const results: string[] = []
    const failure = await renderGridsInWorker({
      data: {
        config: loadConfig('tiny'),
        dataDir: dir,
        // initBackend refuses it (UNKNOWN_BACKEND) before any grid is taken.
        backend: 'no-such-backend',
        checkpoints: queue.slice(),
        rows: ['flags'],
      },
      queue,
      outPath: (c) => join(dir, `${c.round}.png`),
      onResult: async (c) => {
        results.push(c.id)
      },
    })
    expect(failure).toBeInstanceOf(Error)
    expect(failure?.message).toMatch(/grid worker/)
    expect(results).toEqual([])
    expect(queue.map((c) => c.round)).toEqual([4, 5, 6])
  }, 60_000)

  it('a grid the worker was given but could not render goes back to the queue', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'coop-grids-'))
    dirs.push(dir)
    // The worker's evaluator starts (sampling never reads the image folder), but the checkpoint
    // it is handed has no weights on disk: rendering fails mid-job.
    const queue = [checkpoint(7)]
    const failure = await renderGridsInWorker({
      data: {
        config: loadConfig('tiny'),
        dataDir: dir,
        backend: 'wasm',
        checkpoints: queue.slice(),
        rows: ['flags'],
      },
      queue,
      outPath: (c) => join(dir, `${c.round}.png`),
      onResult: async () => {},
    })
    expect(failure).toBeInstanceOf(Error)
    expect(queue.map((c) => c.round)).toEqual([7])
  }, 60_000)
})
