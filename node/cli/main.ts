// `coop`: dispatches to one module per command, loaded lazily so that
// `coop keys new` does not pay for loading tfjs or libp2p.
import { enableCompileCache } from 'node:module'
import type { Command } from './command.ts'
import { CliError, UsageError } from './command.ts'
import { isSystemError, systemErrorLine } from '../fs-errors.ts'
import { extractLogFlags, GLOBAL_OPTIONS_HELP } from './log-flags.ts'

// Node keeps the compiled (type-stripped) modules of earlier runs on disk (NODE_COMPILE_CACHE, or
// node-compile-cache in the temp folder), so a command loads its modules in about half the CPU
// time: `coop checkpoint verify` 0.85 -> 0.43 CPU-s, `coop start --help` 1.9 -> 1.2. Best effort:
// where the folder cannot be written, Node just compiles as before. Modules loaded from here on
// (every command, lazily) are cached; the few imported above are small.
enableCompileCache()

const commands: Record<string, () => Promise<{ command: Command }>> = {
  // Each command module exports `command`. Keep this list sorted.
  audit: () => import('./commands/audit.ts'),
  charter: () => import('./commands/charter.ts'),
  checkpoint: () => import('./commands/checkpoint.ts'),
  consent: () => import('./commands/consent.ts'),
  credit: () => import('./commands/credit.ts'),
  data: () => import('./commands/data.ts'),
  demo: () => import('./commands/demo.ts'),
  keys: () => import('./commands/keys.ts'),
  quality: () => import('./commands/quality.ts'),
  sample: () => import('./commands/sample.ts'),
  simulate: () => import('./commands/simulate.ts'),
  start: () => import('./commands/start.ts'),
  status: () => import('./commands/status.ts'),
  summary: () => import('./commands/summary.ts'),
  trace: () => import('./commands/trace.ts'),
  train: () => import('./commands/train.ts'),
  verify: () => import('./commands/verify.ts'),
}

async function printHelp(): Promise<void> {
  const lines = ['Usage: coop <command> [options]', '', 'Commands:']
  const names = Object.keys(commands).sort()
  // Help is the one place that loads every command module, to show each one's summary.
  const summaries = await Promise.all(names.map(async (name) => (await commands[name]!()).command.summary))
  const width = Math.max(...names.map((name) => name.length))
  names.forEach((name, i) => lines.push(`  ${name.padEnd(width)}  ${summaries[i]}`))
  lines.push('', GLOBAL_OPTIONS_HELP, '', 'Run `coop <command> --help` for the options of one command.')
  process.stdout.write(`${lines.join('\n')}\n`)
}

async function main(argv: string[]): Promise<number> {
  const [name, ...commandArgs] = argv
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    await printHelp()
    return name === undefined ? 2 : 0
  }
  const load = commands[name]
  if (load === undefined) {
    process.stderr.write(`coop: unknown command '${name}'\n`)
    await printHelp()
    return 2
  }
  const { command } = await load()
  if (commandArgs.includes('--help') || commandArgs.includes('-h')) {
    process.stdout.write(`${command.usage}\n\n${GLOBAL_OPTIONS_HELP}\n`)
    return 0
  }
  try {
    // The logging options apply to every command; they are taken out before the command parses.
    const rest = await extractLogFlags(commandArgs)
    return await command.run(rest)
  } catch (error) {
    // node:util parseArgs throws ERR_PARSE_ARGS_* for unknown or malformed flags: a usage error too.
    const isParseArgsError =
      error instanceof Error && 'code' in error && String(error.code).startsWith('ERR_PARSE_ARGS')
    if (error instanceof UsageError || isParseArgsError) {
      process.stderr.write(`coop ${name}: ${error.message}\n\n${command.usage}\n`)
      return 2
    }
    if (error instanceof CliError) {
      process.stderr.write(`coop ${name}: ${error.code}: ${error.message}\n`)
      return error.exitCode
    }
    if (isSystemError(error)) {
      // A file-system or network error: its cause in words, the operation and the path, once.
      process.stderr.write(`coop ${name}: ${error.code ?? 'ERROR'}: ${systemErrorLine(error)}\n`)
      return 1
    }
    if (
      error instanceof Error &&
      'code' in error &&
      typeof error.code === 'string' &&
      error.code.length > 0
    ) {
      // Typed errors from protocol/, trainer/ and node/ carry a code: show it, not a stack.
      process.stderr.write(`coop ${name}: ${error.code}: ${error.message}\n`)
      return 1
    }
    // A bug, not a user mistake: say so in one line, then the stack for the report.
    process.stderr.write(
      `coop ${name}: INTERNAL: ${error instanceof Error ? error.message : String(error)} (this is a bug; the stack follows)\n`,
    )
    process.stderr.write(`${error instanceof Error ? (error.stack ?? '') : ''}\n`)
    return EXIT_INTERNAL
  }
}

/** An unexpected exception (EX_SOFTWARE in sysexits.h): distinct from a refused input (1) or usage (2). */
const EXIT_INTERNAL = 70

process.exitCode = await main(process.argv.slice(2))
