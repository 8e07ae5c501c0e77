// Limits and defaults of the round engine. Each value carries the reason it has that size.

/** Publishers re-announce the latest checkpoint this often, so restarted peers and joiners catch up without a request protocol. */
export const CHECKPOINT_REANNOUNCE_MS = 3_000
/** Trainers re-announce their contribution for the open round this often, so a publisher that restarted mid-round still receives it. */
export const CONTRIBUTION_REANNOUNCE_MS = 3_000
/** The publisher checks quorum and deadline this often; well under a second so closing adds little latency. */
export const ROUND_POLL_MS = 100
/** A checkpoint file (weights or momentum, F32) of the largest config stays under this. */
export const CHECKPOINT_FILE_MAX_BYTES = 256 * 1024 * 1024
/** Signed statements and manifests fetched by digest are small; anything bigger is hostile. */
export const STATEMENT_BLOB_MAX_BYTES = 1024 * 1024
/** A checkpoint's config.json is the model configuration in canonical JSON: kilobytes; 1 MiB is generous. */
export const COMPONENT_CONFIG_MAX_BYTES = 1024 * 1024
/** Rounds of recent losses `coop status` shows. */
export const STATUS_RECENT_LOSSES = 20
/** How often the status snapshot is rewritten when something changed: `coop status` and watchers poll about once a second. */
export const STATUS_WRITE_MS = 1000
/** Default local (inner) Adam steps per round when the charter does not say (DiLoCo uses 500; tiny tests use far fewer). */
export const DEFAULT_INNER_STEPS = 50
/** DiLoCo's outer learning rate (arXiv 2311.08105, section 3). */
export const DEFAULT_OUTER_LR = 0.7
/** DiLoCo's outer Nesterov momentum. */
export const DEFAULT_OUTER_MOMENTUM = 0.9
/** Default round deadline: long enough for one CPU trainer's H steps on emoji32 plus transfer. */
export const DEFAULT_DEADLINE_SECONDS = 600
/** Tensors in a model file; the largest config has a few hundred. */
export const MAX_TENSORS = 4096
/** A fetch that cannot find a blob on any provider is retried after this pause (the holder may not have stored it yet). */
export const FETCH_RETRY_MS = 500
/** Attempts to fetch one blob before the dependent checkpoint or contribution is given up on for now (it is retried when re-announced). */
export const FETCH_ATTEMPTS = 10
/** How long a graceful stop waits for an in-flight training step or aggregation to finish before closing the store. */
export const STOP_GRACE_MS = 20_000
/** Lets the asynchronous log destination write its lines before a fault-injection crash, so tests see them. */
export const CRASH_LOG_FLUSH_MS = 200
/** After its last round a node keeps serving blobs this long, so slower peers can still fetch payloads to verify. */
export const DEFAULT_LINGER_SECONDS = 10
/** A delta whose RMS (over the values its codec carries) is below this fraction of the phase's Adam lr does not count: honest tiny deltas measured 0.063 (U-Net, H = 1) to 5.9 (H = 16), so 1e-3 leaves a 60x margin (docs/THREAT-MODEL.md §10). */
export const TRIVIAL_DELTA_RMS_FRACTION = 1e-3
/** A refusal's reason is kept in its durable record up to this length (it may quote a hostile payload). */
export const REFUSAL_REASON_MAX_CHARS = 300
/** Conflicting checkpoints kept as evidence per round: two prove equivocation; more only fill the disk. */
export const EQUIVOCATION_EVIDENCE_PER_ROUND = 4
/** A checkpoint that failed verification is tried again after this pause (re-announced every few seconds), doubling each time... */
export const VERIFY_RETRY_MIN_MS = 10_000
/** ...up to this: a chain whose payloads were briefly unavailable is still caught up within minutes. */
export const VERIFY_RETRY_MAX_MS = 5 * 60_000
/** Failed checkpoints remembered for the pause above; beyond this the oldest is forgotten (one entry is ~100 bytes). */
export const VERIFY_FAILURES_TRACKED = 1024
