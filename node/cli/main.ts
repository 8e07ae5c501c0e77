// `coop`: dispatches to one module per command, loaded lazily so that
// `coop keys new` does not pay for loading tfjs or libp2p.
import type { Command } from './command.ts'
import { CliError, UsageError } from './command.ts'

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
  lines.push('', 'Run `coop <command> --help` for the options of one command.')
  process.stdout.write(`${lines.join('\n')}\n`)
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv
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
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(`${command.usage}\n`)
    return 0
  }
  try {
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
    throw error
  }
}

process.exitCode = await main(process.argv.slice(2))
