// Payloads by digest over the stream protocol /diffusion-coop/blob/1.0.0 (wire format:
// blob-frames.ts; serving: blob-server.ts). This file is the requester side and the service the
// host registers. The requester never trusts the holder: it bounds every frame, times every chunk
// and the whole transfer, allocates only for bytes that arrived, and hashes them as they arrive,
// returning them only if they match the digest (an envelope asked for by statement digest: only
// if the statement it carries does).
import { createHash } from 'node:crypto'
import type { Connection, PeerId, Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { pipe } from 'it-pipe'
import * as lp from 'it-length-prefixed'
import type { Logger } from 'pino'
import {
  BLOB_CHUNK_BYTES,
  BLOB_CHUNK_TIMEOUT_MS,
  BLOB_HEADER_MAX_BYTES,
  BLOB_MAX_BYTES,
  BLOB_MAX_FETCHES_PER_PROVIDER,
  BLOB_OPEN_TIMEOUT_MS,
  BLOB_PROTOCOL,
  BLOB_TRANSFER_TIMEOUT_MS,
  PENALTY_BLOB_BAD_BYTES,
  PENALTY_BLOB_PROTOCOL,
} from '../constants.ts'
import {
  BlobTransferError,
  encodeJson,
  envelopeStatementDigest,
  FRAMING_ERRORS,
  isBlobDigest,
  parseBlobHeader,
} from './blob-frames.ts'
import { type BlobServingLimits, type BlobServingStats, BlobServer, type BlobSource } from './blob-server.ts'
import type { GossipErrorCode } from './gossip-errors.ts'

export {
  BLOB_ERROR_CODES,
  type BlobErrorCode,
  BlobTransferError,
  blobDigest,
  envelopeStatementDigest,
  isBlobDigest,
} from './blob-frames.ts'
export { type BlobSource, type StoredBlob, memoryBlobSource } from './blob-server.ts'

export interface FetchBlobOptions {
  /** Peer ids of holders, tried in order; a failing one is skipped and, if it lied, penalised. */
  providers: string[]
  /** Refuse blobs larger than this (capped by BLOB_MAX_BYTES). */
  maxBytes: number
  signal?: AbortSignal
  /** Ask for the DSSE envelope of the statement `digest` names instead of the blob itself. */
  envelope?: boolean
}

/** Timeouts of one transfer; overridable so tests can exercise stalls without waiting for the production values. */
export interface BlobTimeouts {
  chunkTimeoutMs: number
  transferTimeoutMs: number
  openTimeoutMs: number
}

export const DEFAULT_BLOB_TIMEOUTS: BlobTimeouts = {
  chunkTimeoutMs: BLOB_CHUNK_TIMEOUT_MS,
  transferTimeoutMs: BLOB_TRANSFER_TIMEOUT_MS,
  openTimeoutMs: BLOB_OPEN_TIMEOUT_MS,
}

interface BlobServiceDeps {
  /** Opens a stream to the peer on the blob protocol (libp2p.dialProtocol). */
  openStream(peer: PeerId, protocol: string, options: { signal: AbortSignal }): Promise<Stream>
  penalize(peerId: string, code: GossipErrorCode, points: number): void
  log?: Logger
  timeouts?: Partial<BlobTimeouts>
  /** Serving limits (defaults in constants.ts); overridable so tests can reach them quickly. */
  servingLimits?: Partial<BlobServingLimits>
}

/** Sends frames, waiting for the muxer to drain when its buffer is full (backpressure). */
async function sendAll(stream: Stream, frames: Iterable<Uint8Array>, signal: AbortSignal): Promise<void> {
  await pipe(
    frames,
    (source) => lp.encode(source),
    async (source) => {
      for await (const frame of source) {
        if (!stream.send(frame)) await stream.onDrain({ signal })
      }
    },
  )
}

/** Serves and fetches blobs for one host. */
export class BlobService {
  readonly #deps: BlobServiceDeps
  readonly #timeouts: BlobTimeouts
  readonly #server: BlobServer
  readonly #fetchesPerProvider = new Map<string, number>()
  readonly #waiters = new Map<string, (() => void)[]>()

  constructor(deps: BlobServiceDeps, source?: BlobSource) {
    this.#deps = deps
    this.#timeouts = { ...DEFAULT_BLOB_TIMEOUTS, ...deps.timeouts }
    this.#server = new BlobServer(
      {
        penalize: deps.penalize,
        requestTimeoutMs: this.#timeouts.chunkTimeoutMs,
        transferTimeoutMs: this.#timeouts.transferTimeoutMs,
        ...(deps.log === undefined ? {} : { log: deps.log }),
        ...(deps.servingLimits === undefined ? {} : { limits: deps.servingLimits }),
      },
      source,
    )
  }

  setSource(source: BlobSource | undefined): void {
    this.#server.setSource(source)
  }

  /** Stream handler for inbound requests (registered with libp2p.handle). */
  handleInbound(stream: Stream, connection: Connection): Promise<void> {
    return this.#server.handleInbound(stream, connection)
  }

  servingStats(): BlobServingStats {
    return this.#server.stats()
  }

  /** Fetches a blob from the first provider that delivers bytes matching the digest. */
  async fetch(digest: string, options: FetchBlobOptions): Promise<Uint8Array> {
    if (!isBlobDigest(digest))
      throw new BlobTransferError('BAD_DIGEST', `not a sha256 digest: ${String(digest).slice(0, 80)}`)
    const providers = [...new Set(options.providers)]
    if (providers.length === 0)
      throw new BlobTransferError('NO_PROVIDERS', 'no provider to fetch the blob from')
    const maxBytes = Math.min(options.maxBytes, BLOB_MAX_BYTES)
    const attempts: BlobTransferError['attempts'] = []
    for (const provider of providers) {
      if (options.signal?.aborted) throw new BlobTransferError('ABORTED', 'blob fetch aborted', attempts)
      try {
        const bytes = await this.#fetchFrom(
          provider,
          digest,
          maxBytes,
          options.envelope === true,
          options.signal,
        )
        this.#deps.log?.debug(
          { digest, provider, bytes: bytes.byteLength, failedBefore: attempts.length },
          'blob fetched',
        )
        return bytes
      } catch (err) {
        const failure =
          err instanceof BlobTransferError
            ? err
            : new BlobTransferError('UNREACHABLE', err instanceof Error ? err.message : String(err))
        attempts.push({ provider, code: failure.code, message: failure.message })
        this.#deps.log?.info(
          { digest, provider, code: failure.code },
          'blob provider failed, trying the next',
        )
        // Bytes that do not hash to the digest, or broken framing, are lies or bugs: charge them.
        if (failure.code === 'DIGEST_MISMATCH')
          this.#deps.penalize(provider, 'BLOB_DIGEST_MISMATCH', PENALTY_BLOB_BAD_BYTES)
        if (failure.code === 'PROTOCOL') this.#deps.penalize(provider, 'BLOB_PROTOCOL', PENALTY_BLOB_PROTOCOL)
      }
    }
    throw new BlobTransferError('ALL_PROVIDERS_FAILED', `no provider delivered ${digest}`, attempts)
  }

  async #acquireProviderSlot(provider: string, signal: AbortSignal): Promise<void> {
    while ((this.#fetchesPerProvider.get(provider) ?? 0) >= BLOB_MAX_FETCHES_PER_PROVIDER) {
      if (signal.aborted)
        throw new BlobTransferError('TIMEOUT', 'waited too long for a free slot to the provider')
      await new Promise<void>((resolve) => {
        const waiters = this.#waiters.get(provider) ?? []
        waiters.push(resolve)
        this.#waiters.set(provider, waiters)
        signal.addEventListener('abort', () => resolve(), { once: true })
      })
    }
    this.#fetchesPerProvider.set(provider, (this.#fetchesPerProvider.get(provider) ?? 0) + 1)
  }

  #releaseProviderSlot(provider: string): void {
    const left = (this.#fetchesPerProvider.get(provider) ?? 1) - 1
    if (left <= 0) this.#fetchesPerProvider.delete(provider)
    else this.#fetchesPerProvider.set(provider, left)
    // Wake every waiter: each re-checks the count, and one that gave up (aborted) is harmless.
    const waiters = this.#waiters.get(provider) ?? []
    this.#waiters.delete(provider)
    for (const wake of waiters) wake()
  }

  async #fetchFrom(
    provider: string,
    digest: string,
    maxBytes: number,
    envelope: boolean,
    outer?: AbortSignal,
  ): Promise<Uint8Array> {
    let peer: PeerId
    try {
      peer = peerIdFromString(provider)
    } catch {
      throw new BlobTransferError('UNREACHABLE', 'provider is not a peer id')
    }
    const total = AbortSignal.timeout(this.#timeouts.transferTimeoutMs)
    const signal = outer === undefined ? total : AbortSignal.any([total, outer])
    await this.#acquireProviderSlot(provider, signal)
    let stream: Stream | undefined
    try {
      try {
        stream = await this.#deps.openStream(peer, BLOB_PROTOCOL, {
          signal: AbortSignal.any([signal, AbortSignal.timeout(this.#timeouts.openTimeoutMs)]),
        })
      } catch (err) {
        throw new BlobTransferError(
          signal.aborted ? 'TIMEOUT' : 'UNREACHABLE',
          err instanceof Error ? err.message : String(err),
        )
      }
      await sendAll(
        stream,
        [encodeJson(envelope ? { digest, maxBytes, as: 'envelope' } : { digest, maxBytes })],
        signal,
      )
      const bytes = await this.#receive(stream, digest, maxBytes, envelope, signal)
      await stream.close({ signal }).catch(() => undefined)
      return bytes
    } catch (err) {
      stream?.abort(err instanceof Error ? err : new Error(String(err)))
      if (err instanceof BlobTransferError) throw err
      if (signal.aborted)
        throw new BlobTransferError(
          outer?.aborted === true ? 'ABORTED' : 'TIMEOUT',
          'blob transfer timed out',
        )
      throw new BlobTransferError('UNREACHABLE', err instanceof Error ? err.message : String(err))
    } finally {
      this.#releaseProviderSlot(provider)
    }
  }

  /** Reads the header and the data frames, with a timer per frame and the overall signal. */
  async #receive(
    stream: Stream,
    digest: string,
    maxBytes: number,
    envelope: boolean,
    signal: AbortSignal,
  ): Promise<Uint8Array> {
    const frames = lp
      .decode(stream, { maxDataLength: Math.max(BLOB_CHUNK_BYTES, BLOB_HEADER_MAX_BYTES) })
      [Symbol.asyncIterator]()
    const nextFrame = async (): Promise<Uint8Array | undefined> => {
      let timer: NodeJS.Timeout | undefined
      let onAbort: (() => void) | undefined
      const stalled = new Promise<never>((_, rejectStall) => {
        timer = setTimeout(
          () => rejectStall(new BlobTransferError('TIMEOUT', 'provider stalled between chunks')),
          this.#timeouts.chunkTimeoutMs,
        )
        onAbort = () => rejectStall(new BlobTransferError('TIMEOUT', 'blob transfer took too long'))
        signal.addEventListener('abort', onAbort, { once: true })
      })
      try {
        const step = await Promise.race([frames.next(), stalled])
        return step.done === true ? undefined : step.value.subarray()
      } catch (err) {
        if (err instanceof BlobTransferError) throw err
        // A frame longer than allowed, or a truncated varint, is a framing violation.
        if (err instanceof Error && FRAMING_ERRORS.has(err.name))
          throw new BlobTransferError('PROTOCOL', err.message)
        throw new BlobTransferError('UNREACHABLE', err instanceof Error ? err.message : String(err))
      } finally {
        clearTimeout(timer)
        if (onAbort !== undefined) signal.removeEventListener('abort', onAbort)
      }
    }

    const headerFrame = await nextFrame()
    if (headerFrame === undefined)
      throw new BlobTransferError('UNREACHABLE', 'provider closed the stream before answering')
    // The announced size is checked against what we accept before anything is allocated.
    const { size } = parseBlobHeader(headerFrame, maxBytes)

    // Exactly `size` bytes are read; anything a provider sends after them is never looked at
    // (the stream is closed). Memory grows only with bytes that arrived, and each chunk is hashed
    // as it arrives, so the digest decides right after the last one.
    const hash = createHash('sha256')
    const chunks: Uint8Array[] = []
    let received = 0
    while (received < size) {
      const chunk = await nextFrame()
      if (chunk === undefined)
        throw new BlobTransferError(
          'UNREACHABLE',
          `provider closed the stream after ${received} of ${size} bytes`,
        )
      if (received + chunk.byteLength > size)
        throw new BlobTransferError('PROTOCOL', 'provider sent more bytes than announced')
      hash.update(chunk)
      chunks.push(chunk)
      received += chunk.byteLength
    }
    // An envelope is checked by the statement it carries, so only after it is whole (it is small:
    // maxBytes bounds it like any blob).
    if (!envelope && `sha256:${hash.digest('hex')}` !== digest)
      throw new BlobTransferError('DIGEST_MISMATCH', 'received bytes do not hash to the requested digest')
    const out = new Uint8Array(size)
    let offset = 0
    for (const chunk of chunks) {
      out.set(chunk, offset)
      offset += chunk.byteLength
    }
    if (envelope && envelopeStatementDigest(out) !== digest)
      throw new BlobTransferError(
        'DIGEST_MISMATCH',
        'received envelope does not carry the requested statement',
      )
    return out
  }
}
