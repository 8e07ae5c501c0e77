// Two views of the same progress: a table redrawn in place on a TTY, and plain timestamped
// lines otherwise (CI logs, pipes), so a log file never fills with cursor escapes.
import { LIVE_VIEW_REDRAW_MS } from './constants.ts'
import type { DemoProgress, PeerProgress } from './progress.ts'

export interface ProgressView {
  /** Something changed; `line` is set for changes worth a line of their own. */
  update(progress: DemoProgress, line?: string): void
  /** A message outside the table (setup steps, the summary). */
  note(text: string): void
  stop(progress: DemoProgress): void
}

interface Writable {
  write(text: string): unknown
}

function pad(text: string, width: number): string {
  return text.length >= width ? text.slice(0, width) : text + ' '.repeat(width - text.length)
}

function padLeft(text: string, width: number): string {
  return text.length >= width ? text.slice(0, width) : ' '.repeat(width - text.length) + text
}

function elapsed(progress: DemoProgress, nowMs: number): string {
  const s = Math.max(0, Math.round((nowMs - progress.startedAtMs) / 1000))
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`
}

function peerRow(p: PeerProgress): string {
  const name = p.publisher ? `${p.name}*` : p.name
  const step = p.step === undefined ? '' : p.steps === undefined ? String(p.step) : `${p.step}/${p.steps}`
  return [
    pad(name, 9),
    pad(p.activity, 9),
    pad(p.phase ?? '', 12),
    padLeft(p.round === undefined ? '' : String(p.round), 5),
    padLeft(step, 9),
    padLeft(p.loss === undefined ? '' : p.loss.toFixed(4), 9),
    padLeft(p.imgPerSec === undefined ? '' : p.imgPerSec.toFixed(1), 8),
    p.lastProblem === undefined ? '' : `  ! ${p.lastProblem}`,
  ].join(' ')
}

/** The table: one row per peer, then the latest closed rounds with their aggregation. */
export function renderTable(progress: DemoProgress, nowMs = Date.now(), width = 100): string[] {
  const lines = [
    `coop demo  ${elapsed(progress, nowMs)} elapsed  (* = publisher)`,
    [
      pad('peer', 9),
      pad('state', 9),
      pad('phase', 12),
      padLeft('round', 5),
      padLeft('step', 9),
      padLeft('loss', 9),
      padLeft('img/s', 8),
    ].join(' '),
    ...progress.peers.map(peerRow),
    '',
  ]
  const recent = progress.rounds.slice(-4)
  if (recent.length === 0) lines.push('no round closed yet')
  for (const r of recent) {
    const parts = [`round ${padLeft(String(r.round), 2)}`, pad(r.phase ?? '', 11)]
    parts.push(r.contributions === undefined ? 'closed' : `aggregated ${r.contributions} contributions`)
    if (r.digest !== undefined) parts.push(`-> ${r.digest.replace(/^sha256:/, '').slice(0, 12)}`)
    if (r.evalLoss !== undefined) parts.push(`publisher eval loss ${r.evalLoss.toFixed(4)}`)
    lines.push(parts.join('  '))
  }
  return lines.map((l) => (l.length > width ? l.slice(0, width) : l))
}

/** Columns to draw in; a pseudo-terminal may report 0 columns, which means "unknown", not "none". */
export function terminalWidth(columns: number | undefined): number {
  return columns !== undefined && columns > 0 ? Math.max(40, columns - 1) : 100
}

/** Redraws the table in place, throttled; notes are printed above it. */
export function createTtyView(
  out: Writable & { columns?: number },
  redrawMs = LIVE_VIEW_REDRAW_MS,
): ProgressView {
  let drawnLines = 0
  let lastDraw = 0
  let pending: ReturnType<typeof setTimeout> | undefined
  let latest: DemoProgress | undefined
  const clear = (): string => (drawnLines > 0 ? `\x1b[${drawnLines}F\x1b[J` : '')
  const draw = (): void => {
    pending = undefined
    if (latest === undefined) return
    const lines = renderTable(latest, Date.now(), terminalWidth(out.columns))
    out.write(`${clear()}${lines.join('\n')}\n`)
    drawnLines = lines.length
    lastDraw = Date.now()
  }
  // A clock tick keeps "elapsed" moving while every peer is busy computing.
  const tick = setInterval(() => {
    if (latest !== undefined) draw()
  }, 1000)
  tick.unref()
  return {
    update(progress) {
      latest = progress
      const wait = lastDraw + redrawMs - Date.now()
      if (wait <= 0) draw()
      else if (pending === undefined) pending = setTimeout(draw, wait)
    },
    note(text) {
      out.write(`${clear()}${text}\n`)
      drawnLines = 0
      if (latest !== undefined) draw()
    },
    stop(progress) {
      clearInterval(tick)
      if (pending !== undefined) clearTimeout(pending)
      latest = progress
      draw()
      latest = undefined
      drawnLines = 0
    },
  }
}

/** One line per notable change, prefixed with the elapsed time. */
export function createPlainView(out: Writable, now: () => number = Date.now): ProgressView {
  let startedAtMs: number | undefined
  const stamp = (): string => {
    const s = startedAtMs === undefined ? 0 : Math.max(0, Math.round((now() - startedAtMs) / 1000))
    return `[${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}]`
  }
  return {
    update(progress, line) {
      startedAtMs = progress.startedAtMs
      if (line !== undefined) out.write(`${stamp()} ${line}\n`)
    },
    note(text) {
      out.write(`${text}\n`)
    },
    stop() {},
  }
}
