// Limits and defaults of the consent book and the inbox. Each value carries the reason it has that size.

/** How often a running node looks into <store>/inbox/ for revocations and manifests to publish. */
export const INBOX_POLL_MS = 1000

// ---- revocations held until their manifest arrives (node/consent/held.ts) ----

/** Revocations held in total: a revocation races its manifest only for the seconds gossip takes, so a few hundred cover a burst across many manifests. */
export const HELD_REVOCATIONS_MAX = 256
/** Bytes held in total: 32 revocations of the largest size gossip carries (512 KiB). */
export const HELD_REVOCATIONS_MAX_BYTES = 16 * 1024 * 1024
/** Revocations held per sending peer: an eighth of the pool, so one identity cannot fill it. */
export const HELD_REVOCATIONS_PER_SENDER = 32
/** Revocations held per issuer (did:key): a rights holder revoking many manifests at once still fits; a key minting junk does not crowd others out. */
export const HELD_REVOCATIONS_PER_ISSUER = 32
/** A manifest that has not arrived within an hour is not racing its revocation; the custodian re-announces both once it has them. */
export const HELD_REVOCATION_TTL_MS = 60 * 60 * 1000

// ---- consent over time ----

/** Node timers cannot wait longer than 2^31 - 1 ms (~24.8 days); a later expiry is re-armed from there. */
export const MAX_TIMER_MS = 2 ** 31 - 1

// ---- re-announcing consent (node/consent/announcer.ts) ----

/** Peers re-announce their own live manifests (and the revocations they applied) this often, so a publisher learns manifests published before it joined. */
export const CONSENT_CALM_REANNOUNCE_MS = 10_000
/** Most consent documents a node re-announces per second: a fifth of the per-peer gossip budget (GOSSIP_RATE_PER_SECOND), so repeating a large book never throttles it at its neighbours, even next to new messages and relayed ones. */
export const CONSENT_ANNOUNCE_PER_SECOND = 4
/** The first consent announcements after start, one per CONSENT_EARLY_REANNOUNCE_MS: peers are still joining the mesh. */
export const CONSENT_EARLY_ANNOUNCEMENTS = 10
/** Pace of the early consent announcements: a joining mesh forms within seconds. */
export const CONSENT_EARLY_REANNOUNCE_MS = 1000
