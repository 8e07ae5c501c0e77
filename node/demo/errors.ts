// Typed failures of `coop demo`. Each code names one thing a user can act on; the CLI prints
// `code: message` without a stack.
import { CodedError } from '../../protocol/coded-error.ts'

export type DemoErrorCode =
  /** --out holds files that no demo run wrote: never overwrite a user's folder. */
  | 'OUT_NOT_A_DEMO'
  /** demo-run.json exists but cannot be read or does not match its schema. */
  | 'RUN_MANIFEST_INVALID'
  /** --out holds a run made with other parameters: resuming would mix two runs. */
  | 'PARAMS_MISMATCH'
  /** another live `coop demo` holds the lock on --out. */
  | 'OUT_IN_USE'
  /** a setup step (data, keys, consent, charter) failed. */
  | 'SETUP_FAILED'
  /** a node process exited before the run finished. */
  | 'NODE_EXITED'
  /** a node did not report its listen address in time. */
  | 'NODE_START_TIMEOUT'
  /** the run made no progress for longer than the stall limit. */
  | 'STALLED'
  /** the user pressed Ctrl-C (or sent SIGTERM); the peers were stopped cleanly. */
  | 'INTERRUPTED'
  /** the publisher's store lacks a checkpoint the run closed. */
  | 'CHECKPOINT_MISSING'

export class DemoError extends CodedError<DemoErrorCode> {}
