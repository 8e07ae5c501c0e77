// Timings of what a running node shows people: the terminal's live line, round summaries and
// the warnings the monitor adds. Each value carries its reason.

/** The publisher's eval loss is one forward pass over a fixed batch (seconds at most); a round's summary never waits longer for it. */
export const EVAL_LOSS_WAIT_MS = 30_000
/** The live line is redrawn at most four times a second: smooth to the eye, negligible work even at hundreds of steps/s. */
export const LIVE_LINE_REDRAW_MS = 250
/** Rejected contributions: the first of each code is logged at once, the rest counted and logged once per window, so a flood is a few lines. */
export const REJECTION_NOTICE_WINDOW_MS = 60_000
/** Trainers connect within seconds of a start; fewer than the quorum for this long is worth a warning (as NO_PEERS_WARN_MS). */
export const QUORUM_WARN_AFTER_MS = 30_000
/** How often the quorum watch counts the trainers it can see. */
export const QUORUM_CHECK_MS = 1000
/** Checkpoints and consent documents refused at gossip are told at most this often (with their count): a flood is a line per check. */
export const REJECTION_CHECK_MS = 5000
