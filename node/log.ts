// One pino root logger for the process; components take child loggers.
// Logs go to stderr so that stdout stays free for command output and progress.
import { pino } from 'pino'
import type { Logger } from 'pino'

export type { Logger }

const level = process.env.COOP_LOG_LEVEL ?? (process.env.VITEST ? 'silent' : 'info')

export const rootLogger: Logger = pino({ level, base: { pid: process.pid } }, pino.destination(2))

export function componentLogger(component: string, bindings: Record<string, unknown> = {}): Logger {
  return rootLogger.child({ component, ...bindings })
}
