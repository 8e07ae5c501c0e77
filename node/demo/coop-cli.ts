// Runs one `coop` subcommand as a child process, the way a user would from a shell: the demo's
// setup goes through the same commands the README teaches, so it exercises them end to end.
import { execFile } from 'node:child_process'
import { COOP_MAIN } from './processes.ts'
import { DemoError } from './errors.ts'

export interface CoopResult {
  stdout: string
  stderr: string
}

/** Setup commands are short; anything slower than this is stuck. */
const SETUP_COMMAND_TIMEOUT_MS = 300_000
/** Bound on a setup command's output: these print a few lines. */
const SETUP_COMMAND_MAX_OUTPUT = 16 * 1024 * 1024

export function lastLines(text: string, n: number): string {
  return text.trimEnd().split('\n').slice(-n).join('\n')
}

export function runCoop(
  args: string[],
  options: { env?: NodeJS.ProcessEnv; cwd?: string } = {},
): Promise<CoopResult> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [COOP_MAIN, ...args],
      {
        env: { ...process.env, ...options.env },
        cwd: options.cwd,
        timeout: SETUP_COMMAND_TIMEOUT_MS,
        maxBuffer: SETUP_COMMAND_MAX_OUTPUT,
      },
      (error, stdout, stderr) => {
        if (error === null) {
          resolve({ stdout, stderr })
          return
        }
        const status = error.killed ? 'timed out' : `exited with ${error.code ?? error.signal}`
        reject(
          new DemoError(
            'SETUP_FAILED',
            `coop ${args.slice(0, 2).join(' ')} ${status}:\n${lastLines(stderr || stdout, 8)}`,
            { cause: error },
          ),
        )
      },
    )
  })
}
