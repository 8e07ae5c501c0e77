// Payloads by digest over the stream protocol /diffusion-coop/blob/1.0.0.
//
// Wire format (every frame is unsigned-varint length-prefixed, it-length-prefixed):
//   requester -> holder: one frame, JSON {"digest":"sha256:<hex>","maxBytes":<n>}, or
//                        {"digest","maxBytes","as":"envelope"}: the DSSE envelope of the signed
//                        statement whose bytes hash to <digest> (a peer catching up knows a
//                        checkpoint's parent only by its statement digest, and needs the
//                        signatures too)
//   holder -> requester: one header frame, JSON {"status":"ok","size":<n>} or
//                        {"status":"not_found"|"too_large"|"busy"}; after "ok", data frames
//                        of at most BLOB_CHUNK_BYTES until exactly <size> bytes, then close.
// The requester never trusts the holder: it bounds every frame, times every chunk and the whole
// transfer, and checks the SHA-256 of the bytes (of an envelope: of its payload) against the
// digest before returning them.
import { CodedError } from '../../protocol/coded-error.ts'
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
  BLOB_MAX_SERVING_STREAMS,
  BLOB_MAX_STREAMS_PER_PEER,
  BLOB_OPEN_TIMEOUT_MS,
  BLOB_PROTOCOL,
  BLOB_REQUEST_MAX_BYTES,
  BLOB_TRANSFER_TIMEOUT_MS,
  PENALTY_BLOB_BAD_BYTES,
  PENALTY_BLOB_PROTOCOL,
} from '../constants.ts'
import type { GossipErrorCode } from './gossip-errors.ts'

/** Where the host finds the blobs it serves (the store implements it). */
export interface BlobSource {
  getBlob(digest: string): Promise<Uint8Array | undefined>
  /** The DSSE envelope bytes of the statement with this digest, when held (checkpoints, contributions). */
  getEnvelope?(statementDigest: string): Promise<Uint8Array | undefined>
}

export const BLOB_ERROR_CODES = [
  'BAD_DIGEST',
  'NO_PROVIDERS',
  'ALL_PROVIDERS_FAILED',
  'NOT_FOUND',
  'TOO_LARGE',
  'TIMEOUT',
  'DIGEST_MISMATCH',
  'PROTOCOL',
  'BUSY',
  'UNREACHABLE',
  'ABORTED',
] as const
export type BlobErrorCode = (typeof BLOB_ERROR_CODES)[number]

export class BlobTransferError extends CodedError<BlobErrorCode> {
  /** For ALL_PROVIDERS_FAILED: why each provider failed, in the order tried. */
  readonly attempts: { provider: string; code: BlobErrorCode; message: string }[]

  constructor(code: BlobErrorCode, message: string, attempts: BlobTransferError['attempts'] = []) {
    super(code, message)
    this.attempts = attempts
  }
}

export interface FetchBlobOptions {
  /** Peer ids of holders, tried in order; a failing one is skipped and, if it lied, penalised. */
  providers: string[]
  /** Refuse blobs larger than this (capped by BLOB_MAX_BYTES). */
  maxBytes: number
  signal?: AbortSignal
  /** Ask for the DSSE envelope of the statement `digest` names instead of the blob itself. */
  envelope?: boolean
}

/** it-length-prefixed's errors for a frame longer than allowed or a malformed length; a truncated frame (UnexpectedEOFError) is a vanished peer instead. */
const FRAMING_ERRORS = new Set([
  'InvalidMessageLengthError',
  'InvalidDataLengthError',
  'InvalidDataLengthLengthError',
])

const DIGEST_PATTERN = /^sha256:[0-9a-f]{64}$/

export function isBlobDigest(value: unknown): value is string {
  return typeof value === 'string' && DIGEST_PATTERN.test(value)
}

