// The PyTorch worker as a child process: start-up handshake, one request at a time over framed
// stdin/stdout, a deadline on every request, and a clear error (with the end of the worker's stderr)
// when it exits, breaks the protocol or stops answering. Never a hang: every wait has a timer, and
// an exit rejects whatever was waiting.
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { TRAINER_ERROR_CODES, TrainerError } from '../errors.ts'
import type { TrainerErrorCode } from '../errors.ts'
import type { Logger } from '../types.ts'
import {
  TORCH_EXIT_GRACE_MS,
  TORCH_MAX_FRAME_BYTES,
  TORCH_PROTOCOL_VERSION,
  TORCH_REQUEST_TIMEOUT_MS,
  TORCH_START_TIMEOUT_MS,
  TORCH_STDERR_TAIL_BYTES,
  TORCH_WORKER_SCRIPT,
} from './constants.ts'
import { encodeFrame, FrameDecoder } from './frames.ts'
import type { Frame, FrameHeader, WireTensor } from './frames.ts'

export interface WorkerHello {
  protocol: number
  torch: string
  python: string
  /** 'cuda' or 'cpu': where this worker computes. */
  device: string
  /** e.g. 'NVIDIA H100 80GB HBM3' or 'cpu (2 threads)'. */
  deviceName: string
}

export interface TorchWorkerOptions {
  python: string
  device: 'auto' | 'cpu' | 'cuda'
  /** Intra-op threads on the CPU; 0 keeps torch's default. */
  threads: number
  log?: Logger
  /** Per-request deadline (default TORCH_REQUEST_TIMEOUT_MS, or COOP_TORCH_TIMEOUT_MS). */
  requestTimeoutMs?: number
}

interface Waiter {
  resolve(frame: Frame): void
  reject(error: Error): void
}

function isTrainerErrorCode(code: string): code is TrainerErrorCode {
  return (TRAINER_ERROR_CODES as readonly string[]).includes(code)
}

function requestTimeout(options: TorchWorkerOptions): number {
  const fromEnv = Number(process.env.COOP_TORCH_TIMEOUT_MS)
  if (options.requestTimeoutMs !== undefined) return options.requestTimeoutMs
  return Number.isFinite(fromEnv) && fromEnv > 0 ? fromEnv : TORCH_REQUEST_TIMEOUT_MS
}

export class TorchWorker {
  readonly hello: WorkerHello
  readonly #child: ChildProcess
  readonly #state: WorkerState
  readonly #timeoutMs: number
  #chain: Promise<unknown> = Promise.resolve()
  #nextId = 1

  private constructor(child: ChildProcess, state: WorkerState, hello: WorkerHello, timeoutMs: number) {
    this.#child = child
    this.#state = state
    this.hello = hello
    this.#timeoutMs = timeoutMs
  }

  /** Starts a worker and waits for its hello; rejects with WORKER_FAILED if it cannot start or speaks another protocol. */
  static async start(options: TorchWorkerOptions): Promise<TorchWorker> {
    const child = spawn(
      options.python,
      [
        '-B',
        TORCH_WORKER_SCRIPT,
        '--device',
        options.device,
        '--threads',
        String(options.threads),
        '--max-frame-bytes',
        String(TORCH_MAX_FRAME_BYTES),
      ],
      {
        stdio: ['pipe', 'pipe', 'pipe'],
        // No .pyc files written into the source tree; torch's own warnings stay on stderr.
        env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1', PYTHONUNBUFFERED: '1' },
      },
    )
    const state = new WorkerState(child, options.log)
    const hello = (await state.next('start-up', TORCH_START_TIMEOUT_MS)).header as unknown as WorkerHello & {
      type?: string
    }
    if (hello.type !== 'hello' || hello.protocol !== TORCH_PROTOCOL_VERSION) {
      child.kill('SIGKILL')
      throw new TrainerError(
        'WORKER_FAILED',
        `torch worker speaks protocol ${String(hello.protocol)}, this node ${TORCH_PROTOCOL_VERSION}: the worker and the node come from different versions`,
      )
    }
    options.log?.debug({ pid: child.pid, ...hello }, 'torch worker started')
    return new TorchWorker(child, state, hello, requestTimeout(options))
  }

