// Limits and defaults of trainer/, each with the reason for its value.

/** Image files are photos or icons; a file larger than this is not training data for these models (and would stall decoding). */
export const DATA_MAX_FILE_BYTES = 32 * 1024 * 1024
/** Decoded pixel bound passed to sharp, so a decompression bomb is rejected before allocation. */
export const DATA_MAX_INPUT_PIXELS = 8192 * 8192
/** Files considered per folder load: bounds memory (pixels are held as float32) and load time. */
export const DATA_MAX_FILES = 200_000
/** Class subfolders: the configs' class lists are far smaller. */
export const DATA_MAX_CLASSES = 10_000
/** Decodes in flight at once: sharp uses libuv's pool, so a few keep it busy without piling up buffers. */
export const DATA_DECODE_CONCURRENCY = 4
/** File extensions the loader decodes (lower-cased); anything else in the folder is ignored, not an error. */
export const DATA_IMAGE_EXTENSIONS = ['.png', '.jpg', '.jpeg', '.gif', '.webp']
/** Largest embedded XMP packet parsed for opt-out signals: a JPEG's main packet is under 64 KiB and real PNG/WebP packets are far below; a larger one refuses the file rather than being parsed. */
export const EMBEDDED_XMP_MAX_BYTES = 4 * 1024 * 1024
/** Transparent pixels are composited on white, the background Twemoji and icons are drawn for. */
export const DATA_BACKGROUND = { r: 255, g: 255, b: 255 }

/** Adam defaults from Kingma & Ba (2015); epsilon 1e-8 as in PyTorch. */
export const ADAM_BETA1 = 0.9
export const ADAM_BETA2 = 0.999
export const ADAM_EPSILON = 1e-8
/** Global gradient-norm clip: keeps a rare high-noise batch from wrecking a small model (as in most diffusion trainers). */
export const GRAD_CLIP_NORM = 1.0
/** EMA warm-up (decay = min(decay, (1+step)/(10+step))) so short runs are not dominated by the random init. */
export const EMA_WARMUP_OFFSET = 10
/** Log-variance of the autoencoder posterior is clamped as in LDM's DiagonalGaussianDistribution. */
export const LOGVAR_MIN = -30
export const LOGVAR_MAX = 20
/** Momentum of the running latent RMS kept with the autoencoder weights (scales latents to ~unit variance for diffusion). */
export const LATENT_RMS_MOMENTUM = 0.99
/** GroupNorm epsilon, as in PyTorch. */
export const GROUPNORM_EPSILON = 1e-5
/** Fraction of a dataset held out for evalLoss, when the dataset is large enough to spare it. */
export const EVAL_HOLDOUT_FRACTION = 0.1
/** Below this many images, evalLoss uses training images: holding out would starve training. */
export const EVAL_HOLDOUT_MIN_DATASET = 40
/** Seed of the fixed noise, timesteps and batch of evalLoss: the same for every peer and every run. */
export const EVAL_SEED = 0x5eed
/** Checkpoint tensor files larger than this are refused before reading (gpu256 weights + Adam state are ~1.5 GB). */
export const TRAINING_CHECKPOINT_MAX_BYTES = 4 * 1024 * 1024 * 1024
/** Checkpoint JSON files (config, state) are small; bound them before parsing. */
export const CHECKPOINT_JSON_MAX_BYTES = 64 * 1024 * 1024
/** Images encoded to latents per forward pass when a U-Net session starts: bounds activation memory. */
export const ENCODE_CHUNK = 64
/** Default training threads on wasm: the two cores; more cut a batch of 32 into shards too small to run GEMMs well. */
export const DEFAULT_MAX_TRAINING_THREADS = 2
/** Upper bound on `--threads`: each thread holds its own wasm instance (~100s of MB at emoji32). */
export const MAX_TRAINING_THREADS = 16
/** A training worker with no session stops after this long: the next session (often seconds later) reuses it warm. */
export const IDLE_WORKER_MS = 10_000