export function blobDigest(bytes: Uint8Array): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`
}

/** The digest of the statement a DSSE envelope carries (sha256 of its decoded payload), or undefined if it is not one. */
export function envelopeStatementDigest(bytes: Uint8Array): string | undefined {
  try {
    const parsed = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes)) as unknown
    if (typeof parsed !== 'object' || parsed === null) return undefined
    const payload = (parsed as { payload?: unknown }).payload
    if (typeof payload !== 'string') return undefined
    return blobDigest(new Uint8Array(Buffer.from(payload, 'base64')))
  } catch {
    return undefined
  }
}

type HeaderStatus = 'ok' | 'not_found' | 'too_large' | 'busy'

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
}

function encodeJson(value: unknown): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(value))
}

/** Sends every chunk, waiting for the muxer to drain when its buffer is full (backpressure). */
async function sendAll(
  stream: Stream,
  frames: Iterable<Uint8Array> | AsyncIterable<Uint8Array>,
  signal: AbortSignal,
): Promise<void> {
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

function* chunksOf(bytes: Uint8Array, size: number): Generator<Uint8Array> {
  for (let offset = 0; offset < bytes.byteLength; offset += size)
    yield bytes.subarray(offset, Math.min(offset + size, bytes.byteLength))
}

/** Serves and fetches blobs for one host. */
export class BlobService {
  readonly #deps: BlobServiceDeps
  readonly #timeouts: BlobTimeouts
  #source: BlobSource | undefined
  readonly #servingPerPeer = new Map<string, number>()
  #servingTotal = 0
  readonly #fetchesPerProvider = new Map<string, number>()
  readonly #waiters = new Map<string, (() => void)[]>()

  constructor(deps: BlobServiceDeps, source?: BlobSource) {
    this.#deps = deps
    this.#timeouts = { ...DEFAULT_BLOB_TIMEOUTS, ...deps.timeouts }
    this.#source = source
  }

  setSource(source: BlobSource | undefined): void {
    this.#source = source
  }

  /** Stream handler for inbound requests (registered with libp2p.handle). */
  async handleInbound(stream: Stream, connection: Connection): Promise<void> {
    const peer = connection.remotePeer.toString()
    const signal = AbortSignal.timeout(this.#timeouts.transferTimeoutMs)
    const onAbort = (): void => stream.abort(new Error('blob serve timed out'))
    signal.addEventListener('abort', onAbort, { once: true })
    const perPeer = this.#servingPerPeer.get(peer) ?? 0
    const overLimit = perPeer >= BLOB_MAX_STREAMS_PER_PEER || this.#servingTotal >= BLOB_MAX_SERVING_STREAMS
    this.#servingPerPeer.set(peer, perPeer + 1)
    this.#servingTotal += 1
    try {
      // A peer that opens a stream and never asks holds a slot: give it one chunk timeout to ask.
      const request = await this.#readRequest(
        stream,
        AbortSignal.any([signal, AbortSignal.timeout(this.#timeouts.chunkTimeoutMs)]),
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
      if (overLimit) {
        await sendAll(stream, [encodeJson({ status: 'busy' satisfies HeaderStatus })], signal)
        await stream.close({ signal })
        return
      }
      const bytes = request.envelope
        ? await this.#source?.getEnvelope?.(request.digest)
        : await this.#source?.getBlob(request.digest)
      if (bytes === undefined) {
        await sendAll(stream, [encodeJson({ status: 'not_found' satisfies HeaderStatus })], signal)
      } else if (bytes.byteLength > request.maxBytes) {
        await sendAll(
          stream,
          [encodeJson({ status: 'too_large' satisfies HeaderStatus, size: bytes.byteLength })],
          signal,
        )
      } else {
        const header = encodeJson({ status: 'ok' satisfies HeaderStatus, size: bytes.byteLength })
        await sendAll(
          stream,
          (function* () {
            yield header
            yield* chunksOf(bytes, BLOB_CHUNK_BYTES)
          })(),
          signal,
        )
      }
      await stream.close({ signal })
      this.#deps.log?.debug(
        { peer, digest: request.digest, found: bytes !== undefined },
        'blob request served',
      )
    } catch (err) {
      this.#deps.log?.debug({ peer, err }, 'blob serve failed')
      stream.abort(err instanceof Error ? err : new Error(String(err)))
    } finally {
      signal.removeEventListener('abort', onAbort)
      const left = (this.#servingPerPeer.get(peer) ?? 1) - 1
      if (left <= 0) this.#servingPerPeer.delete(peer)
      else this.#servingPerPeer.set(peer, left)
      this.#servingTotal -= 1
    }
  }

  /**
   * Reads the request frame. `silent` (closed or timed out before asking) is not held against
   * the peer, since a requester that crashes or gives up looks the same; `malformed` is.
   */
  async #readRequest(
    stream: Stream,
    signal: AbortSignal,
  ): Promise<{ digest: string; maxBytes: number; envelope: boolean } | 'silent' | 'malformed'> {
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
    let parsed: unknown
    try {
      parsed = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(frame))
    } catch {
      return 'malformed'
    }
    if (typeof parsed !== 'object' || parsed === null) return 'malformed'
    const { digest, maxBytes, as } = parsed as Record<string, unknown>
    if (!isBlobDigest(digest)) return 'malformed'
    if (typeof maxBytes !== 'number' || !Number.isSafeInteger(maxBytes) || maxBytes < 0) return 'malformed'
    if (as !== undefined && as !== 'envelope') return 'malformed'
    return { digest, maxBytes: Math.min(maxBytes, BLOB_MAX_BYTES), envelope: as === 'envelope' }
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
      const bytes = await this.#receive(stream, maxBytes, signal)
      if ((envelope ? envelopeStatementDigest(bytes) : blobDigest(bytes)) !== digest)
        throw new BlobTransferError('DIGEST_MISMATCH', 'received bytes do not hash to the requested digest')
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
  async #receive(stream: Stream, maxBytes: number, signal: AbortSignal): Promise<Uint8Array> {
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
    if (headerFrame.byteLength > BLOB_HEADER_MAX_BYTES)
      throw new BlobTransferError('PROTOCOL', 'oversized header frame')
    let header: unknown
    try {
      header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(headerFrame))
    } catch {
      throw new BlobTransferError('PROTOCOL', 'header frame is not JSON')
    }
    const { status, size } = (typeof header === 'object' && header !== null ? header : {}) as Record<
      string,
      unknown
    >
    if (status === 'not_found') throw new BlobTransferError('NOT_FOUND', 'provider does not hold the blob')
    if (status === 'busy') throw new BlobTransferError('BUSY', 'provider is serving too many streams')
    if (status === 'too_large') throw new BlobTransferError('TOO_LARGE', 'blob is larger than we accept')
    if (status !== 'ok' || typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0)
      throw new BlobTransferError('PROTOCOL', 'malformed header')
    if (size > maxBytes)
      throw new BlobTransferError('PROTOCOL', 'provider announced more bytes than we asked for')

    // Exactly `size` bytes are read; anything a provider sends after them is never looked at
    // (the stream is closed), and the digest alone decides whether the bytes are right.
    const out = new Uint8Array(size)
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
      out.set(chunk, received)
      received += chunk.byteLength
    }
    return out
  }
}
