// Thresholds and defaults of the memorization audit, each with its source or reason.

/**
 * Near-copy distance: normalised ℓ2 = sqrt(mean((a - b)^2)) over pixels scaled to [0, 1], the
 * distance Carlini et al. use to call a generation an extracted training image ("Extracting
 * Training Data from Diffusion Models", USENIX Security 2023, arXiv 2301.13188, §4: δ = 0.15).
 */
export const AUDIT_L2_THRESHOLD = 0.15

/**
 * Ratio test: the sample nearest to an image must be at most a third as far from it as from any
 * other training image. A sample close to many images (a blurry average, a white background
 * shared by icons) is not a copy of one of them. This is the relative-distance idea of Carlini et
 * al. 2023 (§5, CIFAR-10: distance to the nearest training image relative to the others) in the
 * form of Lowe's nearest/second-nearest ratio test (IJCV 2004), at the 1/3 cut the issue names.
 */
export const AUDIT_RATIO_THRESHOLD = 1 / 3

/** Samples per class by default: enough that a memorised class reproduces its images at least once in tests and the demo, cheap on a CPU. */
export const AUDIT_DEFAULT_SAMPLES_PER_CLASS = 16

/** Upper bound on samples per class: sampling cost grows linearly; 1,024 covers a thorough audit of a small model. */
export const AUDIT_MAX_SAMPLES_PER_CLASS = 1024

/** Seed of the audit's samples: fixed, so the same checkpoint gives the same audit.json. */
export const AUDIT_SEED = 0xa0d17

/** Side of the thumbnails in audit.html, in CSS pixels: images are 16-32 px, scaled up to be seen. */
export const AUDIT_THUMBNAIL_PX = 96

/** Longest a scheduled audit (charter `audit.every`) may run: a tiny model audits in seconds, a demo-sized one in minutes; past this it is killed and logged. */
export const AUDIT_SCHEDULED_TIMEOUT_MS = 30 * 60 * 1000

/** How long stopping the node waits for a scheduled audit in flight before killing it: the last round's audit should land, a stop should not hang. */
export const AUDIT_STOP_WAIT_MS = 5 * 60 * 1000

/** Niceness of the audit process: training is the round's critical path and wins the CPU. */
export const AUDIT_SCHEDULED_NICENESS = 10

/** File names a scheduled audit adds to the checkpoint directory (`coop summary` reads audit.dsse.json). */
export const AUDIT_DIR_FILES = {
  report: 'audit.json',
  page: 'audit.html',
  statement: 'audit.dsse.json',
} as const
