// Argument parsing shared by the `coop` command modules, so that every command rejects a bad
// command line the same way: as a UsageError (exit 2, usage printed), with the same wording.
import { parseArgs, type ParseArgsOptionsConfig } from 'node:util'
import type { RequestedBackend } from '../../trainer/backend.ts'
import { MAX_TRAINING_THREADS } from '../../trainer/constants.ts'
import { REQUESTED_BACKENDS } from '../../trainer/kernels/constants.ts'
import { UsageError } from './command.ts'

export { REQUESTED_BACKENDS }

/**
 * `node:util` parseArgs in strict mode. Its TypeError for an unknown option or a missing
 * value is a bad command line, so it becomes a UsageError with the same message.
 */
export function parseCommandArgs<const O extends ParseArgsOptionsConfig, const P extends boolean = false>(
  argv: readonly string[],
  options: O,
  { allowPositionals }: { allowPositionals?: P } = {},
): ReturnType<typeof parseArgs<{ options: O; strict: true; allowPositionals: P }>> {
  try {
    return parseArgs({
      args: argv,
      options,
      strict: true,
      allowPositionals: (allowPositionals ?? false) as P,
    })
  } catch (error) {
    throw new UsageError((error as Error).message)
  }
}

/** Throws `--<name> is required` for the first of `names` that was not given. */
export function requireFlags<V extends object, K extends keyof V & string>(
  values: V,
  names: readonly K[],
): asserts values is V & { [Name in K]-?: Exclude<V[Name], undefined> } {
  for (const name of names) if (values[name] === undefined) throw new UsageError(`--${name} is required`)
}

/** The one positional argument a command takes; `what` names it in the error ("manifest file"). */
export function singlePositional(positionals: readonly string[], what: string): string {
  const [only] = positionals
  if (positionals.length !== 1 || only === undefined) throw new UsageError(`expected exactly one ${what}`)
  return only
}

export interface WholeNumberBounds {
  min?: number
  max?: number
}

/**
 * A decimal whole number (digits only: no sign, exponent or fraction) within `bounds`, or
 * undefined when the flag was not given. Beyond 2^53 a Number is no longer the integer typed,
 * so larger values are refused even without a `max`.
 */
export function wholeNumberFlag(
  flag: string,
  value: string | undefined,
  bounds: WholeNumberBounds = {},
): number | undefined {
  if (value === undefined) return undefined
  const { min = 0, max = Number.MAX_SAFE_INTEGER } = bounds
  const number = Number(value)
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(number) || number < min || number > max)
    throw new UsageError(`--${flag} must be ${describeBounds(bounds)}, got '${value}'`)
  return number
}

function describeBounds({ min, max }: WholeNumberBounds): string {
  if (max !== undefined) return `a whole number in [${min ?? 0}, ${max}]`
  if (min === 1) return 'a positive whole number'
  if (min !== undefined && min > 0) return `a whole number of at least ${min}`
  return 'a whole number'
}

/**
 * `--backend`, defaulting to $COOP_BACKEND (the GPU image sets torch), then auto; trainer/backend.ts decides
 * what each name loads.
 */
export function backendFlag(value: string | undefined): RequestedBackend {
  const fromEnvironment = process.env.COOP_BACKEND
  const backend =
    value ?? (fromEnvironment === undefined || fromEnvironment === '' ? 'auto' : fromEnvironment)
  if (!isRequestedBackend(backend)) {
    const source = value === undefined ? 'COOP_BACKEND' : '--backend'
    throw new UsageError(`${source} must be one of ${REQUESTED_BACKENDS.join(', ')}, got '${backend}'`)
  }
  return backend
}

/** `--threads`: training threads on wasm (data-parallel workers); undefined keeps the default (min(2, cores)). */
export function threadsFlag(value: string | undefined): number | undefined {
  return wholeNumberFlag('threads', value, { min: 1, max: MAX_TRAINING_THREADS })
}

// trainer/backend.ts has the same guard, but importing it here would load tfjs for `coop keys`.
function isRequestedBackend(value: string): value is RequestedBackend {
  return (REQUESTED_BACKENDS as readonly string[]).includes(value)
}

/** `key=value` with the value read as JSON when it parses (numbers, booleans, arrays), else as a string. */
export function parseOverride(text: string): [string, unknown] {
  const eq = text.indexOf('=')
  if (eq <= 0) throw new UsageError(`--set needs key=value, got '${text}'`)
  const raw = text.slice(eq + 1)
  let value: unknown = raw
  try {
    value = JSON.parse(raw)
  } catch {
    value = raw
  }
  return [text.slice(0, eq), value]
}
