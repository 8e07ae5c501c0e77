// Every expected failure raised by trainer/ is a TrainerError whose `code` comes from
// this closed set, so the CLI prints one clear line and tests assert codes, not messages.
import { CodedError } from '../protocol/coded-error.ts'

export const TRAINER_ERROR_CODES = [
  /** The data folder does not exist or is not a directory. */
  'DATA_MISSING',
  /** The data folder holds no usable image (after skipping corrupt files and applying the allowlist). */
  'DATA_EMPTY',
  /** The data folder is larger than the loader's bounds (file count or file size). */
  'DATA_TOO_LARGE',
  /** A dataset class is not one of the classes the model configuration names. */
  'UNKNOWN_CLASS',
  /** A checkpoint directory or one of its files is missing. */
  'CHECKPOINT_MISSING',
  /** A checkpoint file is malformed, truncated or inconsistent with the model. */
  'CHECKPOINT_CORRUPT',
  /** Weights given to a model do not match its parameter names or shapes. */
  'WEIGHTS_MISMATCH',
  /** A resume was asked for a different configuration, phase or dataset than the saved run. */
  'RESUME_MISMATCH',
  /** The U-Net phase was asked for without autoencoder weights. */
  'AUTOENCODER_REQUIRED',
  /** A training step produced a non-finite loss. */
  'NON_FINITE_LOSS',
  /** The output folder already holds a run and --resume was not given. */
  'OUTPUT_EXISTS',
  /** An argument is outside its documented domain (e.g. a negative step count). */
  'INVALID_ARGUMENT',
  /** A training worker (a wasm worker thread or the torch backend's Python process) exited, stopped answering or broke the protocol while work was in flight. */
  'WORKER_FAILED',
  /** The device reported an error (e.g. a WebGPU validation or out-of-memory error). */
  'DEVICE_ERROR',
] as const

export type TrainerErrorCode = (typeof TRAINER_ERROR_CODES)[number]

export class TrainerError extends CodedError<TrainerErrorCode> {}

export function isTrainerError(error: unknown): error is TrainerError {
  return error instanceof TrainerError
}
