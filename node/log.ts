// One pino root logger for the process; components take child loggers.
// Logs go to stderr so that stdout stays free for command output and progress.
//
// Format: `json` (one pino object per line, what `coop demo` and the tests parse), `pretty` (one
// line a person reads per record that matters to one: node/console/human-log.ts), or `auto`:
// pretty when stderr is a terminal, JSON otherwise.
// `--log-file <path>` adds a JSON copy of every line at the same level, whatever the format.
// Level: `--log-level`, else the COOP_LOG_LEVEL environment variable, else info (silent in tests).
import { pino } from 'pino'
import type { DestinationStream, Logger, StreamEntry } from 'pino'
import { formatHumanLine, LIVE_COVERED, parseLogRecord } from './console/human-log.ts'
import { screen } from './console/screen.ts'

export type { Logger }

export const LOG_FORMATS = ['auto', 'json', 'pretty'] as const
export type LogFormat = (typeof LOG_FORMATS)[number]
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const
export type LogLevel = (typeof LOG_LEVELS)[number]

export interface LogSettings {
  format?: LogFormat
  level?: LogLevel
  /** Also append JSON lines to this file. */
  file?: string
}

export function isLogLevel(value: string): value is LogLevel {
  return (LOG_LEVELS as readonly string[]).includes(value)
}

export function isLogFormat(value: string): value is LogFormat {
  return (LOG_FORMATS as readonly string[]).includes(value)
}

function defaultLevel(): LogLevel {
  const fromEnv = process.env.COOP_LOG_LEVEL
  if (fromEnv !== undefined && isLogLevel(fromEnv)) return fromEnv
  return process.env.VITEST ? 'silent' : 'info'
}

/**
 * The pretty stream: one line per record a person needs (node/console/human-log.ts), printed
 * through the screen so that a live line on the terminal stays whole. While a live line is on,
 * what it and the round summaries already say is left out.
 */
function humanStream(): DestinationStream {
  const tty = process.stderr.isTTY === true
  const colour = tty && process.env.NO_COLOR === undefined
  return {
    write(line: string) {
      const record = parseLogRecord(line)
      if (record === undefined) {
        screen.printError(line)
        return
      }
      const text = formatHumanLine(record, { colour, ...(screen.active ? { hide: LIVE_COVERED } : {}) })
      if (text === undefined) return
      // Without a live line, a command's own progress bar may sit on stderr's last row
      // (`coop train`): clear it so the log line starts clean; the bar redraws itself.
      screen.printError(screen.active || !tty ? `${text}\n` : `\r\x1b[2K${text}\n`)
    },
  }
}

/** JSON lines: pino's own destination, or through the screen on a terminal (a live line may be there). */
function jsonStream(): DestinationStream {
  if (process.stderr.isTTY !== true) return pino.destination(2)
  return {
    write(line: string) {
      screen.printError(line)
    },
  }
}

/** The --log format asked for: a live display on stdout is for people, unless they asked for JSON. */
let requestedFormat: LogFormat = 'auto'

export function requestedLogFormat(): LogFormat {
  return requestedFormat
}

function buildLogger(settings: LogSettings): Logger {
  const level = settings.level ?? defaultLevel()
  const format = settings.format ?? 'auto'
  const pretty = format === 'pretty' || (format === 'auto' && process.stderr.isTTY === true)
  requestedFormat = format
  const console: DestinationStream = pretty ? humanStream() : jsonStream()
  if (settings.file === undefined) return pino({ level, base: { pid: process.pid } }, console)
  const streams: StreamEntry[] = [
    { level: level === 'silent' ? 'fatal' : level, stream: console },
    {
      level: level === 'silent' ? 'fatal' : level,
      stream: pino.destination({ dest: settings.file, append: true, mkdir: true, sync: true }),
    },
  ]
  return pino({ level, base: { pid: process.pid } }, pino.multistream(streams))
}

export let rootLogger: Logger = buildLogger({})

/**
 * Rebuilds the root logger from command-line settings. Called by the CLI before a command runs,
 * so every child logger (created when a component starts) uses it.
 */
export function configureLogging(settings: LogSettings): void {
  rootLogger = buildLogger(settings)
}

export function componentLogger(component: string, bindings: Record<string, unknown> = {}): Logger {
  return rootLogger.child({ component, ...bindings })
}
