// A worker thread of the demo's outputs stage: its own tfjs wasm instance and evaluator
// (evaluate.ts), rendering and scoring the sample grids the main thread hands it one at a time,
// so the stage uses a second core once the peers have stopped. It writes the grid PNGs itself and
// sends back each grid's quality figure; the main thread keeps the caches (outputs.ts).
import { parentPort, workerData } from 'node:worker_threads'
import type { CoopConfig } from '../../configs/index.ts'
import type { CollectedCheckpoint } from './collect.ts'
import { createEvaluator } from './evaluate.ts'
import type { DemoQuality } from './evaluate.ts'

export interface GridWorkerData {
  config: CoopConfig
  dataDir: string
  backend: string
  checkpoints: CollectedCheckpoint[]
  rows: string[]
}

/** Main thread → worker: render this grid, or stop. */
export type GridJob = { type: 'grid'; id: string; outPath: string } | { type: 'stop' }

/** Worker → main thread: ready for a job (after the previous one's result), or a failure. */
export type GridWorkerMessage =
  | { type: 'ready' }
  | { type: 'result'; id: string; quality: DemoQuality }
  | { type: 'failed'; message: string }

const port = parentPort
if (port === null) throw new Error('node/demo/grid-worker.ts runs as a worker thread')
const data = workerData as GridWorkerData
const byId = new Map(data.checkpoints.map((c) => [c.id, c]))

async function main(channel: NonNullable<typeof parentPort>): Promise<void> {
  const evaluator = await createEvaluator({
    config: data.config,
    dataDir: data.dataDir,
    backend: data.backend,
    checkpoints: data.checkpoints,
  })
  const next = (): Promise<GridJob> =>
    new Promise((resolve) => channel.once('message', (job: GridJob) => resolve(job)))
  try {
    for (;;) {
      channel.postMessage({ type: 'ready' } satisfies GridWorkerMessage)
      const job = await next()
      if (job.type === 'stop') return
      const checkpoint = byId.get(job.id)
      if (checkpoint === undefined) throw new Error(`no checkpoint ${job.id}`)
      const quality = await evaluator.sampleGrid(checkpoint, job.outPath, data.rows)
      channel.postMessage({ type: 'result', id: job.id, quality } satisfies GridWorkerMessage)
    }
  } finally {
    evaluator.dispose()
  }
}

main(port).catch((error: unknown) => {
  port.postMessage({
    type: 'failed',
    message: error instanceof Error ? error.message : String(error),
  } satisfies GridWorkerMessage)
})
