// loadConfig: a named configuration or a JSON file, merged with overrides, then validated
// as a whole. Unknown keys and wrong types are ConfigErrors naming the dotted key path.
import { readFileSync, statSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import type { z } from 'zod'
import { CONFIG_FILE_MAX_BYTES, CONFIG_MAX_EXTENDS_DEPTH } from './constants.ts'
import { ConfigError } from './errors.ts'
import type { ConfigErrorCode } from './errors.ts'
import { PRESETS, TWEMOJI_CLASSES } from './presets.ts'
import { CoopConfigSchema } from './schema.ts'
import type { CoopConfig } from './schema.ts'

export { ConfigError, CONFIG_ERROR_CODES } from './errors.ts'
export type { ConfigErrorCode } from './errors.ts'
export type { CoopConfig, AutoencoderConfig, UnetConfig, DiffusionConfig } from './schema.ts'
export { CoopConfigSchema } from './schema.ts'
export { TWEMOJI_CLASSES }

export const CONFIG_NAMES: readonly string[] = Object.freeze(Object.keys(PRESETS))

type Json = null | boolean | number | string | Json[] | { [key: string]: Json }

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function clone<T>(value: T): T {
  return structuredClone(value)
}

/** Merges `patch` into `base`: objects key by key, everything else (arrays included) replaced. */
function deepMerge(base: unknown, patch: unknown): unknown {
  if (!isPlainObject(base) || !isPlainObject(patch)) return clone(patch)
  const out: Record<string, unknown> = { ...base }
  for (const [key, value] of Object.entries(patch)) {
    if (key === '__proto__' || key === 'constructor' || key === 'prototype')
      throw new ConfigError('UNKNOWN_KEY', key, 'reserved key')
    out[key] = key in base ? deepMerge(base[key], value) : clone(value)
  }
  return out
}

/** `{ 'unet.lr': 1e-3 }` and `{ unet: { lr: 1e-3 } }` mean the same override. */
function expandDottedKeys(overrides: Record<string, unknown>): Record<string, unknown> {
  let out: Record<string, unknown> = {}
  for (const [key, value] of Object.entries(overrides)) {
    const parts = key.split('.')
    if (parts.some((p) => p.length === 0))
      throw new ConfigError('UNKNOWN_KEY', key, 'empty segment in key path')
    let nested: unknown = isPlainObject(value) ? expandDottedKeys(value) : value
    for (let i = parts.length - 1; i >= 0; i--) nested = { [parts[i] as string]: nested }
    out = deepMerge(out, nested) as Record<string, unknown>
  }
  return out
}

function formatPath(path: readonly PropertyKey[]): string {
  return path.map((p) => String(p)).join('.')
}

function toConfigError(issue: z.core.$ZodIssue): ConfigError {
  const path = formatPath(issue.path)
  if (issue.code === 'unrecognized_keys') {
    const keys = issue.keys.map((k) => (path.length > 0 ? `${path}.${k}` : k))
    return new ConfigError(
      'UNKNOWN_KEY',
      keys[0] as string,
      `unknown key${keys.length > 1 ? `s ${keys.join(', ')}` : ''}`,
    )
  }
  const code: ConfigErrorCode = issue.code === 'invalid_type' ? 'WRONG_TYPE' : 'INVALID_VALUE'
  return new ConfigError(code, path, issue.message)
}

/** Validates a whole configuration object; throws the first problem as a ConfigError. */
export function validateConfig(candidate: unknown): CoopConfig {
  const result = CoopConfigSchema.safeParse(candidate)
  if (!result.success) {
    // Unknown keys first: a typo explains the wrong-type errors that follow from it.
    const issues = [...result.error.issues].sort(
      (a, b) => Number(b.code === 'unrecognized_keys') - Number(a.code === 'unrecognized_keys'),
    )
    throw toConfigError(issues[0] as z.core.$ZodIssue)
  }
  return result.data
}

function looksLikePath(nameOrPath: string): boolean {
  return nameOrPath.endsWith('.json') || nameOrPath.includes('/') || nameOrPath.includes('\\')
}

function readJsonFile(path: string): unknown {
  let size: number
  try {
    size = statSync(path).size
  } catch {
    throw new ConfigError(
      'NOT_FOUND',
      '',
      `no configuration named or at '${path}' (named: ${CONFIG_NAMES.join(', ')})`,
    )
  }
  if (size > CONFIG_FILE_MAX_BYTES)
    throw new ConfigError('INVALID_JSON', '', `${path} is larger than ${CONFIG_FILE_MAX_BYTES} bytes`)
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as Json
  } catch (error) {
    throw new ConfigError('INVALID_JSON', '', `${path}: ${(error as Error).message}`)
  }
}

/**
 * A raw (unvalidated) configuration: a preset, or a JSON file that is either complete or
 * starts from one with `"extends": "<name or relative path>"`.
 */
function resolveRaw(nameOrPath: string, baseDir: string, depth: number): unknown {
  if (depth > CONFIG_MAX_EXTENDS_DEPTH)
    throw new ConfigError(
      'INVALID_VALUE',
      'extends',
      `more than ${CONFIG_MAX_EXTENDS_DEPTH} levels of extends`,
    )
  const preset = PRESETS[nameOrPath]
  if (preset !== undefined && !looksLikePath(nameOrPath) && Object.hasOwn(PRESETS, nameOrPath))
    return clone(preset)
  if (!looksLikePath(nameOrPath))
    throw new ConfigError(
      'NOT_FOUND',
      '',
      `unknown configuration '${nameOrPath}' (named: ${CONFIG_NAMES.join(', ')})`,
    )
  const path = resolve(baseDir, nameOrPath)
  const document = readJsonFile(path)
  if (!isPlainObject(document)) throw new ConfigError('WRONG_TYPE', '', `${path} must hold a JSON object`)
  const { extends: parent, ...rest } = document
  if (parent === undefined) return rest
  if (typeof parent !== 'string')
    throw new ConfigError('WRONG_TYPE', 'extends', 'must be a configuration name or path')
  return deepMerge(resolveRaw(parent, dirname(path), depth + 1), rest)
}

/**
 * Loads a named configuration ('tiny', 'emoji32', 'gpu256') or a JSON file, applies
 * `overrides` (nested objects or dotted keys such as `'unet.lr'`), and validates the result.
 */
export function loadConfig(nameOrPath: string, overrides: Record<string, unknown> = {}): CoopConfig {
  const raw = resolveRaw(nameOrPath, process.cwd(), 0)
  return validateConfig(deepMerge(raw, expandDottedKeys(overrides)))
}
