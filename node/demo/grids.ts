// Renders the demo's per-round sample grids on two cores: the main thread and one worker thread
// (grid-worker.ts) take grids from the same queue until it is empty. The worker only speeds the
// stage up: if it cannot start or fails, the grid it held goes back to the queue and the main
// thread renders what is left, so a run never loses a grid to it.
import { availableParallelism } from 'node:os'
import { Worker } from 'node:worker_threads'
import type { CollectedCheckpoint } from './collect.ts'
import type { DemoQuality } from './evaluate.ts'
import type { GridJob, GridWorkerData, GridWorkerMessage } from './grid-worker.ts'

const WORKER_URL = new URL('./grid-worker.ts', import.meta.url)

/** Backends whose sampling runs on the CPU thread that calls it: a second thread is a second core. */
const CPU_BACKENDS = new Set(['wasm', 'cpu'])

/** Whether a worker thread would add a core: a CPU backend, two cores or more, two grids or more. */
export function gridWorkerHelps(backend: string, grids: number, cores = availableParallelism()): boolean {
  return CPU_BACKENDS.has(backend) && cores >= 2 && grids >= 2
}

/**
 * Runs a worker that takes grids from `queue` (shared with the caller, who takes from the same
 * array) until it is empty, calling `onResult` for each. Resolves when the worker has stopped,
 * with the error that stopped it early if any; never rejects.
 */
export function renderGridsInWorker(options: {
  data: GridWorkerData
  queue: CollectedCheckpoint[]
  outPath: (checkpoint: CollectedCheckpoint) => string
  onResult: (checkpoint: CollectedCheckpoint, quality: DemoQuality) => Promise<void>
}): Promise<Error | undefined> {
  const { queue, outPath, onResult } = options
  return new Promise((resolve) => {
    let worker: Worker
    try {
      worker = new Worker(WORKER_URL, { workerData: options.data })
    } catch (error) {
      resolve(error as Error)
      return
    }
    let held: CollectedCheckpoint | undefined
    let failure: Error | undefined
    let results = Promise.resolve()
    const fail = (error: Error): void => {
      failure ??= error
      // The grid it held is not lost: the caller's loop renders it.
      if (held !== undefined) queue.unshift(held)
      held = undefined
    }
    worker.on('message', (message: GridWorkerMessage) => {
      if (message.type === 'ready') {
        held = queue.shift()
        const job: GridJob =
          held === undefined ? { type: 'stop' } : { type: 'grid', id: held.id, outPath: outPath(held) }
        worker.postMessage(job)
      } else if (message.type === 'result') {
        const done = held
        held = undefined
        if (done === undefined || done.id !== message.id) {
          fail(new Error(`grid worker answered for ${message.id}, which it was not given`))
          void worker.terminate()
          return
        }
        results = results
          .then(() => onResult(done, message.quality))
          .catch((error: unknown) => fail(error as Error))
      } else {
        fail(new Error(`grid worker: ${message.message}`))
        void worker.terminate()
      }
    })
    worker.on('error', (error) => fail(error))
    worker.on('exit', (code) => {
      if (code !== 0 && failure === undefined) fail(new Error(`grid worker exited with code ${code}`))
      else if (held !== undefined) fail(new Error('grid worker stopped holding a grid'))
      void results.then(() => resolve(failure))
    })
  })
}
