// The holder side of /diffusion-coop/blob/1.0.0 (wire format: blob-frames.ts). Serving is bounded
// in memory as well as in slots, whatever requesters do:
// - bytes stream from the store one chunk at a time, and the next chunk is read only once the
//   muxer took the previous frame (backpressure): a stream holds at most one chunk and one frame;
// - a reader that does not take a frame within BLOB_SERVE_STALL_TIMEOUT_MS is closed, and when
//   every slot is taken a reader stalled for BLOB_EVICT_STALLED_AFTER_MS gives its slot up, so
//   streams that never read cannot keep honest requesters out;
// - per peer: at most BLOB_MAX_STREAMS_PER_PEER streams and a byte budget (token bucket).
import type { Connection, Stream } from '@libp2p/interface'
import * as lp from 'it-length-prefixed'
import type { Logger } from 'pino'
import {
  BLOB_CHUNK_BYTES,
  BLOB_EVICT_BELOW_BYTES_PER_SECOND,
  BLOB_EVICT_STALLED_AFTER_MS,
  BLOB_MAX_SERVING_STREAMS,
  BLOB_MAX_STREAMS_PER_PEER,
  BLOB_PEER_BUDGETS_MAX,
  BLOB_PEER_BYTES_BURST,
  BLOB_PEER_BYTES_PER_SECOND,
  BLOB_REQUEST_MAX_BYTES,
  BLOB_SERVE_STALL_TIMEOUT_MS,
  PENALTY_BLOB_PROTOCOL,
} from '../constants.ts'
import {
  type BlobRequest,
  encodeJson,
  FRAMING_ERRORS,
  type HeaderStatus,
  parseBlobRequest,
} from './blob-frames.ts'
import type { GossipErrorCode } from './gossip-errors.ts'
import { RateLimiter } from './rate-limit.ts'

/** A stored blob opened for serving. */
export interface StoredBlob {
  /** Exact size in bytes. */
  readonly size: number
  /**
   * The bytes in order, in chunks of at most `chunkBytes`, each read when asked for. Throws
   * (before yielding the last chunk) if the bytes do not hash to the digest they were opened by,
   * so a damaged copy is cut short instead of being served whole.
   */
  chunks(chunkBytes: number): AsyncIterable<Uint8Array>
  /** Releases the file; idempotent. */
  close(): Promise<void>
}

/** Where the host finds the blobs it serves (the store implements it). */
export interface BlobSource {
  openBlob(digest: string): Promise<StoredBlob | undefined>
  /** The DSSE envelope bytes of the statement with this digest, when held (checkpoints, contributions). */
  getEnvelope?(statementDigest: string): Promise<Uint8Array | undefined>
}

/** Bytes already in memory as a StoredBlob: chunks are views, nothing is copied. */
export function memoryStoredBlob(bytes: Uint8Array): StoredBlob {
  return {
    size: bytes.byteLength,
    async *chunks(chunkBytes) {
      for (let offset = 0; offset < bytes.byteLength; offset += chunkBytes)
        yield bytes.subarray(offset, Math.min(offset + chunkBytes, bytes.byteLength))
    },
    async close() {},
  }
}

/** A BlobSource over bytes already in memory (tools, tests). */
export function memoryBlobSource(
  lookup: (digest: string) => Uint8Array | undefined | Promise<Uint8Array | undefined>,
  envelopes?: (statementDigest: string) => Uint8Array | undefined | Promise<Uint8Array | undefined>,
): BlobSource {
  return {
    async openBlob(digest) {
      const bytes = await lookup(digest)
      return bytes === undefined ? undefined : memoryStoredBlob(bytes)
    },
    ...(envelopes === undefined ? {} : { getEnvelope: async (digest: string) => await envelopes(digest) }),
  }
}

export interface BlobServingLimits {
  maxStreamsPerPeer: number
  maxServingStreams: number
  stallTimeoutMs: number
  evictStalledAfterMs: number
  peerBytesPerSecond: number
  peerBytesBurst: number
}

