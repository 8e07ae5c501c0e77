// Typed errors of `coop start`'s checks before anything is written (preflight.ts) and of its
// listening step. A closed set, so that tests, the troubleshooting table and logs can name them.
import { CodedError } from '../../protocol/coded-error.ts'

export const START_ERROR_CODES = [
  /** --store holds another cooperative's charter. */
  'STORE_OTHER_COOP',
  /** --store is a non-empty folder that is not a coop store (a typo, or the data folder). */
  'NOT_A_STORE',
  /** A file of the wrong kind where another is expected (a manifest as --charter...). */
  'WRONG_FILE_KIND',
  /** A named file or folder does not exist. */
  'NOT_FOUND',
  /** --data holds none of the images the consent manifests list. */
  'CONSENT_DATA_MISMATCH',
  /** Consented images sit in a class folder the charter's model has no class for. */
  'UNKNOWN_CLASS',
  /** A consent manifest names another node as custodian. */
  'FOREIGN_CUSTODIAN',
  /** --key is the rights holder's key that signed the consent, not the node key it names. */
  'RIGHTS_KEY_AS_NODE_KEY',
  /** --publisher on a node the charter does not name as publisher. */
  'NOT_A_PUBLISHER',
  /** A feature this node does not implement (co-signed checkpoints). */
  'UNSUPPORTED',
  /** A --listen port is taken by another process. */
  'PORT_IN_USE',
  /** The listen addresses could not be bound for another reason. */
  'LISTEN_FAILED',
  /** A consent manifest does not verify. */
  'MANIFEST_INVALID',
] as const
export type StartErrorCode = (typeof START_ERROR_CODES)[number]

export class StartError extends CodedError<StartErrorCode> {}
