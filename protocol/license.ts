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

/** The license terms and credit of one consent manifest, as its issuer signed them. */
export interface ManifestTerms {
  license: string
  attribution: { name: string; uri?: string; text?: string }
  items: readonly { license?: string; attribution?: { name: string; uri?: string; text?: string } }[]
}

const compareStrings = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0)

/**
 * The SPDX expression covering a checkpoint trained on these manifests: the conjunction of their
 * licenses and their items' licenses, each distinct term once, sorted. It depends only on the
 * manifests' signed content, so every peer, before and after a restart, computes the same.
 * Random initial weights carry no one's rights: with no manifest it is CC0-1.0.
 */
export function licenseOfManifests(manifests: readonly ManifestTerms[]): string {
  const terms = new Set<string>()
  for (const m of manifests) {
    terms.add(m.license)
    for (const item of m.items) if (item.license !== undefined) terms.add(item.license)
  }
  if (terms.size === 0) return 'CC0-1.0'
  const sorted = [...terms].sort(compareStrings)
  return sorted.length === 1
    ? (sorted[0] as string)
    : sorted.map((t) => (/\s/.test(t) ? `(${t})` : t)).join(' AND ')
}

/** The attribution list these manifests' licenses require: each distinct attribution once, in a fixed order. */
export function attributionOfManifests(
  manifests: readonly ManifestTerms[],
): { name: string; uri?: string; text?: string }[] {
  const out = new Map<string, { name: string; uri?: string; text?: string }>()
  for (const m of manifests) {
    const candidates = [
      m.attribution,
      ...m.items.flatMap((i) => (i.attribution === undefined ? [] : [i.attribution])),
    ]
    for (const a of candidates) {
      const entry = {
        name: a.name,
        ...(a.uri === undefined ? {} : { uri: a.uri }),
        ...(a.text === undefined ? {} : { text: a.text }),
      }
      out.set(JSON.stringify(entry), entry)
    }
  }
  return [...out.entries()].sort((a, b) => compareStrings(a[0], b[0])).map(([, v]) => v)
}
