import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'
import {
  backendFlag,
  parseCommandArgs,
  requireFlags,
  singlePositional,
  wholeNumberFlag,
  type WholeNumberBounds,
} from '../../node/cli/args.ts'
import { UsageError } from '../../node/cli/command.ts'

const run = promisify(execFile)

/** The UsageError `action` throws; fails the test when it throws anything else or nothing. */
function usageError(action: () => unknown): UsageError {
  try {
    action()
  } catch (error) {
    expect(error).toBeInstanceOf(UsageError)
    return error as UsageError
  }
  throw new Error('expected a UsageError, nothing was thrown')
}

describe('wholeNumberFlag', () => {
  const accepted: [string, WholeNumberBounds, number][] = [
    ['0', {}, 0],
    ['42', {}, 42],
    ['007', {}, 7],
    ['9007199254740991', {}, Number.MAX_SAFE_INTEGER],
    ['1', { min: 1 }, 1],
    ['1024', { min: 1, max: 1024 }, 1024],
    ['5', { min: 5, max: 5 }, 5],
  ]
  it.each(accepted)('reads %j with bounds %j as %d', (value, bounds, expected) => {
    expect(wholeNumberFlag('n', value, bounds)).toBe(expected)
  })

  it('is undefined when the flag was not given, so callers pick the default', () => {
    expect(wholeNumberFlag('n', undefined, { min: 1, max: 3 })).toBeUndefined()
  })

  const refused: [string, WholeNumberBounds, string][] = [
    ['', {}, "--n must be a whole number, got ''"],
    ['-1', {}, "--n must be a whole number, got '-1'"],
    ['+1', {}, "--n must be a whole number, got '+1'"],
    ['1.5', {}, "--n must be a whole number, got '1.5'"],
    ['1e3', {}, "--n must be a whole number, got '1e3'"],
    ['0x10', {}, "--n must be a whole number, got '0x10'"],
    [' 7', {}, "--n must be a whole number, got ' 7'"],
    ['seven', {}, "--n must be a whole number, got 'seven'"],
    ['9007199254740992', {}, "--n must be a whole number, got '9007199254740992'"],
    ['0', { min: 1 }, "--n must be a positive whole number, got '0'"],
    ['2', { min: 3 }, "--n must be a whole number of at least 3, got '2'"],
    ['0', { min: 1, max: 1024 }, "--n must be a whole number in [1, 1024], got '0'"],
    ['1025', { min: 1, max: 1024 }, "--n must be a whole number in [1, 1024], got '1025'"],
    ['11', { max: 10 }, "--n must be a whole number in [0, 10], got '11'"],
  ]
  it.each(refused)('refuses %j with bounds %j', (value, bounds, message) => {
    expect(usageError(() => wholeNumberFlag('n', value, bounds)).message).toBe(message)
  })
})

describe('backendFlag', () => {
  it.each(['auto', 'tensorflow', 'wasm', 'cpu', 'webgpu', 'torch'])('accepts %s', (name) => {
    expect(backendFlag(name)).toBe(name)
  })

  it('defaults to $COOP_BACKEND (the GPU image sets torch), then auto; a bad COOP_BACKEND is named', () => {
    const saved = process.env.COOP_BACKEND
    try {
      delete process.env.COOP_BACKEND
      expect(backendFlag(undefined)).toBe('auto')
      process.env.COOP_BACKEND = 'torch'
      expect(backendFlag(undefined)).toBe('torch')
      expect(backendFlag('wasm')).toBe('wasm')
      process.env.COOP_BACKEND = 'cuda'
      expect(usageError(() => backendFlag(undefined)).message).toMatch(
        /^COOP_BACKEND must be one of .*got 'cuda'/,
      )
    } finally {
      if (saved === undefined) delete process.env.COOP_BACKEND
      else process.env.COOP_BACKEND = saved
    }
  })

  it.each(['', 'gpu', 'WASM', 'tensorflow-gpu', ' cpu'])('refuses %j and lists the choices', (name) => {
    expect(usageError(() => backendFlag(name)).message).toBe(
      `--backend must be one of auto, tensorflow, wasm, cpu, webgpu, torch, got '${name}'`,
    )
  })
})

describe('requireFlags', () => {
  it('passes when every named flag was given, even as an empty string', () => {
    const values: { out?: string; key?: string } = { out: '', key: 'k' }
    requireFlags(values, ['out', 'key'])
    expect(values.out).toBe('')
  })

  const missing: [{ key?: string; out?: string; license?: string }, string][] = [
    [{}, '--key is required'],
    [{ key: 'k' }, '--out is required'],
    [{ out: 'o', license: 'MIT' }, '--key is required'],
  ]
  it.each(missing)('with %j reports the first missing flag in the order asked', (values, message) => {
    expect(usageError(() => requireFlags(values, ['key', 'out', 'license'])).message).toBe(message)
  })
})

describe('singlePositional', () => {
  it('returns the one argument', () => {
    expect(singlePositional(['m.json'], 'manifest file')).toBe('m.json')
  })

  it.each([[[]], [['a', 'b']]])('refuses %j', (positionals) => {
    expect(usageError(() => singlePositional(positionals, 'manifest file')).message).toBe(
      'expected exactly one manifest file',
    )
  })
})

describe('parseCommandArgs', () => {
  const options = {
    out: { type: 'string' },
    resume: { type: 'boolean' },
    set: { type: 'string', multiple: true },
  } as const

  it('parses strings, booleans and repeated flags', () => {
    const { values } = parseCommandArgs(['--out', 'o', '--resume', '--set', 'a=1', '--set=b=2'], options)
    expect(values).toEqual({ out: 'o', resume: true, set: ['a=1', 'b=2'] })
  })

  it('returns positionals when the command takes them', () => {
    const { values, positionals } = parseCommandArgs(['twemoji', '--out', 'o'], options, {
      allowPositionals: true,
    })
    expect(positionals).toEqual(['twemoji'])
    expect(values.out).toBe('o')
  })

  const bad: [string[], boolean, RegExp][] = [
    [['--bogus'], false, /Unknown option '--bogus'/],
    [['--out'], false, /Option '--out <value>' argument missing/],
    [['--resume=yes'], false, /Option '--resume' does not take an argument/],
    [['stray'], false, /Unexpected argument 'stray'/],
    [['x', '--bogus'], true, /Unknown option '--bogus'/],
  ]
  it.each(bad)(
    'turns parseArgs errors for %j (positionals %s) into a UsageError',
    (argv, positionals, message) => {
      const error = usageError(() => parseCommandArgs(argv, options, { allowPositionals: positionals }))
      expect(error.message).toMatch(message)
    },
  )
})

describe('a command using the helpers', () => {
  it('exits 2 with the message and the usage on a bad whole number', async () => {
    const result = await run(process.execPath, [
      'node/cli/main.ts',
      'data',
      'twemoji',
      '--out',
      'unused',
      '--per-category',
      '1.5',
    ]).catch((error: { code: number; stdout: string; stderr: string }) => error)
    expect('code' in result ? result.code : 0).toBe(2)
    expect(result.stderr).toContain("coop data: --per-category must be a positive whole number, got '1.5'")
    expect(result.stderr).toContain('Usage: coop data twemoji')
  })
})
