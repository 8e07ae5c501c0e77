// Defaults and limits of `coop demo`, each with the reason for its value.

/** Written in --out; ties the folder to one set of parameters (resume or refuse). */
export const RUN_MANIFEST_FILE = 'demo-run.json'
/** Holds the pid of the live demo using --out, so two demos never share a folder. */
export const RUN_LOCK_FILE = 'demo.lock'
/** A run manifest is a few hundred bytes; anything near this is not ours. */
export const RUN_MANIFEST_MAX_BYTES = 1024 * 1024

/** The demo: four peers, one of them the publisher. */
export const DEFAULT_PEERS = 4
/** Fewer than two peers is not a cooperative; more than eight does not fit a 2-core laptop. */
export const MAX_PEERS = 8
/** The first peer (index 0) publishes: it starts first and the others bootstrap from it. */
export const PUBLISHER_INDEX = 0

/** The consent every demo peer's rights holder signs: Twemoji's own license and credit line. */
export const TWEMOJI_CONSENT = {
  license: 'CC-BY-4.0',
  attributionName: 'Twemoji graphics by Twitter, Inc and other contributors',
  attributionUri: 'https://github.com/jdecked/twemoji',
} as const

/**
 * The demo's U-Net predicts v with the cosine noise schedule, where emoji32 alone predicts epsilon on
 * the linear one. Measured in the demo's own setting (`npm run bench:demo-outer -- --set ...`: 4
 * category-disjoint peers, 25 local steps, 40 rounds, six seeds each, 27 Nov, bench/README.md):
 * class accuracy 0.69 against 0.64 after 40 rounds (the worst seed 0.67 against 0.58), 0.49 against
 * 0.35 after 16 and 0.65 against 0.58 after 32, FD 1.0 against 1.4. The cosine schedule alone, with
 * epsilon, was far worse (0.26); v alone about equal (0.65). Past 40 rounds (a fast machine's demo
 * runs 85) the class accuracy evens out (one seed at 80 rounds: 0.69 against 0.75; one demo run of
 * each: 0.69 against 0.72) and the FD stays lower (0.84 against 1.05; 1.79 against 2.11).
 */
const DEMO_DIFFUSION = { 'diffusion.prediction': 'v', 'diffusion.schedule': 'cosine' } as const

/**
 * Default run: 6 autoencoder rounds then U-Net rounds of 25 local steps each, 120 images per
 * category. The U-Net rounds are planned from a measured step time (node/demo/plan.ts) unless
 * --rounds is given; `unetRounds` here is what --rounds defaults to when planning is off. The
 * autoencoder reconstructs recognisably after ~135 steps; the U-Net gets the rest of the 15-minute
 * budget, which is what decides how emoji-like the final grid is.
 *
 * 25 local steps rather than 50, measured 2026-11-26 on the default demo (4 peers, category split,
 * int8): 12 rounds of 25 (300 steps per peer) ended at eval loss 0.128 and Fréchet distance 3.97,
 * against 0.151 and 4.92 for 9 rounds of 50 (450 steps per peer); class accuracy 0.23 and 0.26
 * (16 per class, within noise). On category-disjoint peers, fewer local steps between averagings
 * drift less. The autoencoder keeps its 150 local steps per peer (6 rounds of 25).
 */
export const DEFAULT_RUN = {
  config: 'emoji32',
  autoencoderRounds: 6,
  unetRounds: 40,
  innerSteps: 25,
  imagesPerCategory: 120,
  /** All nine categories (empty = all): measured, four categories (one per peer) gave no clearer grids in the same budget. */
  categories: [] as readonly string[],
  /** Model config overrides on top of `config`: emoji32 with the demo's diffusion (below). */
  configOverrides: DEMO_DIFFUSION as Readonly<Record<string, unknown>>,
} as const

/** What the default demo promises (issue 10): done within 15 minutes on a 2-core machine, outputs included. */
export const DEMO_TIME_LIMIT_SECONDS = 15 * 60
/**
 * What a time-boxed run still does after its outputs (time-box.ts): stop the peers (each flushes
 * its store: 1-3 s), the memorization audit and the report (7 s in d-t6, 27 Nov), and what the
 * user's clock counts before the demo's own (npm and Node start: ~2 s). Rounded up.
 */
export const DEMO_TIME_BOX_TAIL_SECONDS = 20
/** setup/<this>: written when the time box stopped the run early (time-box.ts TimeBoxStop); metrics.json's `timeBox`. */
export const TIME_BOX_FILE = 'time-box.json'
/** U-Net round intervals the time box averages: the last few, since a round's time moves with the machine's load. */
export const TIME_BOX_RECENT_ROUNDS = 5
/**
 * What the plan (plan.ts) fits its U-Net rounds into: 1.3 x the time limit, so that the charter
 * holds more rounds than a run is likely to reach, and the time box (time-box.ts) ends the run
 * from its measured pace. The calibration is a few seconds on a shared machine and reads 0.17 to
 * 0.33 CPU-s per U-Net step while the peers then run at ~0.21-0.28 (27 Nov): planned to the limit
 * itself, a high reading left minutes unused (d-t2: 21 rounds in 9 min 46 s) and a low one
 * overran. 1.3 covers the high readings seen (0.33 against ~0.25).
 */
