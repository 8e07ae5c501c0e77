// Limits and fixed values of the protocol, each with the reason for its value.
// Every decoder checks the relevant size limit before parsing anything.

/** Safetensors header cap: our largest config has a few hundred tensors (~100 B of header each); 16 MiB leaves 100x room and stops a forged 8-byte length from making us allocate gigabytes (the reference Rust reader caps it at 100 MB). */
export const SAFETENSORS_MAX_HEADER_BYTES = 16 * 1024 * 1024

/** Default cap on a whole safetensors file: the gpu256 config's fp32 weights plus EMA stay well under 2 GiB, and a Node Buffer/Uint8Array cannot usefully exceed it. */
export const SAFETENSORS_DEFAULT_MAX_BYTES = 2 * 1024 * 1024 * 1024

/** Default cap on tensors per file: a U-Net has hundreds of parameter tensors, top-k deltas triple that (idx, val, scale); 100,000 is far above and bounds header-driven work. */
export const SAFETENSORS_DEFAULT_MAX_TENSORS = 100_000

/** Cap on a tensor name's length in UTF-8 bytes: real names are dotted paths under 200 B. */
export const SAFETENSORS_MAX_NAME_BYTES = 1024

/** Cap on a tensor's rank: diffusion weights are at most 4-D; 8 allows headroom. */
export const SAFETENSORS_MAX_RANK = 8

/** Ed25519 sizes fixed by RFC 8032. */
export const ED25519_PUBLIC_KEY_BYTES = 32
export const ED25519_SEED_BYTES = 32
export const ED25519_SIGNATURE_BYTES = 64

/** Multicodec `ed25519-pub` (0xed) as an unsigned varint: the did:key method's prefix for Ed25519 keys. */
export const MULTICODEC_ED25519_PUB = Uint8Array.from([0xed, 0x01])

/** Parsed public keys kept for fast repeated verification; bounded because peers choose the keys. */
export const KEY_CACHE_SIZE = 4096
