// SPDX license expressions, parsed by spdx-expression-parse (the parser npm itself uses).
// A manifest's license is acceptable to a coop when the expression can be satisfied using
// only licenses the charter accepts: OR needs one side, AND needs both, and a term with `+`
// or `WITH <exception>` must be accepted in exactly that form.
import parseSpdx, { type SpdxNode } from 'spdx-expression-parse'
import { ProtocolError } from './errors.ts'

const MAX_EXPRESSION_LENGTH = 1024

export function parseLicense(expression: string): SpdxNode {
  if (typeof expression !== 'string' || expression.length === 0 || expression.length > MAX_EXPRESSION_LENGTH)
    throw new ProtocolError('INVALID_LICENSE', 'license must be a non-empty SPDX expression')
  try {
    return parseSpdx(expression)
  } catch (error) {
    throw new ProtocolError('INVALID_LICENSE', `not a valid SPDX expression: ${expression}`, { cause: error })
  }
}

function termText(node: { license: string; plus?: boolean; exception?: string }): string {
  return `${node.license}${node.plus === true ? '+' : ''}${node.exception === undefined ? '' : ` WITH ${node.exception}`}`
}

/** Each entry must be one SPDX license term (id, optional `+`, optional `WITH` exception). */
export function assertLicenseList(accepted: readonly string[]): void {
  for (const entry of accepted) {
    const node = parseLicense(entry)
    if (!('license' in node) || termText(node) !== entry)
      throw new ProtocolError('INVALID_LICENSE', `accepted license must be a single SPDX term: ${entry}`)
  }
}

function satisfiable(node: SpdxNode, accepted: ReadonlySet<string>): boolean {
  if ('license' in node) return accepted.has(termText(node))
  return node.conjunction === 'or'
    ? satisfiable(node.left, accepted) || satisfiable(node.right, accepted)
    : satisfiable(node.left, accepted) && satisfiable(node.right, accepted)
}

/** True iff `expression` can be complied with using only `accepted` terms. */
export function licenseSatisfied(expression: string, accepted: readonly string[]): boolean {
  return satisfiable(parseLicense(expression), new Set(accepted))
}