  /**
   * Sends one request and resolves with the reply; a reply with ok: false becomes a TrainerError with the
   * worker's code (WORKER_FAILED for anything unexpected). Requests are queued: one is in flight at a time.
   */
  request(op: string, fields: FrameHeader = {}, tensors: readonly WireTensor[] = []): Promise<Frame> {
    const run = async (): Promise<Frame> => {
      const id = this.#nextId++
      const bytes = encodeFrame({ ...fields, op, id }, tensors, TORCH_MAX_FRAME_BYTES)
      await this.#state.write(bytes)
      const reply = await this.#state.next(`'${op}'`, this.#timeoutMs)
      if (reply.header.id !== id)
        throw this.#state.fail(`torch worker answered request ${String(reply.header.id)}, expected ${id}`)
      if (reply.header.ok !== true) {
        const code = String(reply.header.code)
        const message = `torch worker: ${String(reply.header.message)}`
        if (code === 'WORKER_FAILED' || !isTrainerErrorCode(code))
          throw new TrainerError('WORKER_FAILED', this.#state.withStderr(message))
        throw new TrainerError(code, message)
      }
      return reply
    }
    const result = this.#chain.then(run, run)
    this.#chain = result.catch(() => undefined)
    return result
  }

  /** Ends the worker: closes its input (it exits at end of input) and kills it if it lingers. */
  close(): void {
    this.#state.closing = true
    this.#child.stdin?.end()
    if (this.#child.exitCode === null && this.#child.signalCode === null) {
      const timer = setTimeout(() => this.#child.kill('SIGKILL'), TORCH_EXIT_GRACE_MS)
      timer.unref()
      this.#child.once('exit', () => clearTimeout(timer))
    }
  }

  get pid(): number | undefined {
    return this.#child.pid
  }
}

/** The child's streams: frames in arrival order, a bounded stderr tail, and the failure that ends it all. */
class WorkerState {
  closing = false
  readonly #child: ChildProcess
  readonly #decoder = new FrameDecoder(TORCH_MAX_FRAME_BYTES)
  readonly #frames: Frame[] = []
  #waiter: Waiter | undefined
  #failure: TrainerError | undefined
  #stderr = ''

  constructor(child: ChildProcess, log: Logger | undefined) {
    this.#child = child
    child.stdout?.on('data', (chunk: Buffer) => {
      if (this.#failure !== undefined) return
      try {
        for (const frame of this.#decoder.push(chunk)) this.#deliver(frame)
      } catch (error) {
        this.fail(`torch worker broke the protocol: ${(error as Error).message}`)
      }
    })
    child.stderr?.on('data', (chunk: Buffer) => {
      const text = chunk.toString('utf8')
      this.#stderr = (this.#stderr + text).slice(-TORCH_STDERR_TAIL_BYTES)
      log?.debug({ stderr: text.trimEnd() }, 'torch worker stderr')
    })
    // EPIPE when the worker is gone: the exit handler reports it with the reason.
    child.stdin?.on('error', () => undefined)
    child.on('error', (error) => this.fail(`torch worker could not start: ${error.message}`))
    // 'close', not 'exit': by then stderr has been read to its end, so the tail holds the traceback.
    child.on('close', (code, signal) => {
      const how = signal === null ? `exited with code ${code}` : `was killed by ${signal}`
      this.fail(this.closing ? `torch worker ${how} after dispose()` : `torch worker ${how}`)
    })
  }

  withStderr(message: string): string {
    const tail = this.#stderr.trim()
    return tail === '' ? message : `${message}; its stderr ends with:\n${tail}`
  }

  /** Marks the worker failed (killing it if it still runs) and rejects the waiter; returns the error. */
  fail(message: string): TrainerError {
    if (this.#failure === undefined) {
      this.#failure = new TrainerError('WORKER_FAILED', this.withStderr(message))
      if (this.#child.exitCode === null && this.#child.signalCode === null) this.#child.kill('SIGKILL')
    }
    const waiter = this.#waiter
    this.#waiter = undefined
    waiter?.reject(this.#failure)
    return this.#failure
  }

  #deliver(frame: Frame): void {
    const waiter = this.#waiter
    if (waiter === undefined) {
      this.#frames.push(frame)
      return
    }
    this.#waiter = undefined
    waiter.resolve(frame)
  }

  async write(bytes: Uint8Array): Promise<void> {
    if (this.#failure !== undefined) throw this.#failure
    const stdin = this.#child.stdin
    if (stdin === null) throw this.fail('torch worker has no stdin')
    // Wait for the pipe to drain, so a large request is never buffered twice.
    if (!stdin.write(bytes)) {
      await new Promise<void>((resolve, reject) => {
        const onDrain = () => {
          this.#child.off('close', onExit)
          resolve()
        }
        const onExit = () => {
          stdin.off('drain', onDrain)
          reject(this.#failure ?? this.fail('torch worker exited'))
        }
        stdin.once('drain', onDrain)
        this.#child.once('close', onExit)
      })
    }
  }

  /** The next frame, or WORKER_FAILED if the worker fails or `timeoutMs` passes first. */
  next(what: string, timeoutMs: number): Promise<Frame> {
    const queued = this.#frames.shift()
    if (queued !== undefined) return Promise.resolve(queued)
    if (this.#failure !== undefined) return Promise.reject(this.#failure)
    return new Promise<Frame>((resolve, reject) => {
      const timer = setTimeout(
        () => this.fail(`torch worker gave no answer to ${what} within ${Math.round(timeoutMs / 1000)} s`),
        timeoutMs,
      )
      this.#waiter = {
        resolve: (frame) => {
          clearTimeout(timer)
          resolve(frame)
        },
        reject: (error) => {
          clearTimeout(timer)
          reject(error)
        },
      }
    })
  }
}
