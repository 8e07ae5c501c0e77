import { expect } from 'vitest'
import { ProtocolError } from '../../protocol/errors.ts'

/** Asserts that `fn` throws a ProtocolError carrying exactly `code`. */
export function expectCode(fn: () => unknown, code: string): void {
  try {
    fn()
  } catch (error) {
    expect(error).toBeInstanceOf(ProtocolError)
    expect((error as ProtocolError).code).toBe(code)
    return
  }
  throw new Error(`expected ProtocolError ${code}, nothing was thrown`)
}
