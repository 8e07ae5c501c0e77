// The README names only commands and flags that exist. Every `coop <command> [<subcommand>]
// --flag ...` in its code (fenced blocks and inline code) is checked against what the real CLI
// prints for `coop --help` and `coop <command> --help`; every flag in inline code without its
// command must be a flag of some command; and every flag a command's help lists must be parsed by
// that command's module, so the help cannot drift from the code either.
import { execFile } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { beforeAll, describe, expect, it } from 'vitest'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const MAIN = fileURLToPath(new URL('../node/cli/main.ts', import.meta.url))
/**
 * Flags of other tools the README uses: npm's (`npm run --silent coop -- ...`), docker's (the GPU
 * image), and `coop --help`.
 */
const OTHER_FLAGS = new Set(['--silent', '--help', '--gpus', '--build-arg'])

function coop(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [MAIN, ...args],
      { cwd: ROOT, timeout: 120_000, env: { ...process.env, COOP_LOG_LEVEL: 'silent' } },
      (error, stdout, stderr) =>
        resolve({
          code: error === null ? 0 : typeof error.code === 'number' ? error.code : 1,
          stdout,
          stderr,
        }),
    )
  })
}

interface Invocation {
  command: string
  subcommand?: string
  flags: string[]
  text: string
}

/** Code in the README: fenced blocks (continuation lines joined, comments dropped) and inline spans. */
export function readmeCode(readme: string): { blocks: string[]; spans: string[] } {
  const blocks: string[] = []
  const prose = readme.replace(/```[a-z]*\n([\s\S]*?)```/g, (_all, body: string) => {
    const joined = body.replace(/\\\n\s*/g, ' ')
    for (const line of joined.split('\n')) {
      const code = line.replace(/(^|\s)#.*$/, '').trim()
      if (code.length > 0) blocks.push(code)
    }
    return ''
  })
  const spans = [...prose.matchAll(/`([^`\n]+)`/g)].map((m) => m[1] as string)
  return { blocks, spans }
}

/** `coop <command> [<subcommand>] ...` in a piece of shell, up to the next shell separator. */
export function invocations(code: string): Invocation[] {
  const out: Invocation[] = []
  // `npm run demo -- ...` is `coop demo ...` (package.json's demo script), and the Docker image's
  // entrypoint is coop: `docker run [docker flags] diffusion-coop train ...` is `coop train ...`.
  const normalised = code
    .replace(/\bnpm run demo --(?=\s)/g, 'coop demo')
    .replace(/\bdocker run\b.*?\sdiffusion-coop(?=\s)/g, 'coop')
  for (const m of normalised.matchAll(/(?:^|[\s($;&|])coop\s+([a-z][a-z-]*)((?:\s+[^\s;&|)]+)*)/g)) {
    const args = (m[2] as string)
      .trim()
      .split(/\s+/)
      .filter((a) => a.length > 0)
    const first = args[0]
    const subcommand = first !== undefined && /^[a-z][a-z-]*$/.test(first) ? first : undefined
    out.push({
      command: m[1] as string,
      ...(subcommand === undefined ? {} : { subcommand }),
      flags: args.filter((a) => a.startsWith('--')).map((a) => a.replace(/=.*$/, '')),
      text: (m[0] as string).trim(),
    })
  }
  return out
}

const flagsIn = (text: string): string[] =>
  [...text.matchAll(/(?<![\w-])--[a-z][a-z0-9-]*/g)].map((m) => m[0])
const mentions = (usage: string, flag: string): boolean =>
  new RegExp(`(?<![\\w-])${flag}(?![\\w-])`).test(usage)

describe('the README matches the CLI', () => {
  let readme: string
  let commands: string[]
  const usage = new Map<string, string>()

  beforeAll(async () => {
    readme = await readFile(new URL('../README.md', import.meta.url), 'utf8')
    const help = await coop(['--help'])
    expect(help.code).toBe(0)
    commands = [...help.stdout.split('Commands:')[1]!.matchAll(/^ {2}([a-z][a-z-]*) {2,}/gm)].map(
      (m) => m[1] as string,
    )
    expect(commands).toContain('start')
    // Every command's help, a few at a time (each loads its own modules).
    for (let i = 0; i < commands.length; i += 4)
      await Promise.all(
        commands.slice(i, i + 4).map(async (name) => {
          const result = await coop([name, '--help'])
          expect(result.code, `coop ${name} --help: ${result.stderr}`).toBe(0)
          usage.set(name, result.stdout)
        }),
      )
  }, 300_000)

  it('every coop command, subcommand and flag in the README exists', () => {
    const { blocks, spans } = readmeCode(readme)
    const found = [...blocks, ...spans].flatMap(invocations)
    // The tutorial alone runs start, keys, consent, charter, data, status, checkpoint, sample, trace.
    expect(found.length).toBeGreaterThan(40)
    const problems: string[] = []
    for (const inv of found) {
      const text = usage.get(inv.command)
      if (text === undefined) {
        problems.push(`${inv.text}: no command '${inv.command}' (coop --help lists ${commands.join(', ')})`)
        continue
      }
      if (inv.subcommand !== undefined && !text.includes(`coop ${inv.command} ${inv.subcommand}`))
        problems.push(`${inv.text}: coop ${inv.command} --help has no subcommand '${inv.subcommand}'`)
      for (const flag of inv.flags)
        if (!mentions(text, flag)) problems.push(`${inv.text}: coop ${inv.command} --help has no ${flag}`)
    }
    expect(problems).toEqual([])
  })

  it('every flag the README names on its own is a flag of some command', () => {
    const { blocks, spans } = readmeCode(readme)
    const all = [...usage.values()].join('\n')
    const orphans = [...blocks, ...spans]
      .filter((code) => invocations(code).length === 0 && !/\bnpm\b|\bnpx\b/.test(code))
      .flatMap((code) => flagsIn(code).map((flag) => ({ flag, code })))
      .filter(({ flag }) => !OTHER_FLAGS.has(flag) && !mentions(all, flag))
    expect(orphans).toEqual([])
  })

  it("every flag a command's help lists is parsed by the command", async () => {
    const problems: string[] = []
    for (const [name, text] of usage) {
      const source = await readFile(new URL(`../node/cli/commands/${name}.ts`, import.meta.url), 'utf8')
      // The logging flags are taken out for every command by node/cli/log-flags.ts.
      // Flags of the synopsis and option lines (prose may name another command's flag).
      const own = (text.split('Logging options')[0] as string)
        .split('\n')
        .filter((line) => /^\s*(Usage: )?coop /.test(line) || /^\s*\[?--[a-z]/.test(line))
        .join('\n')
      for (const flag of new Set(flagsIn(own))) {
        if (flag === '--help') continue
        const key = flag.slice(2)
        const parsed = new RegExp(`(^|[\\s{,])(['"]?)${key}\\2\\s*:\\s*\\{\\s*type:`, 'm').test(source)
        if (!parsed)
          problems.push(
            `coop ${name}: --help lists ${flag}, node/cli/commands/${name}.ts parses no such option`,
          )
      }
    }
    expect(problems).toEqual([])
  })

  it('the extraction sees what a reader sees', () => {
    const { blocks, spans } = readmeCode(
      [
        '```sh',
        'coop keys new --out a.key  # a comment --not-a-flag',
        'coop start --charter c.json \\',
        '  --store s --publisher &',
        'A=$(coop keys show a.key | awk x)',
        'docker run --gpus all -v "$PWD/w:/w" diffusion-coop train --config gpu256 --out /w/out',
        '```',
        'Run `coop trace --store s --image x.png` or `npm run demo -- --smoke`; `--http 127.0.0.1:80`.',
      ].join('\n'),
    )
    expect(blocks.flatMap(invocations).map((i) => [i.command, i.subcommand, i.flags])).toEqual([
      ['keys', 'new', ['--out']],
      ['start', undefined, ['--charter', '--store', '--publisher']],
      ['keys', 'show', []],
      ['train', undefined, ['--config', '--out']],
    ])
    expect(spans.flatMap(invocations).map((i) => [i.command, i.flags])).toEqual([
      ['trace', ['--store', '--image']],
      ['demo', ['--smoke']],
    ])
    expect(spans.filter((s) => invocations(s).length === 0).flatMap(flagsIn)).toEqual(['--http'])
  })
})
