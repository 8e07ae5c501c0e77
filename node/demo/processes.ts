// Runs the peers as real `coop start` child processes: spawns them, turns their stderr into
// events, keeps a log file and a tail per peer, and stops them all cleanly on demand.
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { createWriteStream } from 'node:fs'
import type { WriteStream } from 'node:fs'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { LOG_TAIL_LINES, NODE_STOP_GRACE_MS } from './constants.ts'
import { interpretRecord, parseLogLine } from './events.ts'
import type { NodeEvent } from './events.ts'
import { errorCode } from '../../protocol/coded-error.ts'

/** The CLI entry point the peers run: the same `coop` the user has. */
export const COOP_MAIN = fileURLToPath(new URL('../cli/main.ts', import.meta.url))

export interface PeerProcessOptions {
  name: string
  /** Script to run with this Node (default: the coop CLI). */
  entry?: string
  /** Arguments after `coop`, e.g. ['start', '--charter', ...]. */
  args: string[]
  /** Every stderr line is appended here. */
  logFile: string
  env?: NodeJS.ProcessEnv
  onEvent: (event: NodeEvent) => void
  /** Any line at all (for stall detection). */
  onActivity?: () => void
}

export interface PeerExit {
  code: number | null
  signal: NodeJS.Signals | null
}

export interface PeerProcess {
  name: string
  pid: number
  /** The latest stderr lines, shown when the peer dies. */
  tail(): string[]
  exited: Promise<PeerExit>
  isRunning(): boolean
  signal(signal: NodeJS.Signals): void
}

function pushTail(tail: string[], line: string): void {
  tail.push(line.length > 400 ? `${line.slice(0, 400)}…` : line)
  if (tail.length > LOG_TAIL_LINES) tail.shift()
}

/**
 * The live view is built from the nodes' info-level records, so they log at least at info even
 * when the demo itself runs quieter (or under a test runner, which silences logs by default).
 */
export function nodeLogLevel(requested: string | undefined): string {
  return requested === 'debug' || requested === 'trace' ? requested : 'info'
}

export function spawnPeer(options: PeerProcessOptions): PeerProcess {
  // Own process group: a terminal's Ctrl-C reaches only the demo, which forwards one SIGINT to
  // each peer, instead of every process receiving it twice.
  const child: ChildProcess = spawn(process.execPath, [options.entry ?? COOP_MAIN, ...options.args], {
    stdio: ['ignore', 'ignore', 'pipe'],
    detached: true,
    env: { ...process.env, ...options.env, COOP_LOG_LEVEL: nodeLogLevel(process.env.COOP_LOG_LEVEL) },
  })
  const tail: string[] = []
  let running = true
  const logStream: WriteStream = createWriteStream(options.logFile, { flags: 'a' })
  logStream.on('error', () => {
    // A full disk must not kill the run; the events still flow.
  })
  const stderr = child.stderr
  if (stderr === null) throw new Error('child stderr is not piped')
  const lines = createInterface({ input: stderr, crlfDelay: Infinity })
  lines.on('line', (line) => {
    logStream.write(`${line}\n`)
    pushTail(tail, line)
    options.onActivity?.()
    const record = parseLogLine(line)
    if (record === undefined) return
    const event = interpretRecord(record)
    if (event !== undefined) options.onEvent(event)
  })
  const linesClosed = new Promise<void>((resolve) => lines.once('close', resolve))
  const exited = new Promise<PeerExit>((resolve) => {
    child.on('error', (error) => {
      pushTail(tail, `spawn failed: ${error.message}`)
      running = false
      lines.close()
      resolve({ code: null, signal: null })
    })
    child.on('exit', (code, signal) => {
      // Let readline drain the last lines (stderr may close before or after 'exit') before
      // callers read the tail.
      void linesClosed.then(() => {
        running = false
        logStream.end()
        resolve({ code, signal })
      })
    })
  })
  return {
    name: options.name,
    pid: child.pid ?? -1,
    tail: () => tail.slice(),
    exited,
    isRunning: () => running,
    signal(signal) {
      if (!running || child.pid === undefined) return
      try {
        process.kill(child.pid, signal)
      } catch (error) {
        if (errorCode(error) !== 'ESRCH') throw error
      }
    },
  }
}

/**
 * Stops peers the way a user would: SIGINT (the node flushes its store and says goodbye), then
 * SIGKILL for any that has not exited after the grace period.
 */
export async function stopPeers(peers: PeerProcess[], graceMs = NODE_STOP_GRACE_MS): Promise<PeerExit[]> {
  for (const peer of peers) peer.signal('SIGINT')
  const timer = setTimeout(() => {
    for (const peer of peers) peer.signal('SIGKILL')
  }, graceMs)
  try {
    return await Promise.all(peers.map((p) => p.exited))
  } finally {
    clearTimeout(timer)
  }
}
