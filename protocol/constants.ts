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

/** Most signatures on one DSSE envelope: publisher sets are small committees; 64 bounds verification work per envelope. */
export const DSSE_MAX_SIGNATURES = 64

/** DSSE payloadType of in-toto statements, fixed by the in-toto attestation framework. */
export const IN_TOTO_PAYLOAD_TYPE = 'application/vnd.in-toto+json'
/** `_type` of an in-toto Statement v1. */
export const IN_TOTO_STATEMENT_TYPE = 'https://in-toto.io/Statement/v1'
/** predicateType of a ContributionStatement (versioned: a new layout gets a new URI). */
export const CONTRIBUTION_PREDICATE_TYPE = 'https://diffusion-coop.dev/attestation/contribution/v1'
/** predicateType of a CheckpointProvenance (v2: exclusions as a summary plus a details document, so the predicate never outgrows a gossip message). */
export const PROVENANCE_PREDICATE_TYPE = 'https://diffusion-coop.dev/attestation/checkpoint-provenance/v2'
/** predicateType of a MemorizationAudit (docs/PROTOCOL.md §9b). */
export const AUDIT_PREDICATE_TYPE = 'https://diffusion-coop.dev/attestation/memorization-audit/v1'
/** Largest MemorizationAudit envelope: AUDIT_MAX_LIST flagged digests (~75 B) plus AUDIT_MAX_HOLDERS holders (~250 B), base64-wrapped, stay under it; the per-image table stays in audit.json. */
export const AUDIT_MAX_BYTES = 16 * 1024 * 1024
/** Most flagged images or sampled classes one audit lists: as many as a manifest's items. */
export const AUDIT_MAX_LIST = 100_000
/** Most rights holders one audit lists: a cooperative's membership, with room. */
export const AUDIT_MAX_HOLDERS = 10_000
/** predicateType of an UnlearningReceipt (docs/PROTOCOL.md §9d). */
export const RECEIPT_PREDICATE_TYPE = 'https://diffusion-coop.dev/attestation/unlearning-receipt/v1'
/** Largest UnlearningReceipt envelope: RECEIPT_MAX_LIST item digests (~75 B each), base64-wrapped, stay under it. */
export const RECEIPT_MAX_BYTES = 16 * 1024 * 1024
/** Most revoked items or revocations one receipt lists: as many as a manifest's items. */
export const RECEIPT_MAX_LIST = 100_000
/** Most checkpoints one receipt supersedes: a rollback reaches back at most a whole phase's rounds. */
export const RECEIPT_MAX_SUPERSEDED = 100_000
/** DSSE payloadType of a CoopCharter (a plain JSON document, not an in-toto statement). */
export const CHARTER_PAYLOAD_TYPE = 'application/vnd.diffusion-coop.charter+json'

/** Largest ContributionStatement envelope: the predicate lists at most CONTRIBUTION_MAX_MANIFESTS digests (~75 B each) plus fixed fields; 256 KiB keeps it well inside one 1 MiB gossip message. */
export const CONTRIBUTION_MAX_BYTES = 256 * 1024
/** Most manifests one contribution may cite: a node's local library, split into manifests; bounds the statement. */
export const CONTRIBUTION_MAX_MANIFESTS = 1024
/** Largest CheckpointProvenance envelope: contributions x manifests lists for a round of many peers; moved as a payload by digest, not gossiped inline. */
export const PROVENANCE_MAX_BYTES = 8 * 1024 * 1024
/** Most contributions aggregated into one checkpoint: far above any quorum we run, bounds verification work. */
export const PROVENANCE_MAX_CONTRIBUTIONS = 4096
/** Most digests in a provenance list (manifests, attribution) and in each list of an exclusion details document. */
export const PROVENANCE_MAX_LIST = 100_000
/** Largest exclusion details document: three lists of PROVENANCE_MAX_LIST digests at ~72 bytes each. */
export const EXCLUSION_DETAILS_MAX_BYTES = 24 * 1024 * 1024
/** Most files in a checkpoint subject (model, config, state, samples). */
export const PROVENANCE_MAX_FILES = 64
/** Longest checkpoint file name: a plain name such as `model.safetensors`; every file system stores 128 bytes. */
export const CHECKPOINT_FILE_NAME_MAX_LENGTH = 128
/** The checkpoint file a child's `parent.checkpoint` names: the weights. */
export const CHECKPOINT_MODEL_FILE = 'model.safetensors'
/** The outer optimiser momentum, signed like the weights: recomputing the next checkpoint needs it. */
export const CHECKPOINT_MOMENTUM_FILE = 'momentum.safetensors'
/** Largest charter envelope: the model config plus a few publisher ids; 1 MiB fits one gossip message. */
export const CHARTER_MAX_BYTES = 1024 * 1024
/** Most publishers in a charter: a signing committee, not a membership list. */
export const CHARTER_MAX_PUBLISHERS = 64
/** Most peers in an allowlist admission policy. */
export const CHARTER_MAX_ALLOWLIST = 10_000
/** Most SPDX license ids a charter may accept. */
export const CHARTER_MAX_LICENSES = 256

/** Most items in one consent manifest: 100,000 images keep a manifest under ~16 MiB and its verification under a second; larger collections are split into several manifests. */
export const MANIFEST_MAX_ITEMS = 100_000
/** Largest manifest file: MANIFEST_MAX_ITEMS items at ~150 B each plus per-item license/attribution headroom. */
export const MANIFEST_MAX_BYTES = 32 * 1024 * 1024
/** Largest revocation notice: it may list every item of the largest manifest (~75 B per digest). */
export const REVOCATION_MAX_BYTES = 16 * 1024 * 1024
/** Largest image file a manifest may describe: 256 MiB bounds per-item hashing; training images are far smaller. */
export const MANIFEST_MAX_ITEM_BYTES = 256 * 1024 * 1024
/** The VC 2.0 base context; VC 2.0 maps undefined terms through its @vocab, so no extra context is fetched or needed. */
export const VC_V2_CONTEXT = 'https://www.w3.org/ns/credentials/v2'
/** Media types a consent manifest may list: the image formats the trainer can decode. */
export const MANIFEST_MEDIA_TYPES = ['image/gif', 'image/jpeg', 'image/png', 'image/webp'] as const
