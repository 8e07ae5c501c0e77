// The libp2p host of a coop peer: TCP + Noise + Yamux, identify, ping, gossipsub (StrictSign,
// peer scoring fed by our own validators) on the coop's three topics, and the blob protocol.
import { createHash } from 'node:crypto'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { gossipsub, StrictSign } from '@libp2p/gossipsub'
import type { GossipSub, Message } from '@libp2p/gossipsub'
import { createTopicScoreParams } from '@libp2p/gossipsub/score'
import type { TopicScoreParams } from '@libp2p/gossipsub/score'
import { identify } from '@libp2p/identify'
import type { Libp2p, PeerId, PrivateKey } from '@libp2p/interface'
import { mdns } from '@libp2p/mdns'
import { ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { multiaddr } from '@multiformats/multiaddr'
import type { Multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'
import type { Logger } from 'pino'
import {
  APP_SPECIFIC_WEIGHT,
  BLOB_MAX_STREAMS_PER_PEER,
  BLOB_PROTOCOL,
  BOOTSTRAP_BACKOFF_MAX_MS,
  BOOTSTRAP_BACKOFF_MIN_MS,
  BOOTSTRAP_REDIAL_MS,
  KNOWN_PEERS_DIALED_AT_START,
  MDNS_SERVICE_PREFIX,
  MAX_ADDRESSES_PER_PEER_RECORD,
  GOSSIP_MAX_MESSAGE_BYTES,
  GOSSIP_MAX_RPC_BYTES,
  GOSSIP_THRESHOLD,
  GRAYLIST_THRESHOLD,
  INVALID_MESSAGE_DELIVERIES_DECAY,
  INVALID_MESSAGE_DELIVERIES_WEIGHT,
  IP_COLOCATION_THRESHOLD,
  PENALTY_REJECT,
  PUBLISH_THRESHOLD,
  STOP_TIMEOUT_MS,
  YAMUX_MAX_STREAM_WINDOW_BYTES,
  TOPIC_SCORE_CAP,
} from '../constants.ts'
import { componentLogger } from '../log.ts'
import { type GossipErrorCode, GossipValidationError } from './gossip-errors.ts'
import {
  type GossipValidator,
  toTopicValidatorFn,
  type TopicValidationStats,
  ValidationCounters,
} from './gossip-validator.ts'
import { AcceptedContent } from './accepted-content.ts'
import { PeerPenalties } from './penalties.ts'
import { RateLimiter } from './rate-limit.ts'
import { type BlobSource, BlobService, type BlobTimeouts, type FetchBlobOptions } from './blob.ts'
import type { BlobServingLimits, BlobServingStats } from './blob-server.ts'
import { TOPIC_NAMES, type TopicName, topicString } from './topics.ts'

export interface CoopHostOptions {
  /** The node's persisted Ed25519 peer key: its PeerId is the node's identity in every statement. */
  privateKey: PrivateKey
  /** Multiaddrs to listen on, e.g. '/ip4/0.0.0.0/tcp/4001' ('/tcp/0' picks a free port). */
  listen: string[]
  /** Multiaddrs (with /p2p/<peerId>) dialed at start and redialed while unconnected. */
  bootstrap: string[]
  /** LAN discovery by multicast DNS. */
  mdns?: boolean
  coopId: string
  log?: Logger
  /** The blobs this node serves to others (normally the store). */
  blobs?: BlobSource
  /** Blob transfer timeouts (defaults in constants.ts). */
  blobTimeouts?: Partial<BlobTimeouts>
  /** Blob serving limits: slots, stall and eviction times, per-peer byte budget (defaults in constants.ts). */
  blobServing?: Partial<BlobServingLimits>
  /** Where peers met are remembered (the store's `peers` table), so a restart redials them even if every bootstrap peer is gone. */
  peerRecords?: PeerRecords
}

/** The part of a store table the host uses to remember peers. */
export interface PeerRecords {
  put(key: string, value: unknown): Promise<void>
  entries(range?: { limit?: number }): Promise<[string, unknown][]>
}

export interface PeerRecord {
  addrs: string[]
  lastSeen: string
}

export interface AcceptedMessage {
  /** Author of the message (its gossipsub signature was verified). */
  from: string
  /** The peer that relayed it to us. */
  propagationSource: string
  data: Uint8Array
}

export type MessageHandler = (msg: AcceptedMessage) => void | Promise<void>

export interface CoopHost {
  readonly peerId: string
  readonly coopId: string
  start(): Promise<void>
  /** Unsubscribes (so peers drop us from their meshes), closes every connection gracefully, stops. */
  stop(): Promise<void>
  multiaddrs(): string[]
  /** Publishes a gossip message; refuses messages over the gossip size limit. Returns how many peers it went to. */
  publish(topic: TopicName, bytes: Uint8Array): Promise<{ recipients: number }>
  /** Installs the validator of a topic; until one is installed the topic accepts nothing. */
  setValidator(topic: TopicName, validate: GossipValidator): void
  /** Subscribes a handler to accepted messages of a topic; returns the unsubscribe function. */
  onMessage(topic: TopicName, handler: MessageHandler): () => void
  /** This node's gossipsub score of the peer (0 for unknown peers). */
  peerScore(peerId: string): number
  /** The application-specific part of the score (minus decayed penalty points). */
  appScore(peerId: string): number
  /** Per-code counts of the penalties charged to the peer. */
  penaltyCounts(peerId: string): Record<string, number>
  /** Peers charged a penalty that has not decayed to nothing (for metrics and the status page). */
  penalizedPeers(): string[]
  connectedPeers(): string[]
  /** Peers known to subscribe to the topic. */
  topicPeers(topic: TopicName): string[]
  /** Charges a peer for misbehaviour detected outside gossip validation (e.g. a bad payload). */
  penalize(peerId: string, code: GossipErrorCode, points?: number): void
  validationStats(): Partial<Record<TopicName, TopicValidationStats>>
  dial(address: string): Promise<void>
  setBlobSource(source: BlobSource | undefined): void
  /** Fetches a blob by digest from the first provider delivering matching bytes. */
  fetchBlob(digest: string, options: FetchBlobOptions): Promise<Uint8Array>
  /** What blob serving did: streams served now and at most, bytes, refusals, slow readers cut, evictions. */
  blobServingStats(): BlobServingStats
  /** The underlying node, for tests and diagnostics. */
  readonly libp2p: Libp2p
}

/**
 * The mDNS service name is scoped by coop, so nodes of other cooperatives on the same LAN are
 * neither announced to nor dialed. DNS labels are at most 63 bytes: the coop id is hashed.
 */
export function mdnsServiceTag(coopId: string): string {
  return `_${MDNS_SERVICE_PREFIX}-${createHash('sha256').update(coopId).digest('hex').slice(0, 16)}._udp.local`
}

/** Why a dial failed, in one bounded line (libp2p wraps the socket error: connection refused, timeout, wrong peer). */
function dialFailureReason(err: unknown): string {
  if (!(err instanceof Error)) return String(err).slice(0, 200)
  const inner = err instanceof AggregateError ? err.errors.find((e) => e instanceof Error) : undefined
  const source = inner instanceof Error ? inner : err
  const text = `${source.name === 'Error' ? '' : `${source.name}: `}${source.message}`
  return text.slice(0, 200)
}

type GossipSubWithScore = GossipSub & { getScore(peerId: string): number }

function topicScoreParams(): TopicScoreParams {
  return createTopicScoreParams({
    topicWeight: 1,
    // P1: a little credit for staying in the mesh, capped, so honest long-lived peers sit above zero.
    timeInMeshWeight: 0.01,
    timeInMeshQuantum: 1000,
    timeInMeshCap: 300,
    // P2: credit for being first to deliver valid messages.
    firstMessageDeliveriesWeight: 1,
    firstMessageDeliveriesDecay: 0.9,
    firstMessageDeliveriesCap: 10,
    // P3/P3b off: coop topics are sparse (a few messages per round), so a delivery-rate deficit
    // says nothing about a peer and would push honest peers negative between rounds.
    meshMessageDeliveriesWeight: 0,
    meshFailurePenaltyWeight: 0,
    // P4: every REJECTed message counts quadratically against the peer that delivered it.
    invalidMessageDeliveriesWeight: INVALID_MESSAGE_DELIVERIES_WEIGHT,
    invalidMessageDeliveriesDecay: INVALID_MESSAGE_DELIVERIES_DECAY,
  })
}

export async function createCoopHost(options: CoopHostOptions): Promise<CoopHost> {
  const log = options.log ?? componentLogger('p2p')
  const topics = new Map<TopicName, string>(
    TOPIC_NAMES.map((name) => [name, topicString(options.coopId, name)]),
  )
  const topicByString = new Map<string, TopicName>([...topics].map(([name, value]) => [value, name]))
  const penalties = new PeerPenalties()
  const counters = new ValidationCounters()
  const rateLimiter = new RateLimiter()
  const validators = new Map<TopicName, GossipValidator>()
  const handlers = new Map<TopicName, Set<MessageHandler>>()
  const bootstrap: Multiaddr[] = options.bootstrap.map((address) => multiaddr(address))

  const node = await createLibp2p({
    start: false,
    privateKey: options.privateKey,
    addresses: { listen: options.listen },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux({ streamOptions: { maxStreamWindowSize: YAMUX_MAX_STREAM_WINDOW_BYTES } })],
    peerDiscovery: options.mdns === true ? [mdns({ serviceTag: mdnsServiceTag(options.coopId) })] : [],
    services: {
      identify: identify(),
      ping: ping(),
      pubsub: gossipsub({
        globalSignaturePolicy: StrictSign,
        emitSelf: false,
        // A lone publisher must not crash: the round engine republishes once peers join.
        allowPublishToZeroTopicPeers: true,
        // Our validators decide what is forwarded; gossipsub still verifies envelope signatures.
        asyncValidation: false,
        // Peers cannot make us track arbitrary topics.
        allowedTopics: [...topics.values()],
        maxInboundDataLength: GOSSIP_MAX_RPC_BYTES,
        scoreParams: {
          topics: Object.fromEntries([...topics.values()].map((topic) => [topic, topicScoreParams()])),
          topicScoreCap: TOPIC_SCORE_CAP,
          appSpecificScore: (peerId: string) => -penalties.points(peerId),
          appSpecificWeight: APP_SPECIFIC_WEIGHT,
          IPColocationFactorThreshold: IP_COLOCATION_THRESHOLD,
        },
        scoreThresholds: {
          gossipThreshold: GOSSIP_THRESHOLD,
          publishThreshold: PUBLISH_THRESHOLD,
          graylistThreshold: GRAYLIST_THRESHOLD,
        },
      }),
    },
  })
  const pubsub = node.services.pubsub as GossipSubWithScore
  const peerId = node.peerId.toString()

  const wrapperDeps = { counters, penalties, rateLimiter, accepted: new AcceptedContent(), log }
  for (const [name, topic] of topics) {
    pubsub.topicValidators.set(
      topic,
      toTopicValidatorFn(name, () => validators.get(name), wrapperDeps),
    )
  }

  pubsub.addEventListener('gossipsub:message', (event) => {
    const { msg, propagationSource } = event.detail
    const name = topicByString.get(msg.topic)
    if (name === undefined || msg.type !== 'signed') return
    const accepted: AcceptedMessage = {
      from: msg.from.toString(),
      propagationSource: propagationSource.toString(),
      data: msg.data,
    }
    for (const handler of handlers.get(name) ?? []) {
      Promise.resolve()
        .then(() => handler(accepted))
        .catch((err: unknown) => log.error({ topic: name, err }, 'gossip message handler failed'))
    }
  })

  const blobService = new BlobService(
    {
      openStream: (peer: PeerId, protocol: string, opts: { signal: AbortSignal }) =>
        node.dialProtocol(peer, protocol, opts),
      penalize: (peer, code, points) => penalties.add(peer, code, points),
      log,
      ...(options.blobTimeouts === undefined ? {} : { timeouts: options.blobTimeouts }),
      ...(options.blobServing === undefined ? {} : { servingLimits: options.blobServing }),
    },
    options.blobs,
  )

  node.addEventListener('peer:discovery', (event) => {
    if (node.status !== 'started' || event.detail.id.equals(node.peerId)) return
    if (node.getConnections(event.detail.id).length > 0) return
    node
      .dial(event.detail.id)
      .catch((err: unknown) =>
        log.debug({ peer: event.detail.id.toString(), err }, 'dial of discovered peer failed'),
      )
  })

  // Remember every peer that speaks the blob protocol (a coop node) with the addresses it listens on.
  node.addEventListener('peer:identify', (event) => {
    const { peerId: remote, listenAddrs, protocols } = event.detail
    if (options.peerRecords === undefined || !protocols.includes(BLOB_PROTOCOL)) return
    const addrs = listenAddrs
      .map((a) => a.toString())
      .filter((a) => a.length <= 256)
      .slice(0, MAX_ADDRESSES_PER_PEER_RECORD)
    if (addrs.length === 0) return
    const record: PeerRecord = { addrs, lastSeen: new Date().toISOString() }
    options.peerRecords
      .put(remote.toString(), record)
      .catch((err: unknown) => log.warn({ err }, 'could not save peer record'))
  })

  const dialKnownPeers = async (): Promise<void> => {
    if (options.peerRecords === undefined) return
    const records = (await options.peerRecords.entries())
      .filter((entry): entry is [string, PeerRecord] =>
        Array.isArray((entry[1] as PeerRecord | undefined)?.addrs),
      )
      .sort((x, y) => (x[1].lastSeen < y[1].lastSeen ? 1 : -1))
      .slice(0, KNOWN_PEERS_DIALED_AT_START)
    await Promise.all(
      records.map(async ([remote, record]) => {
        if (remote === peerId || node.getConnections().some((c) => c.remotePeer.toString() === remote)) return
        try {
          const addrs = record.addrs.map((a) => multiaddr(a.includes('/p2p/') ? a : `${a}/p2p/${remote}`))
          await node.dial(addrs, { signal: AbortSignal.timeout(BOOTSTRAP_REDIAL_MS) })
          log.debug({ peer: remote }, 'reconnected to a known peer')
        } catch (err) {
          log.debug({ peer: remote, err }, 'known peer unreachable')
        }
      }),
    )
  }

  let redialTimer: NodeJS.Timeout | undefined
  // Per bootstrap address: failed dials in a row and when the next try is due (exponential backoff).
  const bootstrapState = new Map<string, { failures: number; nextAt: number; dialing: boolean }>()
  const dialBootstrap = async (): Promise<void> => {
    await Promise.all(
      bootstrap.map(async (address) => {
        const target = address.getComponents().findLast((c) => c.name === 'p2p')?.value
        if (target === peerId) return
        const key = address.toString()
        const state = bootstrapState.get(key) ?? { failures: 0, nextAt: 0, dialing: false }
        bootstrapState.set(key, state)
        const connected = node.getConnections().some((c) => c.remotePeer.toString() === target)
        if (connected || state.dialing || Date.now() < state.nextAt) return
        state.dialing = true
        try {
          await node.dial(address, { signal: AbortSignal.timeout(BOOTSTRAP_REDIAL_MS) })
          log.info({ address: key, failedBefore: state.failures }, 'connected to bootstrap peer')
          state.failures = 0
        } catch (err) {
          state.failures += 1
          const delay = Math.min(
            BOOTSTRAP_BACKOFF_MAX_MS,
            BOOTSTRAP_BACKOFF_MIN_MS * 2 ** (state.failures - 1),
          )
          state.nextAt = Date.now() + delay
          log.warn(
            {
              address: key,
              reason: dialFailureReason(err),
              attempt: state.failures,
              retryInSeconds: delay / 1000,
            },
            'bootstrap dial failed',
          )
        } finally {
          state.dialing = false
        }
      }),
    )
  }

  const host: CoopHost = {
    peerId,
    coopId: options.coopId,
    libp2p: node,

    async start() {
      await node.start()
      await node.handle(
        BLOB_PROTOCOL,
        (stream, connection) => blobService.handleInbound(stream, connection),
        {
          maxInboundStreams: BLOB_MAX_STREAMS_PER_PEER,
          maxOutboundStreams: BLOB_MAX_STREAMS_PER_PEER,
        },
      )
      for (const topic of topics.values()) pubsub.subscribe(topic)
      await dialBootstrap()
      // Known peers are redialed in the background: a stale record must not delay start.
      dialKnownPeers().catch((err: unknown) => log.warn({ err }, 'redialing known peers failed'))
      // Ticks often; each address is dialed only when its backoff is due.
      redialTimer = setInterval(() => {
        dialBootstrap().catch((err: unknown) => log.debug({ err }, 'bootstrap redial failed'))
      }, BOOTSTRAP_BACKOFF_MIN_MS / 2)
      redialTimer.unref()
      log.info({ peer: peerId, addresses: host.multiaddrs() }, 'host started')
    },

    async stop() {
      clearInterval(redialTimer)
      if (node.status !== 'started') return
      // Unsubscribing first lets peers drop us from their meshes before the connections close.
      for (const topic of topics.values()) pubsub.unsubscribe(topic)
      await node.unhandle(BLOB_PROTOCOL).catch(() => undefined)
      const closing = Promise.all(
        node
          .getConnections()
          .map((c) =>
            c
              .close({ signal: AbortSignal.timeout(STOP_TIMEOUT_MS) })
              .catch((err: unknown) => c.abort(err instanceof Error ? err : new Error(String(err)))),
          ),
      )
      await closing
      await node.stop()
      log.info({ peer: peerId }, 'host stopped')
    },

    multiaddrs() {
      return node.getMultiaddrs().map((address) => address.toString())
    },

    async publish(topic, bytes) {
      if (bytes.byteLength > GOSSIP_MAX_MESSAGE_BYTES) {
        throw new GossipValidationError(
          'REJECT',
          'TOO_LARGE',
          `gossip message of ${bytes.byteLength} bytes exceeds ${GOSSIP_MAX_MESSAGE_BYTES}`,
        )
      }
      const result = await pubsub.publish(topics.get(topic) as string, bytes)
      return { recipients: result.recipients.length }
    },

    setValidator(topic, validate) {
      validators.set(topic, validate)
    },

    onMessage(topic, handler) {
      const set = handlers.get(topic) ?? new Set()
      set.add(handler)
      handlers.set(topic, set)
      return () => {
        set.delete(handler)
      }
    },

    peerScore(peer) {
      return pubsub.getScore(peer)
    },

    appScore(peer) {
      return -penalties.points(peer)
    },

    penaltyCounts(peer) {
      return penalties.counts(peer)
    },

    penalizedPeers() {
      return penalties.peers()
    },

    connectedPeers() {
      return [...new Set(node.getConnections().map((c) => c.remotePeer.toString()))]
    },

    topicPeers(topic) {
      return pubsub.getSubscribers(topics.get(topic) as string).map((p) => p.toString())
    },

    penalize(peer, code, points = PENALTY_REJECT) {
      penalties.add(peer, code, points)
    },

    validationStats() {
      return counters.snapshot()
    },

    async dial(address) {
      await node.dial(multiaddr(address))
    },

    setBlobSource(source) {
      blobService.setSource(source)
    },

    fetchBlob(digest, fetchOptions) {
      return blobService.fetch(digest, fetchOptions)
    },

    blobServingStats() {
      return blobService.servingStats()
    },
  }
  return host
}

export type { Message }
