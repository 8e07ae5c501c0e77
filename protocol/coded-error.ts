// The error base shared by every folder: protocol/ is the one layer all others import.

/**
 * The one base of every error in this project that carries a code from a closed set. Codes label
 * logs, metrics and exit codes, and tests assert them; `name` is the subclass's name.
 */
export class CodedError<Code extends string = string> extends Error {
  readonly code: Code
  constructor(code: Code, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = new.target.name
    this.code = code
  }
}

/** The code of any error: a CodedError's, a Node system error's (ENOENT...), or undefined. */
export function errorCode(error: unknown): string | undefined {
  if (typeof error !== 'object' || error === null || !('code' in error)) return undefined
  const code = (error as { code: unknown }).code
  return typeof code === 'string' ? code : undefined
}
