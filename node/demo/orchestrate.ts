// Runs the cooperative's peers as child processes until they finish their rounds, the user
// presses Ctrl-C, or one of them fails; feeds the progress view as they log.
import { readFile } from 'node:fs/promises'
import { DemoError } from './errors.ts'
import { NODE_START_TIMEOUT_MS, STALL_TIMEOUT_MS } from './constants.ts'
import { applyEvent, createProgress, markPeer } from './progress.ts'
import type { DemoProgress } from './progress.ts'
import type { ProgressView } from './live-view.ts'
import { spawnPeer, stopPeers } from './processes.ts'
import type { PeerProcess } from './processes.ts'
import type { NodeEvent } from './events.ts'
import type { PeerLayout } from './layout.ts'
import { errorCode } from '../../protocol/coded-error.ts'
import type { TimeBoxStop } from './time-box.ts'

export interface PeerLaunch {
  peer: PeerLayout
  /** `coop start ...` arguments, given the publisher's multiaddrs to bootstrap from (empty for the publisher). */
  args: (bootstrap: string[]) => string[]
  /** Script the peer runs (default: the coop CLI); tests substitute a scripted node. */
  entry?: string
  /** File where the node writes its listen multiaddrs once listening, one per line or a JSON list. */
  addrsFile: string
}

export type RunOutcome =
  | { kind: 'finished'; progress: DemoProgress }
  | { kind: 'interrupted'; signal: NodeJS.Signals; progress: DemoProgress }
  /** The time box (time-box.ts) stopped the peers after a closed round, before the charter's last. */
  | { kind: 'time-boxed'; stop: TimeBoxStop; progress: DemoProgress }

export interface OrchestrateOptions {
  launches: PeerLaunch[]
  view: ProgressView
  env?: NodeJS.ProcessEnv
  startTimeoutMs?: number
  stallTimeoutMs?: number
  /** Called with every event, after the progress has been updated. */
  onEvent?: (peer: PeerLayout, event: NodeEvent, progress: DemoProgress) => void
  /**
   * Asked after each round the publisher closes: a stop ends the run there (the peers are
   * stopped cleanly, as on Ctrl-C) and runPeers returns it as 'time-boxed'.
   */
  timeBox?: (progress: DemoProgress) => TimeBoxStop | undefined
}

/** Parses the addrs file a node writes: a JSON list of multiaddrs or one per line. */
export function parseAddrs(text: string): string[] {
  const trimmed = text.trim()
  if (trimmed.length === 0) return []
  let list: unknown
  if (trimmed.startsWith('[') || trimmed.startsWith('{')) {
    try {
      const json = JSON.parse(trimmed) as unknown
      list = Array.isArray(json)
        ? json
        : ((json as { addrs?: unknown; multiaddrs?: unknown }).addrs ??
          (json as { multiaddrs?: unknown }).multiaddrs)
    } catch {
      return []
    }
  } else {
    list = trimmed.split('\n').map((l) => l.trim())
  }
  if (!Array.isArray(list)) return []
  return list.filter((a): a is string => typeof a === 'string' && a.startsWith('/') && a.includes('/p2p/'))
}

async function readAddrs(path: string): Promise<string[]> {
  try {
    return parseAddrs(await readFile(path, 'utf8'))
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return []
    throw error
  }
}

