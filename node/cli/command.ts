// The contract every `coop <command>` module implements. main.ts only dispatches.
import { CodedError } from '../../protocol/coded-error.ts'

export interface Command {
  /** One line for `coop --help`. */
  summary: string
  /** Full usage text, printed on `coop <command> --help` and on usage errors. */
  usage: string
  /** Runs with the arguments after the command name; resolves to the process exit code. */
  run(argv: string[]): Promise<number>
}

/** A bad command line: printed with the command's usage, exit code 2, never a stack trace. */
export class UsageError extends Error {
  override name = 'UsageError'
}

/**
 * Thrown by a command for an expected failure the user must see as one clear line
 * (missing folder, invalid manifest...). `code` is a stable machine-readable label.
 */
export class CliError extends CodedError {
  readonly exitCode: number
  constructor(code: string, message: string, exitCode = 1) {
    super(code, message)
    this.exitCode = exitCode
  }
}
