// The public surface of protocol/: everything a third party needs to verify documents.
export * from './constants.ts'
export * from './digest.ts'
export * from './errors.ts'
export * from './jcs.ts'
export * from './keys.ts'
export * from './safetensors.ts'
