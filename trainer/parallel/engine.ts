// Who computes a step's gradients. On wasm with more than one thread, a batch is cut into as many
// contiguous shards as threads: the main thread computes the first, worker threads (each with its own
// wasm instance, trainer/parallel/worker.ts) the others, and the per-shard gradients are added in shard
// order before Adam. Every other backend computes the whole batch in one pass on the main thread.
import * as tf from '@tensorflow/tfjs-core'
import type { Logger } from 'pino'
import type { BatchShard } from '../batches.ts'
import { TrainerError } from '../errors.ts'
import { shardGradients, sumShards } from '../step.ts'
import type { ShardGradients, StepModel } from '../step.ts'
import { assertThreadCount, trainingThreads } from '../threads.ts'
import { trainingPool } from './pool.ts'
import type { PoolWorker, ShardReply } from './pool.ts'

/** One shard's computation: which thread (0 = the main thread), how many rows, when, and its CPU time. */
export interface ShardTiming {
  thread: number
  rows: number
  /** Wall-clock interval in epoch milliseconds (comparable across threads). */
  startMs: number
  endMs: number
  /**
   * CPU time of that thread over the interval, from process.threadCpuUsage(): Linux advances a thread's
   * clock at scheduler ticks and switches (every 4 ms here), so a shorter shard reads 0 or a whole tick;
   * meaningful summed over many steps, not per shard.
   */
  cpuMs: number
}

export interface GradientEngine {
  /** Threads computing each step (1 = the main thread alone). */
  readonly threads: number
  /** Shards a batch is cut into: fixed by the thread count, never by timing, so results are reproducible. */
  readonly shards: number
  compute(
    shards: BatchShard[],
    batchSize: number,
  ): Promise<{ result: ShardGradients; timings: ShardTiming[] }>
  dispose(): void
}

function epochNow(): number {
  return performance.timeOrigin + performance.now()
}

function threadCpuMs(): number {
  const usage = process.threadCpuUsage()
  return (usage.user + usage.system) / 1000
}

function computeLocally(
  model: StepModel,
  shard: BatchShard,
  batchSize: number,
): { result: ShardGradients; timing: ShardTiming } {
  const startMs = epochNow()
  const cpuStart = threadCpuMs()
  const result = shardGradients(model, shard, batchSize)
  return {
    result,
    timing: { thread: 0, rows: shard.count, startMs, endMs: epochNow(), cpuMs: threadCpuMs() - cpuStart },
  }
}

class LocalEngine implements GradientEngine {
  readonly threads = 1
  readonly shards = 1
  private readonly model: StepModel
  constructor(model: StepModel) {
    this.model = model
  }

  async compute(shards: BatchShard[], batchSize: number) {
    const parts = shards.map((shard) => computeLocally(this.model, shard, batchSize))
    return { result: sumShards(parts.map((p) => p.result)), timings: parts.map((p) => p.timing) }
  }

  dispose(): void {}
}

let nextSessionId = 1

class ParallelEngine implements GradientEngine {
  readonly threads: number
  readonly shards: number
  private readonly model: StepModel
  private readonly sessionId = nextSessionId++
  private readonly workers: PoolWorker[]
  private disposed = false

  constructor(model: StepModel, threads: number) {
    this.model = model
    this.threads = threads
    this.shards = threads
    this.workers = trainingPool().acquire(threads - 1)
  }

  async compute(shards: BatchShard[], batchSize: number) {
    if (this.disposed) throw new TrainerError('INVALID_ARGUMENT', 'gradient engine used after dispose()')
    const weights = await this.model.store.readFlat()
    const remote: Promise<ShardReply>[] = []
    const open = { config: this.model.config, phase: this.model.phase }
    shards.forEach((shard, index) => {
      const thread = index % this.threads
      if (thread === 0) return
      const worker = this.workers[thread - 1] as PoolWorker
      remote[index] = worker.computeShard({ session: this.sessionId, open, weights, shard, batchSize })
    })
    // The main thread computes its shards while the workers compute theirs.
    const local = new Map<number, { result: ShardGradients; timing: ShardTiming }>()
    const settled = Promise.allSettled(remote.filter((p) => p !== undefined))
    try {
      shards.forEach((shard, index) => {
        if (index % this.threads === 0) local.set(index, computeLocally(this.model, shard, batchSize))
      })
    } catch (error) {
      for (const part of local.values()) disposeShard(part.result)
      await settled
      throw error
    }
    const parts: ShardGradients[] = []
    const timings: ShardTiming[] = []
    let failure: unknown
    for (let index = 0; index < shards.length; index++) {
      const mine = local.get(index)
      if (mine !== undefined) {
        parts.push(mine.result)
        timings.push(mine.timing)
        continue
      }
      try {
        const reply = await (remote[index] as Promise<ShardReply>)
        parts.push(this.toTensors(reply))
        timings.push({ ...reply.timing, thread: index % this.threads })
      } catch (error) {
        failure ??= error
      }
    }
    if (failure !== undefined) {
      parts.forEach(disposeShard)
      throw failure
    }
    return { result: sumShards(parts), timings }
  }

  private toTensors(reply: ShardReply): ShardGradients {
    const names = this.model.store.trainableNames()
    let offset = 0
    return tf.tidy(() => ({
      loss: tf.scalar(reply.loss),
      grads: names.map((name) => {
        const v = this.model.store.variables.get(name) as tf.Variable
        const part = reply.grads.subarray(offset, offset + v.size)
        offset += v.size
        return tf.tensor(part, v.shape, 'float32')
      }),
      meanSquares: reply.meanSquares === null ? undefined : tf.scalar(reply.meanSquares),
    }))
  }

  dispose(): void {
    if (this.disposed) return
    this.disposed = true
    for (const worker of this.workers) worker.closeSession(this.sessionId)
    trainingPool().release(this.workers)
  }
}

function disposeShard(part: ShardGradients): void {
  tf.dispose([part.loss, ...part.grads, ...(part.meanSquares === undefined ? [] : [part.meanSquares])])
}

/**
 * The engine for a session: data-parallel worker threads on wasm when `threads` (or the process-wide
 * setting) is above 1, the main thread alone otherwise.
 */
export function createGradientEngine(
  model: StepModel,
  threads: number | undefined,
  log?: Logger,
): GradientEngine {
  const requested = threads ?? trainingThreads()
  assertThreadCount(requested)
  const backend = tf.getBackend()
  if (requested === 1 || backend !== 'wasm') {
    if (requested > 1)
      log?.debug({ backend, threads: requested }, 'worker threads only serve wasm; training on one thread')
    return new LocalEngine(model)
  }
  return new ParallelEngine(model, requested)
}
