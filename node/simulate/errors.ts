// Typed failures of the simulator. Each code names one thing a researcher can act on; the CLI
// prints `code: message` without a stack.
import { CodedError } from '../../protocol/coded-error.ts'

export type SimulateErrorCode =
  /** An option has a value outside its domain (a split, attack or count that cannot work). */
  | 'BAD_OPTION'
  /** The requested split cannot give every peer data (too few classes or items). */
  | 'SPLIT_IMPOSSIBLE'
  /** The dataset is too small for the held-out evaluation set plus one item per peer. */
  | 'DATA_TOO_SMALL'
  /** The dataset's classes do not match the config's classes. */
  | 'DATA_MISMATCH'
  /** --out exists and is not empty: results are never mixed with other files. */
  | 'OUT_NOT_EMPTY'
  /** Training diverged (non-finite loss or delta) in a peer or the baseline. */
  | 'DIVERGED'

export class SimulateError extends CodedError<SimulateErrorCode> {}
