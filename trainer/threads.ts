// The process-wide number of threads a training step may use (data-parallel wasm workers, see
// trainer/parallel/). Set once from `--threads` by whoever initialises the backend; sessions read it.
import { availableParallelism } from 'node:os'
import { DEFAULT_MAX_TRAINING_THREADS, MAX_TRAINING_THREADS } from './constants.ts'
import { TrainerError } from './errors.ts'

let configured: number | undefined

/** min(DEFAULT_MAX_TRAINING_THREADS, available cores): both cores of a 2-core machine, no oversubscription. */
export function defaultTrainingThreads(): number {
  return Math.max(1, Math.min(DEFAULT_MAX_TRAINING_THREADS, availableParallelism()))
}

export function assertThreadCount(threads: number): void {
  if (!Number.isInteger(threads) || threads < 1 || threads > MAX_TRAINING_THREADS)
    throw new TrainerError(
      'INVALID_ARGUMENT',
      `threads must be an integer from 1 to ${MAX_TRAINING_THREADS}, got ${threads}`,
    )
}

export function setTrainingThreads(threads: number | undefined): void {
  if (threads !== undefined) assertThreadCount(threads)
  configured = threads
}

export function trainingThreads(): number {
  return configured ?? defaultTrainingThreads()
}
