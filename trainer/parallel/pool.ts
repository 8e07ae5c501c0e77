// The process's training worker threads (trainer/parallel/worker.ts): started on first use, shared by
// every session (the simulator runs several at once), each hosting one model replica per session.
// Idle workers do not keep the process alive; a worker that fails is replaced on the next request.
import type { CoopConfig } from '../../configs/index.ts'
import type { BatchShard } from '../batches.ts'
import { TrainerError } from '../errors.ts'
import { IDLE_WORKER_MS } from '../constants.ts'
import type { Phase } from '../types.ts'
import { Worker } from 'node:worker_threads'

export interface ShardRequest {
  session: number
  /** Sent with every request; a worker creates the session's replica the first time it sees it. */
  open: { config: CoopConfig; phase: Phase }
  /** Every weight of the session's model, flattened in ParamStore.names() order. */
  weights: Float32Array
  shard: BatchShard
  batchSize: number
}

export interface ShardReply {
  loss: number
  /** Gradients flattened in ParamStore.trainableNames() order. */
  grads: Float32Array
  meanSquares: number | null
  timing: { rows: number; startMs: number; endMs: number; cpuMs: number }
}

type WorkerMessage = { id: number; ok: true; reply: ShardReply } | { id: number; ok: false; message: string }

const WORKER_URL = new URL('./worker.ts', import.meta.url)

export class PoolWorker {
  private worker: Worker | undefined
  private readonly pending = new Map<number, { resolve(r: ShardReply): void; reject(e: Error): void }>()
  private nextId = 1
  /** Sessions whose replica the current worker holds (a replaced worker starts empty). */
  private readonly opened = new Set<number>()
  /** Sessions using this worker; it is stopped a while after the last one is released. */
  users = 0
  private idleTimer: NodeJS.Timeout | undefined

  private start(): Worker {
    const worker = new Worker(WORKER_URL)
    worker.on('message', (message: WorkerMessage) => {
      const entry = this.pending.get(message.id)
      if (entry === undefined) return
      this.pending.delete(message.id)
      if (this.pending.size === 0) worker.unref()
      if (message.ok) entry.resolve(message.reply)
      else entry.reject(new TrainerError('WORKER_FAILED', `training worker: ${message.message}`))
    })
    const fail = (reason: string) => {
      if (this.worker === worker) {
        this.worker = undefined
        this.opened.clear()
      }
      const waiting = [...this.pending.values()]
      this.pending.clear()
      for (const entry of waiting) entry.reject(new TrainerError('WORKER_FAILED', reason))
    }
    worker.on('error', (error) => fail(`training worker failed: ${error.message}`))
    worker.on('exit', (code) => fail(`training worker exited with code ${code}`))
    // Only after the listeners: adding a 'message' listener refs the worker's port again, and an
    // idle worker then held the process open until its idle timer stopped it (10 s after every
    // command that trained or sampled on two threads).
    worker.unref()
    this.worker = worker
    return worker
  }

  /** Starts the thread ahead of the first step, so its wasm set-up overlaps the caller's own. */
  warm(): void {
    clearTimeout(this.idleTimer)
    this.idleTimer = undefined
    if (this.worker === undefined) this.start()
  }

  /** Stops the thread after IDLE_WORKER_MS unless a session takes it again (sessions often follow each other). */
  idle(): void {
    clearTimeout(this.idleTimer)
    this.idleTimer = setTimeout(() => {
      if (this.users === 0) this.stop()
    }, IDLE_WORKER_MS)
    this.idleTimer.unref()
  }

  computeShard(request: ShardRequest): Promise<ShardReply> {
    const worker = this.worker ?? this.start()
    const id = this.nextId++
    const open = this.opened.has(request.session) ? undefined : request.open
    this.opened.add(request.session)
    return new Promise<ShardReply>((resolve, reject) => {
      this.pending.set(id, { resolve, reject })
      worker.ref()
      worker.postMessage({ type: 'shard', id, ...request, open })
    })
  }

  closeSession(session: number): void {
    if (!this.opened.delete(session)) return
    this.worker?.postMessage({ type: 'close', session })
  }

  stop(): void {
    const worker = this.worker
    this.worker = undefined
    this.opened.clear()
    if (worker !== undefined) void worker.terminate()
  }
}

class TrainingPool {
  private readonly workers: PoolWorker[] = []

  /** `count` workers for one session, started now; the first sessions share the same ones. */
  acquire(count: number): PoolWorker[] {
    while (this.workers.length < count) this.workers.push(new PoolWorker())
    const chosen = this.workers.slice(0, count)
    for (const worker of chosen) {
      worker.users++
      worker.warm()
    }
    return chosen
  }

  /** Workers no session uses any more stop after a grace period: their wasm heaps go back to the system. */
  release(workers: readonly PoolWorker[]): void {
    for (const worker of workers) {
      worker.users--
      if (worker.users === 0) worker.idle()
    }
  }
}

let pool: TrainingPool | undefined

export function trainingPool(): TrainingPool {
  pool ??= new TrainingPool()
  return pool
}