export const DEMO_PLAN_SECONDS = DEMO_TIME_LIMIT_SECONDS * 1.3
/** Setup (data, keys, consent, charter), the calibration, the peers' start and the checkpoint checks: measured 60-90 s at low load. */
export const DEMO_FIXED_SECONDS = 90
/**
 * A training step in a peer costs this many times the step the demo's calibration measured: four
 * one-thread peers on two cores, plus each node's gossip, validation and checkpoint recomputation.
 * Measured 2026-11-27 at low load (emoji32, 4 peers of 1 thread, 2 cores), U-Net rounds of 25 steps
 * against the same run's calibration: 16.8 s at 0.33 CPU-s calibrated (/tmp/exp/d-t1), 15.1 s at
 * 0.30 (d-t2), 13.6 s at 0.19 (d-t3), i.e. x0.84, x0.81 and x1.1 after the round overhead. The
 * calibration moves more than the peers do on this shared machine; 1 is the middle. (1.4 with the
 * earlier two threads per peer, whose workers waited on each other.)
 */
export const DEMO_PEER_STEP_COST_FACTOR = 1
/** Per round: gossip, aggregation, recomputation by every peer (0.5-0.7 s at 4 peers, bench:rounds), start and end of training. */
export const DEMO_ROUND_OVERHEAD_SECONDS = 3
/**
 * Output work per U-Net round in calibrated-step equivalents of the stage's wall time: the grid's
 * 54 samples x 20 DDIM steps with guidance, its checks and eval, with the grids shared by two
 * threads (grids.ts). Measured 2026-11-27: a 15-round run's outputs took 91 s on one thread and
 * 71 s with the grid worker; a 21-round run's (d-t2) ~80 s in all, ~2.4 s (8 steps of 0.30 CPU-s)
 * per round once the final score and the audit are taken out; a 43-round run's (d-t3) 135 s, ~2.6 s
 * (13 steps of 0.19 CPU-s) per round.
 */
export const DEMO_OUTPUT_STEPS_PER_ROUND = 14
/** The final quality score: 144 samples x 20 DDIM steps with guidance, plus the classifier, in training-step equivalents. */
export const DEMO_FINAL_QUALITY_STEPS = 65
/** Fewest U-Net rounds a planned demo runs, however slow the machine: fewer than 300 local steps per peer show nothing but noise (it then takes longer than the budget, and says so). */
export const DEMO_MIN_UNET_ROUNDS = 12
/** Most U-Net rounds a planned demo runs: beyond 3,000 local steps per peer the averaged grid barely changes at this model size. */
export const DEMO_MAX_UNET_ROUNDS = 120

/** --smoke: the same path on the tiny config, about a minute end to end. */
export const SMOKE_RUN = {
  config: 'tiny',
  autoencoderRounds: 2,
  unetRounds: 2,
  innerSteps: 8,
  imagesPerCategory: 12,
  categories: [] as readonly string[],
  configOverrides: DEMO_DIFFUSION as Readonly<Record<string, unknown>>,
} as const

/** How long a node may take to start and write its listen addresses (tfjs + libp2p load). */
export const NODE_START_TIMEOUT_MS = 60_000
/** After SIGINT, how long a node may take to flush its store before it is killed: above the node's own 20 s stop grace. */
export const NODE_STOP_GRACE_MS = 30_000
/** With no log line from any node for this long, the run is declared stalled rather than hanging forever. */
export const STALL_TIMEOUT_MS = 180_000
/** A node's log line longer than this is not a pino record of ours; it is skipped, not parsed. */
export const MAX_LOG_LINE_BYTES = 64 * 1024
/** Keep this many of the latest log lines per node to show when it dies. */
export const LOG_TAIL_LINES = 20
/** The live view redraws at most this often: faster only burns the CPU the peers train on. */
export const LIVE_VIEW_REDRAW_MS = 250

/**
 * Guidance scale for the sample grids and the quality score. Measured on the 9-round default demo of
 * 2026-11-26 (its checkpoints re-scored, 32 samples per class, mean of the last 2-4 rounds): class
 * accuracy 0.21-0.24 at 3, 0.27-0.28 at 5, 0.31-0.34 at 7, 0.34 at 10; the Fréchet distance rises
 * past 7 (4.5-4.8 at 3, 4.9-5.5 at 7, 5.7-6.4 at 10).
 */
export const SAMPLE_GUIDANCE = 7
/** Images per category row of the sample grids: enough to see a row's variety, few enough to render every round. */
export const SAMPLES_PER_CLASS = 6
/** DDIM steps for the grids: 20 are visually indistinguishable from 50 at 32x32 and cost 40% as much. */
export const SAMPLE_STEPS = 20
/**
 * Sample grids come from the mean of the last U-Net checkpoints up to the round shown (Polyak
 * averaging over rounds, the cooperative's counterpart of the EMA weights single-process training
 * samples from): the last SAMPLE_AVERAGE_FRACTION of the U-Net rounds so far, at least one and at
 * most SAMPLE_AVERAGE_MAX_ROUNDS. A fixed window of 8 was measured on a 20-round run (the raw
 * checkpoint's grid pale and noisy, the mean of the last 8 saturated); on the 9-round default run
 * the same 8 reached back to the first rounds' noise: class accuracy 0.15 (guidance 3, 16 samples
 * per class) against 0.22 with the last 3 and 0.24 with the last 1, Fréchet distance 5.9 against
 * 4.7 (last 3) and 6.2 (last 1).
 */
export const SAMPLE_AVERAGE_FRACTION = 0.3
/** The widest sampling window: beyond 8 rounds the mean barely changes at this model size. */
export const SAMPLE_AVERAGE_MAX_ROUNDS = 8
/** Fixed sampling seed so that grids of different rounds differ only by the model. */
export const SAMPLE_SEED = 7
/** Samples per class behind metrics.json's quality (the final grid's model): issue 10's 16, 144 on Twemoji. */
export const QUALITY_PER_CLASS = 16
/** Seed of those samples: not the grid's, so the headline figure is not computed on the grid alone. */
export const QUALITY_SEED = 11
