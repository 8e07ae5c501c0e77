// Log records as lines a person reads on a terminal (`--log pretty`, or auto on a terminal).
// The node's messages are fixed strings with a context object (house style), so a table from
// message to sentence covers the ones a person acts on (connectivity warnings, rejections, the
// round summary); every other record is `time component: message key=value ...`. JSON output and
// the log file are never rendered: they keep every record as it was logged.
import { UNSAFE_TEXT_CHARACTERS } from '../../protocol/schemas.ts'
import { formatBytes, formatRoundSummary, shortId, type RoundSummary } from './node-lines.ts'
import { rejectionReason } from './rejection-reasons.ts'

export interface LogRecord {
  level: number
  time?: number
  msg: string
  [key: string]: unknown
}

/** pino's numeric levels. */
const LEVEL_WARN = 40
const LEVEL_ERROR = 50

/**
 * Records a person never needs on the console: one per training step (the live line shows the
 * step), and duplicates of a line that says more ('consented dataset loaded', 'listening').
 */
const NEVER_SHOWN = new Set(['training step', 'image folder loaded', 'host started', 'host stopped'])

/**
 * What the live line and the round summary lines already say, hidden from the console while
 * they are on screen (`coop start` on a terminal).
 */
export const LIVE_COVERED = new Set([
  'phase started',
  'genesis checkpoint published',
  'round started',
  'contribution published',
  'contribution accepted',
  'round closing',
  'round closed',
  'checkpoint adopted',
  'eval loss',
  'round summary',
  'all rounds done',
])

/** Context keys every record carries, never shown. */
const BASE_KEYS = new Set(['level', 'time', 'msg', 'pid', 'hostname', 'component', 'v'])

const str = (v: unknown): string => (typeof v === 'string' ? v : v === undefined ? '?' : JSON.stringify(v))
const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined)
const plural = (n: number, one: string, many = `${one}s`): string => `${n} ${n === 1 ? one : many}`

function errorMessage(err: unknown): string | undefined {
  if (err === null || typeof err !== 'object') return undefined
  const message = (err as { message?: unknown }).message
  return typeof message === 'string' ? message : undefined
}

function errorCode(err: unknown): string | undefined {
  if (err === null || typeof err !== 'object') return undefined
  const code = (err as { code?: unknown }).code
  return typeof code === 'string' ? code : undefined
}

function errorText(err: unknown): string | undefined {
  if (err === null || typeof err !== 'object') return undefined
  const e = err as { message?: unknown; code?: unknown }
  const message = typeof e.message === 'string' ? e.message : undefined
  const code = typeof e.code === 'string' ? e.code : undefined
  if (message === undefined) return code
  return code === undefined || message.includes(code) ? message : `${code}: ${message}`
}

/** `the signature does not verify (BAD_SIGNATURE)`: the reason a person reads, the code they search for. */
function why(code: unknown): string {
  const reason = rejectionReason(code)
  return reason === undefined ? str(code) : `${reason} (${str(code)})`
}

