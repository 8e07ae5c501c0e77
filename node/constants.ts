// Limits and defaults of the peer (host, gossip validation, payload transfer, store).
// Each value carries the reason it has that size; change them together with that reason.
import {
  CONTRIBUTION_MAX_BYTES,
  MANIFEST_MAX_BYTES,
  PROVENANCE_MAX_BYTES,
  REVOCATION_MAX_BYTES,
} from '../protocol/constants.ts'

// ---- topics and protocols ----

/** Topic namespace: every topic is scoped by the coop id so two cooperatives never mix messages. */
export const TOPIC_PREFIX = '/diffusion-coop'
/** Bumped when a topic's message format changes incompatibly; old and new peers then simply do not meet. */
export const TOPIC_VERSION = 1
/** The blob stream protocol id; a new major version is a new id so multistream-select negotiates it. */
export const BLOB_PROTOCOL = '/diffusion-coop/blob/1.0.0'

// ---- gossip messages ----

/** go-libp2p's default max pubsub message is 1 MiB; staying under it keeps the coop interoperable. */
export const GOSSIP_MAX_MESSAGE_BYTES = 1024 * 1024 - 1024
/** One gossipsub RPC frame may batch several messages plus control data; the per-message limit is our size stage's job. */
export const GOSSIP_MAX_RPC_BYTES = 4 * GOSSIP_MAX_MESSAGE_BYTES
/** A signed statement smaller than this cannot hold a signature plus its mandatory fields. */
export const GOSSIP_MIN_MESSAGE_BYTES = 64
// Each gossip kind's limit is its own name (GOSSIP_*), distinct from protocol/constants.ts's
// document limits: a document may be larger than gossip can carry (then it moves as a blob).

/** Manifests: the whole gossip budget (~5000 items of ~200 bytes); protocol/ admits up to MANIFEST_MAX_BYTES, issuers split larger sets for gossip. */
export const GOSSIP_MANIFEST_MAX_BYTES = Math.min(GOSSIP_MAX_MESSAGE_BYTES, 1 + MANIFEST_MAX_BYTES)
/** A revocation names one manifest and at most a few thousand item digests (70 bytes each); protocol/ admits up to REVOCATION_MAX_BYTES as a file. */
export const GOSSIP_REVOCATION_MAX_BYTES = Math.min(512 * 1024, 1 + REVOCATION_MAX_BYTES)
/** protocol/'s own cap on a contribution envelope (CONTRIBUTION_MAX_BYTES), plus the kind byte. */
export const GOSSIP_CONTRIBUTION_MAX_BYTES = 1 + CONTRIBUTION_MAX_BYTES
/** A provenance statement lists every contribution and manifest of a round: hundreds fit in the gossip budget (protocol/ admits up to PROVENANCE_MAX_BYTES as a file). */
export const GOSSIP_CHECKPOINT_MAX_BYTES = Math.min(GOSSIP_MAX_MESSAGE_BYTES, 1 + PROVENANCE_MAX_BYTES)
/** The largest consent document (manifest or revocation body) gossip can carry; inbox files and manifests fetched by digest are bounded by it. */
export const CONSENT_DOCUMENT_MAX_BYTES = Math.max(GOSSIP_MANIFEST_MAX_BYTES, GOSSIP_REVOCATION_MAX_BYTES) - 1

// ---- peer scoring ----