export const DEFAULT_SERVING_LIMITS: BlobServingLimits = {
  maxStreamsPerPeer: BLOB_MAX_STREAMS_PER_PEER,
  maxServingStreams: BLOB_MAX_SERVING_STREAMS,
  stallTimeoutMs: BLOB_SERVE_STALL_TIMEOUT_MS,
  evictStalledAfterMs: BLOB_EVICT_STALLED_AFTER_MS,
  peerBytesPerSecond: BLOB_PEER_BYTES_PER_SECOND,
  peerBytesBurst: BLOB_PEER_BYTES_BURST,
}

/** What the holder did, for status, tests and benches. */
export interface BlobServingStats {
  /** Streams admitted and being served now, and the most at once. */
  serving: number
  peakServing: number
  servedBytes: number
  /** Refusals by reason, and streams cut: a reader too slow to drain, or one evicted for a new request. */
  busySlots: number
  busyBudget: number
  slowClosed: number
  evicted: number
}

interface ServingStream {
  peer: string
  stream: Stream
  admitted: boolean
  /** Since when the stream waits on its reader (for the request, or to drain); undefined while moving. */
  stalledSince: number | undefined
  /** When it was admitted, and the bytes its reader has taken since: its throughput. */
  admittedAt: number
  takenBytes: number
}

interface BlobServerDeps {
  penalize(peerId: string, code: GossipErrorCode, points: number): void
  log?: Logger
  /** Time a requester has to ask, and to finish one transfer. */
  requestTimeoutMs: number
  transferTimeoutMs: number
  limits?: Partial<BlobServingLimits>
  now?: () => number
}

class SlowReaderError extends Error {
  override name = 'SlowReaderError'
}

