// Building blocks shared by the document schemas. All object schemas are closed (strict):
// an unknown field is a SCHEMA rejection, never silently ignored.
import { z } from 'zod'
import { CHECKPOINT_FILE_NAME_MAX_LENGTH } from './constants.ts'

export const digestSchema = z.string().regex(/^sha256:[0-9a-f]{64}$/, 'expected sha256:<64 lowercase hex>')

/** Hex of a SHA-256 as in-toto writes it in `digest.sha256`. */
export const hexSha256Schema = z.string().regex(/^[0-9a-f]{64}$/, 'expected 64 lowercase hex')

/** A date-time with second precision in UTC, `YYYY-MM-DDTHH:MM:SSZ` (an XML Schema dateTimeStamp, as VC 2.0 requires). */
export const dateTimeSchema = z
  .string()
  .regex(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/, 'expected YYYY-MM-DDTHH:MM:SSZ')
  .refine((s) => {
    const ms = Date.parse(s)
    return Number.isFinite(ms) && new Date(ms).toISOString() === `${s.slice(0, 19)}.000Z`
  }, 'not a real calendar date-time')

/** A libp2p PeerId string (key correctness is checked when the key is used). */
export const peerIdSchema = z
  .string()
  .regex(/^12D3KooW[1-9A-HJ-NP-Za-km-z]{44}$/, 'expected an Ed25519 libp2p PeerId (12D3KooW...)')

export const didKeySchema = z
  .string()
  .regex(/^did:key:z6Mk[1-9A-HJ-NP-Za-km-z]{44}$/, 'expected an Ed25519 did:key (did:key:z6Mk...)')

export const nonNegativeInt = z.int().nonnegative()
export const positiveInt = z.int().positive()

/**
 * Plain text fields: bounded so a document's size is bounded field by field, and without the
 * characters a terminal acts on (C0 and C1 controls, DEL: a signer's name printed by `coop trace`
 * must not be able to rewrite the screen) or that make text display other than it reads (the
 * bidirectional embedding, override and isolate marks). Free text may hold tabs and newlines.
 * UNSAFE_TEXT_CHARACTERS is that set as a RegExp character-class body; the console escapes it too.
 */
export const UNSAFE_TEXT_CHARACTERS = '\\u0000-\\u001f\\u007f-\\u009f\\u202a-\\u202e\\u2066-\\u2069'
const NO_CONTROLS = new RegExp(`^[^${UNSAFE_TEXT_CHARACTERS}]*$`)
const NO_CONTROLS_BUT_LINES = new RegExp(`^(?:[\\t\\n]|[^${UNSAFE_TEXT_CHARACTERS}])*$`)
const CONTROL_MESSAGE = 'control and bidirectional-override characters are not allowed'
export const shortText = z.string().min(1).max(1024).regex(NO_CONTROLS, CONTROL_MESSAGE)
export const longText = z.string().min(1).max(8192).regex(NO_CONTROLS_BUT_LINES, CONTROL_MESSAGE)
export const uriText = z
  .string()
  .min(1)
  .max(2048)
  .regex(/^[a-zA-Z][a-zA-Z0-9+.-]*:\S+$/, 'expected an absolute URI')
  .regex(NO_CONTROLS, CONTROL_MESSAGE)

/** Credit a license requires: who, where, and the exact notice text. */
export const attributionSchema = z.strictObject({
  name: shortText,
  uri: uriText.optional(),
  text: longText.optional(),
})
export type Attribution = z.output<typeof attributionSchema>

/** Seconds-precision UTC timestamp for `date`, as dateTimeSchema accepts. */
export function formatDateTime(date: Date): string {
  return `${date.toISOString().slice(0, 19)}Z`
}

/**
 * A plain file name: letters, digits, `.`, `_` and `-`, not starting with `.` or `-`. So no
 * separator (slash or backslash), no `..` or `.`, no absolute path, no drive letter, no control or
 * invisible character: a verifier may join it to a directory without leaving that directory.
 */
const PLAIN_FILE_NAME = new RegExp(`^[A-Za-z0-9_][A-Za-z0-9._-]{0,${CHECKPOINT_FILE_NAME_MAX_LENGTH - 1}}$`)

export function isPlainFileName(name: unknown): name is string {
  return typeof name === 'string' && PLAIN_FILE_NAME.test(name)
}

export const plainFileNameSchema = z
  .string()
  .refine(isPlainFileName, 'expected a plain file name (letters, digits, . _ -; no separators or ..)')