/** Score points charged for one REJECTed gossip message; with appSpecificWeight 1, five rejects cross the gossip threshold. */
export const PENALTY_REJECT = 2
/** A flood is cheaper per message than a forgery, but a sustained one still drives the peer to the graylist. */
export const PENALTY_RATE_LIMITED = 1
/** Serving bytes that do not match the requested digest is as bad as a forged message. */
export const PENALTY_BLOB_BAD_BYTES = 10
/** A signed contribution whose payload does not decode or fit the model cost every peer a transfer and a decode: as bad as wrong blob bytes. */
export const PENALTY_BAD_PAYLOAD = 10
/** A zero or near-zero delta is cheap to make and crowds quorums: charged like a rejected message. */
export const PENALTY_TRIVIAL_DELTA = 2
/** Equivocating (two checkpoints signed for one round) is the worst a publisher can do in gossip. */
export const PENALTY_EQUIVOCATION = 50
/** Breaking the blob protocol framing (oversized chunk, bad header) is deliberate misbehaviour. */
export const PENALTY_BLOB_PROTOCOL = 5
/** Penalties halve every 10 minutes so a peer that misbehaved once can earn its way back. */
export const PENALTY_HALF_LIFE_MS = 10 * 60 * 1000
/** Above this many penalised peers, fully decayed records are dropped (a record is ~200 bytes). */
export const PENALTY_MAX_TRACKED_PEERS = 10_000
/** Weight of the application score inside gossipsub's total (P5). */
export const APP_SPECIFIC_WEIGHT = 1
/** P4 weight: invalid deliveries count quadratically: one or two (a relay race on a fresh revocation) cost little, seven on one topic reach the graylist. */
export const INVALID_MESSAGE_DELIVERIES_WEIGHT = -2
/** P4 decay per decay interval (1 s): about 5 minutes to fall to 1% of its value. */
export const INVALID_MESSAGE_DELIVERIES_DECAY = 0.985
/** Cap on the positive, topic-earned part of a score, so good behaviour cannot bank credit to spend on attacks. */
export const TOPIC_SCORE_CAP = 20
/** Below this score a peer's gossip is not emitted to (gossipsub default -10). */
export const GOSSIP_THRESHOLD = -10
/** Below this score we do not publish to a peer (gossipsub default -50). */
export const PUBLISH_THRESHOLD = -50
/** Below this score every RPC of the peer is dropped unread: this is what throttles a hostile flooder. */
export const GRAYLIST_THRESHOLD = -80
/** Peers behind the same IP: volunteers run several nodes per machine, and tests/benches run 16 on loopback. */
export const IP_COLOCATION_THRESHOLD = 32

// ---- flood control (per propagating peer, per topic) ----

/** Token bucket refill: a round produces at most one contribution and a handful of consent messages per peer per second. */
export const GOSSIP_RATE_PER_SECOND = 20
/** Bucket depth: lets a joining peer relay a backlog of manifests without being throttled. */
export const GOSSIP_RATE_BURST = 100
/** Above this many (peer, topic) buckets, full ones are dropped: a full bucket is the same as a new one. */
export const GOSSIP_RATE_MAX_BUCKETS = 10_000
/** Content digests of accepted messages remembered so copies of them cost no token: far more than the documents a coop holds (~80 bytes each, ~5 MB at most). */
export const ACCEPTED_CONTENT_MAX_ENTRIES = 65_536

// ---- blob transfer ----

