// `--log json|pretty|auto`, `--log-level <level>` and `--log-file <path>`: accepted by every
// command, taken out of the argument list before the command parses it, applied once.
import {
  configureLogging,
  isLogFormat,
  isLogLevel,
  LOG_FORMATS,
  LOG_LEVELS,
  type LogSettings,
} from '../log.ts'
import { UsageError } from './command.ts'

export const GLOBAL_OPTIONS_HELP = `Logging options (any command; logs go to stderr):
  --log <format>        ${LOG_FORMATS.join('|')}: auto is a short human line per event on a terminal and
                        JSON (one pino object per line) in a pipe (default auto)
  --log-level <level>   ${LOG_LEVELS.join('|')} (default info, or the COOP_LOG_LEVEL
                        environment variable)
  --log-file <path>     also append every log line as JSON to this file`

const FLAGS = ['--log', '--log-level', '--log-file'] as const

/** Splits `--flag=value` and `--flag value` forms of the logging flags from the rest. */
export function splitLogFlags(argv: readonly string[]): { settings: LogSettings; rest: string[] } {
  const settings: LogSettings = {}
  const rest: string[] = []
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string
    const eq = arg.indexOf('=')
    const flag = eq > 0 ? arg.slice(0, eq) : arg
    if (!(FLAGS as readonly string[]).includes(flag)) {
      rest.push(arg)
      continue
    }
    let value: string | undefined
    if (eq > 0) value = arg.slice(eq + 1)
    else {
      value = argv[i + 1]
      i += 1
    }
    if (value === undefined || value.length === 0 || (eq < 0 && value.startsWith('--')))
      throw new UsageError(`${flag} needs a value`)
    if (flag === '--log') {
      if (!isLogFormat(value))
        throw new UsageError(`--log must be one of ${LOG_FORMATS.join(', ')}, got '${value}'`)
      settings.format = value
    } else if (flag === '--log-level') {
      if (!isLogLevel(value))
        throw new UsageError(`--log-level must be one of ${LOG_LEVELS.join(', ')}, got '${value}'`)
      settings.level = value
    } else settings.file = value
  }
  const fromEnv = process.env.COOP_LOG_LEVEL
  if (settings.level === undefined && fromEnv !== undefined && fromEnv.length > 0 && !isLogLevel(fromEnv))
    throw new UsageError(`COOP_LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}, got '${fromEnv}'`)
  return { settings, rest }
}

export async function extractLogFlags(argv: readonly string[]): Promise<string[]> {
  const { settings, rest } = splitLogFlags(argv)
  configureLogging(settings)
  return rest
}
