// Configuration failures carry a code from this closed set and the dotted key path at fault,
// so `coop train --config x.json` says exactly which key to fix.
import { CodedError } from '../protocol/coded-error.ts'

export const CONFIG_ERROR_CODES = [
  /** A key that no configuration field has (a typo, or a field from another version). */
  'UNKNOWN_KEY',
  /** A value of the wrong JSON type (string for a number, object for an array...). */
  'WRONG_TYPE',
  /** A value of the right type outside its allowed range or set, or inconsistent with another field. */
  'INVALID_VALUE',
  /** Neither a named configuration nor a readable file. */
  'NOT_FOUND',
  /** The configuration file is not valid JSON or is too large. */
  'INVALID_JSON',
] as const

export type ConfigErrorCode = (typeof CONFIG_ERROR_CODES)[number]

export class ConfigError extends CodedError<ConfigErrorCode> {
  /** Dotted path of the offending key ('' for the whole document). */
  readonly path: string
  constructor(code: ConfigErrorCode, path: string, message: string) {
    super(code, path.length > 0 ? `${path}: ${message}` : message)
    this.path = path
  }
}