export class BlobServer {
  readonly #deps: BlobServerDeps
  readonly #limits: BlobServingLimits
  readonly #now: () => number
  readonly #budgets: RateLimiter
  readonly #streams = new Set<ServingStream>()
  #source: BlobSource | undefined
  readonly #stats: BlobServingStats = {
    serving: 0,
    peakServing: 0,
    servedBytes: 0,
    busySlots: 0,
    busyBudget: 0,
    slowClosed: 0,
    evicted: 0,
  }

  constructor(deps: BlobServerDeps, source?: BlobSource) {
    this.#deps = deps
    this.#limits = { ...DEFAULT_SERVING_LIMITS, ...deps.limits }
    this.#now = deps.now ?? Date.now
    this.#budgets = new RateLimiter({
      ratePerSecond: this.#limits.peerBytesPerSecond,
      burst: this.#limits.peerBytesBurst,
      maxBuckets: BLOB_PEER_BUDGETS_MAX,
      now: this.#now,
    })
    this.#source = source
  }

  setSource(source: BlobSource | undefined): void {
    this.#source = source
  }

  stats(): BlobServingStats {
    return { ...this.#stats, serving: this.#admitted().length }
  }

  /** Stream handler for inbound requests (registered with libp2p.handle). */
  async handleInbound(stream: Stream, connection: Connection): Promise<void> {
    const peer = connection.remotePeer.toString()
    const signal = AbortSignal.timeout(this.#deps.transferTimeoutMs)
    const onAbort = (): void => stream.abort(new Error('blob serve timed out'))
    signal.addEventListener('abort', onAbort, { once: true })
    const entry: ServingStream = {
      peer,
      stream,
      admitted: false,
      stalledSince: this.#now(),
      admittedAt: 0,
      takenBytes: 0,
    }
    this.#streams.add(entry)
    let blob: StoredBlob | undefined
    try {
      // A peer that opens a stream and never asks: give it one request timeout to ask.
      const request = await this.#readRequest(
        stream,
        AbortSignal.any([signal, AbortSignal.timeout(this.#deps.requestTimeoutMs)]),
      )
      if (request === 'silent') {
        stream.abort(new Error('no blob request'))
        return
      }
      if (request === 'malformed') {
        this.#deps.penalize(peer, 'BLOB_PROTOCOL', PENALTY_BLOB_PROTOCOL)
        stream.abort(new Error('malformed blob request'))
        return
      }
      entry.stalledSince = undefined
      if (!this.#admit(entry)) {
        this.#stats.busySlots += 1
        await this.#answer(entry, 'busy', signal)
      } else {
        blob = request.envelope
          ? await this.#openEnvelope(request.digest)
          : await this.#source?.openBlob(request.digest)
        if (blob === undefined) await this.#answer(entry, 'not_found', signal)
        else if (blob.size > request.maxBytes) await this.#answer(entry, 'too_large', signal)
        else if (!this.#budgets.take(peer, blob.size)) {
          // Over its byte budget: not an offence (catching up is bursty), just not now.
          this.#stats.busyBudget += 1
          await this.#answer(entry, 'busy', signal)
        } else {
          await this.#serve(entry, blob, signal)
          this.#stats.servedBytes += blob.size
        }
      }
      // The muxer took every frame; closing our end waits for nothing a stalled reader holds.
      await stream.close({
        signal: AbortSignal.any([signal, AbortSignal.timeout(this.#limits.stallTimeoutMs)]),
      })
      this.#deps.log?.debug(
        { peer, digest: request.digest, envelope: request.envelope, found: blob !== undefined },
        'blob request served',
      )
    } catch (err) {
      if (err instanceof SlowReaderError) this.#stats.slowClosed += 1
      this.#deps.log?.debug({ peer, err }, 'blob serve failed')
      stream.abort(err instanceof Error ? err : new Error(String(err)))
    } finally {
      signal.removeEventListener('abort', onAbort)
      this.#streams.delete(entry)
      await blob?.close().catch(() => undefined)
    }
  }

  /** An envelope (small, bounded by the statement size) served through the same budget and backpressure as a blob. */
  async #openEnvelope(statementDigest: string): Promise<StoredBlob | undefined> {
    const bytes = await this.#source?.getEnvelope?.(statementDigest)
    return bytes === undefined ? undefined : memoryStoredBlob(bytes)
  }

  #admitted(): ServingStream[] {
    return [...this.#streams].filter((s) => s.admitted)
  }

  /**
   * Takes a serving slot: at most maxStreamsPerPeer per peer, and maxServingStreams in all. A full
   * pool gives a slot up to the new request when one of its readers is stalled (for at least
   * evictStalledAfterMs) and took less than BLOB_EVICT_BELOW_BYTES_PER_SECOND since it was
   * admitted and, of those, the one that took the fewest bytes per second: a reader that never
   * reads loses its slot, an honest reader that is only stalled for a moment keeps it.
   */
  #admit(entry: ServingStream): boolean {
    const admitted = this.#admitted()
    if (admitted.filter((s) => s.peer === entry.peer).length >= this.#limits.maxStreamsPerPeer) return false
    const now = this.#now()
    if (admitted.length >= this.#limits.maxServingStreams) {
      const throughput = (s: ServingStream) => s.takenBytes / Math.max(1, now - s.admittedAt)
      let victim: ServingStream | undefined
      for (const s of admitted) {
        if (s.stalledSince === undefined || now - s.stalledSince < this.#limits.evictStalledAfterMs) continue
        if (throughput(s) * 1000 >= BLOB_EVICT_BELOW_BYTES_PER_SECOND) continue
        if (victim === undefined || throughput(s) < throughput(victim)) victim = s
      }
      if (victim === undefined) return false
      victim.admitted = false
      this.#stats.evicted += 1
      victim.stream.abort(new Error('blob stream evicted: its reader stalled while others waited'))
    }
    entry.admitted = true
    entry.admittedAt = now
    this.#stats.peakServing = Math.max(this.#stats.peakServing, admitted.length + 1)
    return true
  }

  async #answer(
    entry: ServingStream,
    status: Exclude<HeaderStatus, 'ok'>,
    signal: AbortSignal,
  ): Promise<void> {
    await this.#send(entry, oneFrame(encodeJson({ status })), signal)
  }

  async #serve(entry: ServingStream, blob: StoredBlob, signal: AbortSignal): Promise<void> {
    const header = encodeJson({ status: 'ok' satisfies HeaderStatus, size: blob.size })
    await this.#send(
      entry,
      (async function* () {
        yield header
        yield* blob.chunks(BLOB_CHUNK_BYTES)
      })(),
      signal,
    )
  }

  /**
   * Sends frames, pulling the next one only when the muxer took every byte of the last
   * (backpressure). It waits for the stream's write buffer to empty ('idle'), not for 'drain':
   * libp2p dispatches 'drain' to every stream of a connection whenever the connection's socket
   * drains, also to a stream whose own window is still exhausted, and counting that as taken let a
   * reader that never reads queue a chunk per socket drain (1,028 MiB on 8 streams in a CI run).
   */
  async #send(entry: ServingStream, frames: AsyncIterable<Uint8Array>, signal: AbortSignal): Promise<void> {
    for await (const frame of lp.encode(frames)) {
      entry.stream.send(frame)
      if (entry.stream.writeBufferLength > 0) {
        entry.stalledSince = this.#now()
        try {
          await writeBufferEmptied(
            entry.stream,
            AbortSignal.any([signal, AbortSignal.timeout(this.#limits.stallTimeoutMs)]),
          )
        } catch (err) {
          if (signal.aborted || !(err instanceof StallTimeout)) throw err
          throw new SlowReaderError('the requester did not take a frame in time')
        }
        entry.stalledSince = undefined
      }
      entry.takenBytes += frame.byteLength
    }
  }

  /**
   * Reads the request frame. `silent` (closed or timed out before asking) is not held against
   * the peer, since a requester that crashes or gives up looks the same; `malformed` is.
   */
  async #readRequest(stream: Stream, signal: AbortSignal): Promise<BlobRequest | 'silent' | 'malformed'> {
    let frame: Uint8Array | undefined
    const frames = lp.decode(stream, { maxDataLength: BLOB_REQUEST_MAX_BYTES })[Symbol.asyncIterator]()
    let onAbort: (() => void) | undefined
    const timedOut = new Promise<undefined>((resolve) => {
      onAbort = () => resolve(undefined)
      signal.addEventListener('abort', onAbort, { once: true })
    })
    try {
      const step = await Promise.race([frames.next(), timedOut])
      frame = step === undefined || step.done === true ? undefined : step.value.subarray()
    } catch (err) {
      // An oversized or garbled length prefix is a malformed request; a reset stream is silence.
      return err instanceof Error && FRAMING_ERRORS.has(err.name) ? 'malformed' : 'silent'
    } finally {
      if (onAbort !== undefined) signal.removeEventListener('abort', onAbort)
    }
    if (frame === undefined || signal.aborted) return 'silent'
    try {
      return parseBlobRequest(frame)
    } catch {
      return 'malformed'
    }
  }
}

class StallTimeout extends Error {
  override name = 'StallTimeout'
}

/** Resolves once the stream handed every queued byte to the muxer; rejects if it closes or `signal` aborts. */
function writeBufferEmptied(stream: Stream, signal: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const done = (err?: Error): void => {
      stream.removeEventListener('idle', onIdle)
      stream.removeEventListener('close', onClose)
      signal.removeEventListener('abort', onAbort)
      if (err === undefined) resolve()
      else reject(err)
    }
    const onIdle = (): void => {
      if (stream.writeBufferLength === 0) done()
    }
    const onClose = (): void => done(new Error(`blob stream ${stream.status} while sending`))
    const onAbort = (): void => done(new StallTimeout(String(signal.reason)))
    if (signal.aborted) return onAbort()
    stream.addEventListener('idle', onIdle)
    stream.addEventListener('close', onClose)
    signal.addEventListener('abort', onAbort, { once: true })
    onIdle()
  })
}

async function* oneFrame(frame: Uint8Array): AsyncGenerator<Uint8Array> {
  yield frame
}
