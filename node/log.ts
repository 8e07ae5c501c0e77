// One pino root logger for the process; components take child loggers.
// Logs go to stderr so that stdout stays free for command output and progress.
//
// Format: `json` (one pino object per line, what `coop demo` and the tests parse), `pretty` (one
// short human line per event), or `auto`: pretty when stderr is a terminal, JSON otherwise.
// `--log-file <path>` adds a JSON copy of every line at the same level, whatever the format.
// Level: `--log-level`, else the COOP_LOG_LEVEL environment variable, else info (silent in tests).
import { pino } from 'pino'
import type { DestinationStream, Logger, StreamEntry } from 'pino'
import { PinoPretty } from 'pino-pretty'

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

/**
 * Messages logged once per training step: a terminal shows them on the live status line, so the
 * pretty stream leaves them out (JSON output and the log file keep every one).
 */
const PER_STEP_MESSAGES = ['"msg":"training step"']

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

/** The pretty stream: short local time, level, component, message, then the context as key=value. */
function prettyStream(): DestinationStream {
  const tty = process.stderr.isTTY === true
  const pretty = PinoPretty({
    destination: 2,
    sync: true,
    colorize: tty,
    singleLine: true,
    translateTime: 'SYS:HH:MM:ss',
    ignore: 'pid,hostname,component',
    messageFormat: '{if component}{component}: {end}{msg}',
  })
  return {
    write(line: string) {
      if (PER_STEP_MESSAGES.some((m) => line.includes(m))) return
      // A live status line may sit on the terminal's last row: clear it so the log line starts clean.
      if (tty) process.stderr.write('\r\x1b[2K')
      pretty.write(line)
    },
  }
}

function buildLogger(settings: LogSettings): Logger {
  const level = settings.level ?? defaultLevel()
  const format = settings.format ?? 'auto'
  const pretty = format === 'pretty' || (format === 'auto' && process.stderr.isTTY === true)
  const console: DestinationStream = pretty ? prettyStream() : pino.destination(2)
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