/** Sentences for the messages a person acts on. A formatter returns undefined to fall back to the generic line. */
const SENTENCES: Record<string, (f: LogRecord) => string | undefined> = {
  listening: (f) =>
    `listening on ${Array.isArray(f.addrs) ? f.addrs.map(str).join(' ') : '?'}${f.publisher === true ? ' (publisher)' : ''}`,
  'consented dataset loaded': (f) => {
    const items = num(f.items)
    if (items === undefined) return undefined
    const notes = [
      num(f.notAllowed) ? `${f.notAllowed as number} not in a manifest` : '',
      num(f.optedOut) ? `${f.optedOut as number} refused by their embedded opt-out` : '',
    ].filter((n) => n.length > 0)
    return `training on ${plural(items, 'consented image')} from ${plural(num(f.manifests) ?? 0, 'manifest')}${notes.length > 0 ? ` (${notes.join(', ')})` : ''}${typeof f.backend === 'string' ? `, backend ${f.backend}` : ''}`
  },
  'training backend selected': (f) => {
    const skipped = Array.isArray(f.skipped)
      ? (f.skipped as { name?: unknown; reason?: unknown }[]).map((s) => `${str(s.name)}: ${str(s.reason)}`)
      : []
    const details = [
      ...(typeof f.device === 'string' ? [f.device] : []),
      ...(num(f.threads) !== undefined && num(f.threads)! > 1 ? [`${f.threads as number} threads`] : []),
    ]
    return `backend ${str(f.backend)}${details.length > 0 ? ` on ${details.join(', ')}` : ''}${skipped.length > 0 ? ` (skipped ${skipped.join('; ')})` : ''}`
  },
  'status page listening': (f) => `status page ${str(f.url)} (Prometheus metrics at ${str(f.url)}metrics)`,
  'no peers': (f) =>
    `no peers for ${str(f.seconds)} s: check --bootstrap (a multiaddr ending in /p2p/<PeerId>) and the firewall`,
  'publisher lost': (f) =>
    `lost the publisher ${str(f.peer)} (${plural(num(f.peers) ?? 0, 'peer')} left): rounds pause until it is back; redialing`,
  'round state loaded': (f) =>
    num(f.checkpoints) === 0
      ? 'new store: no checkpoint yet'
      : `resuming: the store holds ${plural(num(f.checkpoints) ?? 0, 'checkpoint')} (latest round ${str(f.round)}) and ${plural(num(f.contributions) ?? 0, 'contribution')}`,
  'manifest received': (f) =>
    `consent manifest ${shortId(str(f.manifest))} received: ${plural(num(f.items) ?? 0, 'image')} held by ${str(f.custodian)}`,
  'revocation received': (f) =>
    `revocation received: consent manifest ${shortId(str(f.manifest))} is revoked by its issuer`,
  'peer disconnected': (f) => `peer ${str(f.peer)} disconnected (${plural(num(f.peers) ?? 0, 'peer')} left)`,
  'publisher connected': (f) => `connected to the publisher ${str(f.peer)}`,
  'bootstrap dial failed': (f) =>
    `cannot reach ${str(f.address)}: ${str(f.reason)}; retrying in ${str(f.retryInSeconds)} s (attempt ${str(f.attempt)})`,
  'connected to bootstrap peer': (f) => `connected to ${str(f.address)}`,
  'checkpoint rejected': (f) => {
    const message = errorMessage(f.err)
    const code = typeof f.code === 'string' ? f.code : errorCode(f.err)
    return `rejected checkpoint ${shortId(str(f.checkpoint))}${code === undefined ? '' : `: ${code}`}${message === undefined || message === code ? '' : `: ${message}`}; it is not adopted`
  },
  'contribution rejected': (f) =>
    num(f.count) !== undefined
      ? `rejected ${plural(f.count as number, 'more contribution')} in the last ${str(f.seconds)} s: ${why(f.code)}; senders are penalised`
      : `rejected a contribution from ${str(f.peer)}: ${why(f.code)}; the sender is penalised`,
  'gossip rejected': (f) =>
    `rejected ${plural(num(f.count) ?? 0, str(f.what))} at gossip validation: ${why(f.code)}; senders are penalised`,
  'quorum above visible trainers': (f) =>
    `the charter's quorum is ${str(f.quorum)} but this node sees ${plural(num(f.trainers) ?? 0, 'trainer')}: each round waits for its deadline (${str(f.deadlineSeconds)} s) and closes with the contributions it has`,
  'round summary': (f) => formatRoundSummary(f as unknown as RoundSummary),
  'all rounds done': (f) =>
    `all ${str(f.rounds)} rounds done${typeof f.checkpoint === 'string' ? `; latest checkpoint ${shortId(f.checkpoint)}` : ''}`,
  stopping: (f) => `stopping (${str(f.signal)}) after the current step; press Ctrl-C again to quit at once`,
  'node stopped': (f) =>
    `stopped (served ${formatBytes(num(f.blobServedBytes) ?? 0)}, fetched ${formatBytes(num(f.blobFetchedBytes) ?? 0)}, published ${formatBytes(num(f.gossipPublishedBytes) ?? 0)} of gossip)`,
}

