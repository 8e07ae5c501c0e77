// Types for spdx-expression-parse (it ships none): its documented AST.
declare module 'spdx-expression-parse' {
  export interface SpdxLicense {
    license: string
    plus?: boolean
    exception?: string
  }
  export interface SpdxConjunction {
    left: SpdxNode
    conjunction: 'and' | 'or'
    right: SpdxNode
  }
  export type SpdxNode = SpdxLicense | SpdxConjunction
  export default function parse(expression: string): SpdxNode
}
