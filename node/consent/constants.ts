// Limits and defaults of the consent book and the inbox. Each value carries the reason it has that size.

/** How often a running node looks into <store>/inbox/ for revocations and manifests to publish. */
export const INBOX_POLL_MS = 1000