function formatValue(value: unknown): string {
  if (typeof value === 'number')
    return Number.isInteger(value) ? String(value) : String(Number(value.toPrecision(4)))
  if (typeof value === 'string') return /^[^\s"=]+$/.test(value) ? value : JSON.stringify(value)
  if (Array.isArray(value) && value.every((v) => typeof v === 'string' || typeof v === 'number'))
    return value.join(',')
  return JSON.stringify(value)
}

/** `message key=value ...`, with an error as its message. */
function genericText(record: LogRecord): string {
  const parts: string[] = []
  for (const [key, value] of Object.entries(record)) {
    if (BASE_KEYS.has(key) || value === undefined) continue
    if (key === 'err') {
      const text = errorText(value)
      if (text !== undefined) parts.push(`(${text})`)
      continue
    }
    parts.push(`${key}=${formatValue(value)}`)
  }
  const component = typeof record.component === 'string' ? `${record.component}: ` : ''
  return `${component}${record.msg}${parts.length > 0 ? ` ${parts.join(' ')}` : ''}`
}

const COLOURS = { dim: '\x1b[2m', yellow: '\x1b[33m', red: '\x1b[31m', reset: '\x1b[0m' }

function clock(time: number | undefined): string {
  const d = time === undefined ? new Date() : new Date(time)
  return [d.getHours(), d.getMinutes(), d.getSeconds()].map((n) => String(n).padStart(2, '0')).join(':')
}

export interface HumanLineOptions {
  colour: boolean
  /** Messages not to show (LIVE_COVERED while a live line is on screen). */
  hide?: ReadonlySet<string>
}

/**
 * Characters a terminal acts on or that reorder text (C0/C1 controls, DEL, bidirectional marks).
 * A logged value can quote what a peer sent (a refused message's unknown key, a remote error), so
 * each is shown as a `\uXXXX` escape: a peer cannot rewrite the screen or forge a second line.
 */
const TERMINAL_UNSAFE = new RegExp(`[${UNSAFE_TEXT_CHARACTERS}]`, 'g')

export function terminalSafe(text: string): string {
  return text.replace(TERMINAL_UNSAFE, (ch) => `\\u${ch.charCodeAt(0).toString(16).padStart(4, '0')}`)
}

/** One line (no newline) for a person, or undefined when the record is not shown on a console. */
export function formatHumanLine(record: LogRecord, options: HumanLineOptions): string | undefined {
  if (NEVER_SHOWN.has(record.msg) || options.hide?.has(record.msg) === true) return undefined
  const text = terminalSafe(SENTENCES[record.msg]?.(record) ?? genericText(record))
  const c = options.colour ? COLOURS : { dim: '', yellow: '', red: '', reset: '' }
  const label =
    record.level >= LEVEL_ERROR
      ? `${c.red}error:${c.reset} `
      : record.level >= LEVEL_WARN
        ? `${c.yellow}warning:${c.reset} `
        : ''
  return `${c.dim}${clock(record.time)}${c.reset} ${label}${text}`
}

/** Parses one pino JSON line; undefined when it is not one. */
export function parseLogRecord(line: string): LogRecord | undefined {
  try {
    const value = JSON.parse(line) as unknown
    if (value === null || typeof value !== 'object' || Array.isArray(value)) return undefined
    const record = value as LogRecord
    return typeof record.level === 'number' && typeof record.msg === 'string' ? record : undefined
  } catch {
    return undefined
  }
}