export async function runPeers(options: OrchestrateOptions): Promise<RunOutcome> {
  const { launches, view } = options
  const progress = createProgress(launches.map((l) => ({ name: l.peer.name, publisher: l.peer.publisher })))
  const running: PeerProcess[] = []
  let interruptedBy: NodeJS.Signals | undefined
  let failure: DemoError | undefined
  let timeBoxed: TimeBoxStop | undefined
  let lastActivity = Date.now()
  let wake: (() => void) | undefined
  const wakeUp = (): void => {
    wake?.()
  }

  const listened = new Map<number, string[]>()
  // Peers that logged 'all rounds done'. A node lingers after its last round (--linger, 10 s by
  // default) only to serve slower peers; once every peer of the demo is done, it serves no one,
  // so the demo stops them all instead of waiting that time out.
  const done = new Set<number>()
  const start = (launch: PeerLaunch, bootstrap: string[]): PeerProcess => {
    const proc = spawnPeer({
      name: launch.peer.name,
      ...(launch.entry !== undefined ? { entry: launch.entry } : {}),
      args: launch.args(bootstrap),
      logFile: launch.peer.log,
      env: options.env,
      onActivity: () => {
        lastActivity = Date.now()
      },
      onEvent: (event) => {
        if (event.kind === 'listening') {
          listened.set(launch.peer.index, event.addrs)
          wakeUp()
        }
        if (event.kind === 'finished') {
          done.add(launch.peer.index)
          wakeUp()
        }
        const change = applyEvent(progress, launch.peer.index, event)
        view.update(progress, change.notable ? change.line : undefined)
        options.onEvent?.(launch.peer, event, progress)
        if (
          event.kind === 'round-closed' &&
          launch.peer.publisher &&
          timeBoxed === undefined &&
          options.timeBox !== undefined
        ) {
          timeBoxed = options.timeBox(progress)
          if (timeBoxed !== undefined) {
            view.note(`\n${timeBoxed.reason}`)
            wakeUp()
          }
        }
      },
    })
    void proc.exited.then((exit) => {
      const clean = exit.code === 0
      const stopping = interruptedBy !== undefined || timeBoxed !== undefined
      markPeer(progress, launch.peer.index, clean || stopping ? 'stopped' : 'failed')
      view.update(progress, `${launch.peer.name}: exited ${exit.signal ?? `with code ${exit.code}`}`)
      if (!clean && !stopping && failure === undefined) {
        failure = new DemoError(
          'NODE_EXITED',
          `${launch.peer.name} exited ${exit.signal ?? `with code ${exit.code}`}; last lines of ${launch.peer.log}:\n${proc.tail().slice(-8).join('\n')}`,
        )
      }
      wakeUp()
    })
    running.push(proc)
    return proc
  }

  const onSignal = (signal: NodeJS.Signals): void => {
    if (interruptedBy !== undefined) {
      // A second Ctrl-C means "now": no more waiting for stores to flush.
      for (const p of running) p.signal('SIGKILL')
      return
    }
    interruptedBy = signal
    view.note(
      `\n${signal}: stopping ${running.filter((p) => p.isRunning()).length} peers cleanly (Ctrl-C again to kill them)...`,
    )
    wakeUp()
  }
  const killOnExit = (): void => {
    for (const p of running) p.signal('SIGKILL')
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
  process.on('exit', killOnExit)

  const waitForChange = (ms: number): Promise<void> =>
    new Promise((resolve) => {
      const timer = setTimeout(() => {
        wake = undefined
        resolve()
      }, ms)
      wake = () => {
        clearTimeout(timer)
        wake = undefined
        resolve()
      }
    })

  try {
    const [first, ...rest] = launches
    if (first === undefined) throw new RangeError('no peers to launch')
    // The publisher starts first; the others bootstrap from its address.
    start(first, [])
    const deadline = Date.now() + (options.startTimeoutMs ?? NODE_START_TIMEOUT_MS)
    let bootstrap: string[] = []
    while (bootstrap.length === 0) {
      if (interruptedBy !== undefined || failure !== undefined) break
      bootstrap = listened.get(first.peer.index) ?? (await readAddrs(first.addrsFile))
      if (bootstrap.length > 0) break
      if (Date.now() > deadline) {
        failure = new DemoError(
          'NODE_START_TIMEOUT',
          `${first.peer.name} did not report a listen address within ${Math.round((options.startTimeoutMs ?? NODE_START_TIMEOUT_MS) / 1000)} s; see ${first.peer.log}`,
        )
        break
      }
      await waitForChange(200)
    }
    if (failure === undefined && interruptedBy === undefined) {
      markPeer(progress, first.peer.index, 'waiting')
      view.update(progress)
      for (const launch of rest) start(launch, bootstrap)
    }

    const stallMs = options.stallTimeoutMs ?? STALL_TIMEOUT_MS
    while (running.some((p) => p.isRunning())) {
      if (interruptedBy !== undefined || failure !== undefined || timeBoxed !== undefined) break
      if (done.size === launches.length) break
      if (Date.now() - lastActivity > stallMs) {
        failure = new DemoError(
          'STALLED',
          `no peer logged anything for ${Math.round(stallMs / 1000)} s; logs are in ${launches.map((l) => l.peer.log).join(', ')}`,
        )
        break
      }
      await waitForChange(1000)
    }
    if (running.some((p) => p.isRunning())) await stopPeers(running.filter((p) => p.isRunning()))
    // Exit handlers registered at spawn run before this resumes, so every peer's state is final.
    await Promise.all(running.map((p) => p.exited))
    view.stop(progress)
    if (failure !== undefined) throw failure
    if (interruptedBy !== undefined) return { kind: 'interrupted', signal: interruptedBy, progress }
    if (timeBoxed !== undefined) return { kind: 'time-boxed', stop: timeBoxed, progress }
    return { kind: 'finished', progress }
  } finally {
    // Whatever went wrong above, no peer outlives the demo.
    if (running.some((p) => p.isRunning())) await stopPeers(running.filter((p) => p.isRunning()))
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
    process.off('exit', killOnExit)
  }
}