/** Frame size of the blob stream: 1 MiB halved small-blob latency against 256 KiB on loopback (bench/blob.bench.ts) and, with the 10 s chunk timeout, still only asks 100 KiB/s of a provider. */
export const BLOB_CHUNK_BYTES = 1024 * 1024
/** Largest blob this node will ever fetch or serve; gpu256 checkpoints are about 150 MB. */
export const BLOB_MAX_BYTES = 512 * 1024 * 1024
/** A request frame holds one 'sha256:<64 hex>' digest and a size cap; anything longer is hostile. */
export const BLOB_REQUEST_MAX_BYTES = 256
/** A response header frame is a tiny JSON object. */
export const BLOB_HEADER_MAX_BYTES = 256
/** A chunk that does not arrive within this time means the provider stalled: try the next one. */
export const BLOB_CHUNK_TIMEOUT_MS = 10_000
/** Hard ceiling on one fetch from one provider, so a trickling peer cannot hold us forever (4 MB/s floor for 512 MB). */
export const BLOB_TRANSFER_TIMEOUT_MS = 120_000
/** Dialing and negotiating the protocol with one provider. */
export const BLOB_OPEN_TIMEOUT_MS = 10_000
/** Concurrent blob streams one remote peer may have open to us; more are refused. */
export const BLOB_MAX_STREAMS_PER_PEER = 4
/** Most a yamux stream lets its sender have in flight: under the 4 MiB read buffer libp2p aborts a stream past (maxReadBufferLength). A reader that pauses stops granting window, so what arrives meanwhile is at most this; yamux's default 16 MiB overflowed the buffer and aborted large blob fetches on a loaded peer. */
export const YAMUX_MAX_STREAM_WINDOW_BYTES = 2 * 1024 * 1024
/** Concurrent blob streams we serve in total. Each holds at most one chunk read from disk plus one frame in the muxer (~2 MiB), so 32 bound serving memory to ~70 MiB whatever the blob sizes. */
export const BLOB_MAX_SERVING_STREAMS = 32
/** A requester that does not take a frame within this time is closed: the same patience a requester has with a holder (BLOB_CHUNK_TIMEOUT_MS). */
export const BLOB_SERVE_STALL_TIMEOUT_MS = 10_000
/** When every serving slot is taken, a stream whose reader has not drained for this long gives its slot to a new request: at a 256 KiB muxer window that reader gets under 128 KiB/s, and readers that never read cannot hold the slots against honest ones. */
export const BLOB_EVICT_STALLED_AFTER_MS = 2_000
/** Only a reader that took less than one chunk per BLOB_EVICT_STALLED_AFTER_MS on average since it was admitted can be evicted: a never-reader takes one muxer window (256 KiB) in all, an honest reader that is only briefly stalled has taken far more. */
export const BLOB_EVICT_BELOW_BYTES_PER_SECOND = BLOB_CHUNK_BYTES / (BLOB_EVICT_STALLED_AFTER_MS / 1000)
/** Bytes one peer may pull from us per second, sustained: above most volunteers' uplinks (64 Mbit/s), so honest fetches hit their link first; a peer re-downloading in a loop gets `busy`. */
export const BLOB_PEER_BYTES_PER_SECOND = 8 * 1024 * 1024
/** Per-peer burst: a whole checkpoint of the largest size (weights and momentum) at once, so any honest catch-up step fits. */
export const BLOB_PEER_BYTES_BURST = 2 * BLOB_MAX_BYTES
/** Above this many per-peer byte budgets, full ones are dropped (a full budget is the same as a new one). */
export const BLOB_PEER_BUDGETS_MAX = 10_000
/** Concurrent fetches we run against one provider, so we never trip its per-peer limit. */
export const BLOB_MAX_FETCHES_PER_PROVIDER = 2

// ---- host ----

/** Bootstrap peers are redialed this often while we have no connection at all. */
export const BOOTSTRAP_REDIAL_MS = 5_000
/** mDNS service label prefix; the coop id's hash follows, so LAN discovery only finds the same coop. */
export const MDNS_SERVICE_PREFIX = 'dcoop'
/** Previously met peers redialed at start, most recent first: enough to rejoin a mesh without flooding dials. */
export const KNOWN_PEERS_DIALED_AT_START = 16
/** Listen addresses remembered per peer; identify may report many interfaces, a handful is enough to redial. */
export const MAX_ADDRESSES_PER_PEER_RECORD = 8
/** Waiting for a graceful close of all connections at stop before tearing down. */
export const STOP_TIMEOUT_MS = 5_000

/** First retry of a failed bootstrap dial; doubles per failure (a restarting publisher is back in seconds). */
export const BOOTSTRAP_BACKOFF_MIN_MS = 2_000
/** Longest wait between bootstrap dials: a peer that went away for long is still retried each minute. */
export const BOOTSTRAP_BACKOFF_MAX_MS = 60_000
/** Alone this long: warn, since a node with no peers neither receives checkpoints nor publishes. */
export const NO_PEERS_WARN_MS = 30_000
