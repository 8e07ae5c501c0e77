// Turns the pino JSON lines a `coop start` node writes on stderr into typed demo events.
// The node's log messages are fixed strings with a context object (house style), so a table
// from message to event is the whole contract between the node and this view.
import { MAX_LOG_LINE_BYTES } from './constants.ts'

export interface LogRecord {
  level: number
  msg: string
  time?: number
  fields: Record<string, unknown>
}

export type NodeEvent =
  | { kind: 'listening'; addrs: string[] }
  | { kind: 'dataset'; items: number; backend?: string }
  | { kind: 'phase'; phase: string; round?: number }
  | { kind: 'round-started'; round: number; phase?: string; steps?: number }
  | { kind: 'step'; round?: number; step: number; steps?: number; loss: number; imgPerSec?: number }
  | { kind: 'contributed'; round: number; samples?: number; loss?: number }
  | {
      kind: 'round-closed'
      round: number
      phase?: string
      contributions?: number
      digest?: string
      evalLoss?: number
    }
  | { kind: 'checkpoint-adopted'; round: number; digest?: string }
  | { kind: 'eval'; round: number; evalLoss: number }
  | { kind: 'finished' }
  | { kind: 'problem'; level: 'warn' | 'error'; message: string }

/** Parses one stderr line; undefined for lines that are not pino records (or too long to be ours). */
export function parseLogLine(line: string): LogRecord | undefined {
  if (line.length === 0 || line.length > MAX_LOG_LINE_BYTES || line[0] !== '{') return undefined
  let value: unknown
  try {
    value = JSON.parse(line)
  } catch {
    return undefined
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return undefined
  const { level, msg, time, ...fields } = value as Record<string, unknown>
  if (typeof level !== 'number' || typeof msg !== 'string') return undefined
  return { level, msg, ...(typeof time === 'number' ? { time } : {}), fields }
}

function num(fields: Record<string, unknown>, ...keys: string[]): number | undefined {
  for (const key of keys) {
    const v = fields[key]
    if (typeof v === 'number' && Number.isFinite(v)) return v
  }
  return undefined
}

function str(fields: Record<string, unknown>, ...keys: string[]): string | undefined {
  for (const key of keys) {
    const v = fields[key]
    if (typeof v === 'string') return v
  }
  return undefined
}

type Interpreter = (fields: Record<string, unknown>) => NodeEvent | undefined

/**
 * Message -> event. These are the node's (node/round, node/cli/commands/start.ts) fixed log
 * messages; a message missing here is simply not shown live.
 */
const INTERPRETERS: Record<string, Interpreter> = {
  listening: (f) => ({
    kind: 'listening',
    addrs: Array.isArray(f.addrs) ? f.addrs.filter((a): a is string => typeof a === 'string') : [],
  }),
  'consented dataset loaded': (f) => {
    const items = num(f, 'items')
    return items === undefined
      ? undefined
      : { kind: 'dataset', items, ...(str(f, 'backend') === undefined ? {} : { backend: str(f, 'backend') }) }
  },
  'phase started': (f) => {
    const phase = str(f, 'phase')
    return phase === undefined
      ? undefined
      : { kind: 'phase', phase, ...(num(f, 'round') !== undefined ? { round: num(f, 'round') } : {}) }
  },
  'round started': (f) => {
    const round = num(f, 'round')
    return round === undefined
      ? undefined
      : { kind: 'round-started', round, phase: str(f, 'phase'), steps: num(f, 'steps', 'innerSteps') }
  },
  'training step': (f) => {
    const step = num(f, 'step')
    const loss = num(f, 'loss')
    if (step === undefined || loss === undefined) return undefined
    return {
      kind: 'step',
      round: num(f, 'round'),
      step,
      steps: num(f, 'steps', 'innerSteps'),
      loss,
      imgPerSec: num(f, 'imgPerSec'),
    }
  },
  'contribution published': (f) => {
    const round = num(f, 'round')
    return round === undefined
      ? undefined
      : { kind: 'contributed', round, samples: num(f, 'samples'), loss: num(f, 'loss', 'lossMean') }
  },
  'round closed': (f) => {
    const round = num(f, 'round')
    if (round === undefined) return undefined
    return {
      kind: 'round-closed',
      round,
      phase: str(f, 'phase'),
      contributions: num(f, 'contributions'),
      digest: str(f, 'checkpoint', 'digest'),
      evalLoss: num(f, 'evalLoss'),
    }
  },
  'checkpoint adopted': (f) => {
    const round = num(f, 'round')
    return round === undefined
      ? undefined
      : { kind: 'checkpoint-adopted', round, digest: str(f, 'checkpoint', 'digest') }
  },
  'eval loss': (f) => {
    const round = num(f, 'round')
    const evalLoss = num(f, 'evalLoss', 'loss')
    return round === undefined || evalLoss === undefined ? undefined : { kind: 'eval', round, evalLoss }
  },
  'all rounds done': () => ({ kind: 'finished' }),
}

const WARN = 40
const ERROR = 50

export function interpretRecord(record: LogRecord): NodeEvent | undefined {
  const interpreter = INTERPRETERS[record.msg]
  if (interpreter !== undefined) return interpreter(record.fields)
  if (record.level >= WARN) {
    const detail =
      str(record.fields, 'code') ??
      (typeof record.fields.err === 'object' && record.fields.err !== null
        ? str(record.fields.err as Record<string, unknown>, 'message')
        : undefined)
    return {
      kind: 'problem',
      level: record.level >= ERROR ? 'error' : 'warn',
      message: detail === undefined ? record.msg : `${record.msg} (${detail})`,
    }
  }
  return undefined
}
