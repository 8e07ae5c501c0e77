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
