// Fetching what the round engine needs by digest: checkpoint files, contribution payloads,
// statements and consent manifests, from the store or from peers over the blob protocol
// (verified against the digest before use, then stored). Payload and manifest fetches are
// single-flight: a second request for the same digest joins the one in flight.
import type { Logger } from 'pino'
import { errorCode } from '../../protocol/coded-error.ts'
import type { ConsentBook } from '../consent/book.ts'
import { CONSENT_DOCUMENT_MAX_BYTES } from '../constants.ts'
import type { CoopHost } from '../p2p/host.ts'
import { BlobTransferError } from '../p2p/blob.ts'
import {
  CHECKPOINT_FILE_MAX_BYTES,
  FETCH_ATTEMPTS,
  FETCH_RETRY_MS,
  STATEMENT_BLOB_MAX_BYTES,
} from './constants.ts'
import { RoundError } from './errors.ts'
import type { RoundState } from './state.ts'

export interface FetcherModules {
  state: RoundState
  host: Pick<CoopHost, 'connectedPeers' | 'fetchBlob'>
  consent: ConsentBook
  log: Logger
}

export class Fetcher {
  readonly #state: RoundState
  readonly #host: FetcherModules['host']
  readonly #consent: ConsentBook
  readonly #log: Logger
  readonly #payloadFetches = new Map<string, Promise<boolean>>()
  readonly #manifestFetches = new Set<string>()
  #running = false

  constructor(modules: FetcherModules) {
    this.#state = modules.state
    this.#host = modules.host
    this.#consent = modules.consent
    this.#log = modules.log
  }

  start(): void {
    this.#running = true
  }

  /** Retries in flight end at their next attempt. */
  stop(): void {
    this.#running = false
  }

  /**
   * Who to ask for a blob, best first: the preferred holders we are connected to, then the
   * publishers (they hold every payload they aggregated), then any connected peer, and only then
   * preferred holders we would have to dial (in a star topology trainers do not see each other).
   */
  providers(preferred: string[] = []): string[] {
    const connected = new Set(this.#host.connectedPeers())
    const publishers = this.#state.charter.publishers
    const out: string[] = []
    const add = (p: string): void => {
      if (p !== this.#state.peerId && !out.includes(p)) out.push(p)
    }
    for (const p of preferred) if (connected.has(p)) add(p)
    for (const p of publishers) if (connected.has(p)) add(p)
    for (const p of connected) add(p)
    for (const p of [...preferred, ...publishers]) add(p)
    return out
  }

  /** A blob from the store, or fetched from peers (verified against its digest) and stored. */
  async requireBlob(
    digest: string,
    preferred: string[],
    maxBytes = CHECKPOINT_FILE_MAX_BYTES,
  ): Promise<Uint8Array> {
    const local = await this.#state.store.getBlob(digest)
    if (local !== undefined) return local
    const bytes = await this.fetchBytes(digest, preferred, maxBytes)
    await this.#state.store.putBlob(bytes, digest)
    return bytes
  }

  /**
   * A blob's bytes from peers, verified against its digest but not stored: what must pass a
   * check before it is kept (a contribution payload) comes through here. Throws RoundError
   * MISSING_PAYLOAD after FETCH_ATTEMPTS rounds over the providers; its `tooLarge` lists the
   * providers that answered that the blob exceeds `maxBytes`.
   */
  async fetchBytes(
    digest: string,
    preferred: string[],
    maxBytes: number,
    options: { envelope?: boolean } = {},
  ): Promise<Uint8Array> {
    let lastError: unknown
    const tooLarge = new Set<string>()
    for (let attempt = 0; attempt < FETCH_ATTEMPTS && this.#running; attempt++) {
      const providers = this.providers(preferred)
      if (providers.length > 0) {
        try {
          return await this.#host.fetchBlob(digest, {
            providers,
            maxBytes,
            ...(options.envelope === true ? { envelope: true } : {}),
          })
        } catch (err) {
          lastError = err
          if (err instanceof BlobTransferError)
            for (const a of err.attempts) if (a.code === 'TOO_LARGE') tooLarge.add(a.provider)
          // A holder that says the blob is too large will say so again: do not ask it FETCH_ATTEMPTS times.
          if (preferred.some((p) => tooLarge.has(p))) break
        }
      }
      await new Promise((resolve) => setTimeout(resolve, FETCH_RETRY_MS))
    }
    throw Object.assign(
      new RoundError('MISSING_PAYLOAD', `blob ${digest} is not available from any peer`, {
        cause: lastError,
      }),
      { tooLarge: [...tooLarge] },
    )
  }

  /**
   * The DSSE envelope of a signed statement (a checkpoint's provenance, a contribution), by the
   * statement's digest: ours, or from peers with its payload checked against the digest. The
   * caller verifies the signatures.
   */
  async envelope(statementDigest: string, preferred: string[]): Promise<Uint8Array> {
    const local = await this.#state.envelopeOf(statementDigest)
    if (local !== undefined) return local
    return await this.fetchBytes(statementDigest, preferred, STATEMENT_BLOB_MAX_BYTES, { envelope: true })
  }

  /** Fetches and stores a blob once; resolves to whether it is now in the store (single-flight by digest). */
  ensurePayload(digest: string, preferred: string[], maxBytes: number): Promise<boolean> {
    if (this.#state.hasPayload(digest)) return Promise.resolve(true)
    const running = this.#payloadFetches.get(digest)
    if (running !== undefined) return running
    const fetching = (async () => {
      try {
        await this.requireBlob(digest, preferred, maxBytes)
        this.#state.payloadStored(digest)
        this.#state.changed()
        return true
      } catch (err) {
        this.#log.warn({ delta: digest, code: errorCode(err), err }, 'contribution payload unavailable')
        return false
      } finally {
        this.#payloadFetches.delete(digest)
      }
    })()
    this.#payloadFetches.set(digest, fetching)
    return fetching
  }

  /** A contribution payload's bytes (at most `maxBytes`), joining a fetch still in flight instead of starting a second transfer. */
  async payload(digest: string, preferred: string[], maxBytes: number): Promise<Uint8Array> {
    if (await this.ensurePayload(digest, preferred, maxBytes)) {
      const stored = await this.#state.store.getBlob(digest)
      if (stored !== undefined) return stored
    }
    return await this.requireBlob(digest, preferred, maxBytes)
  }

  /**
   * Fetches a consent manifest from its custodian, who serves every manifest it trains on by
   * digest, and records it, so the next re-announcement of a contribution citing it validates.
   */
  async fetchManifest(manifestId: string, custodian: string): Promise<void> {
    if (this.#manifestFetches.has(manifestId)) return
    this.#manifestFetches.add(manifestId)
    try {
      const bytes = await this.requireBlob(manifestId, [custodian], CONSENT_DOCUMENT_MAX_BYTES)
      // Its window is judged by whoever cites it (a contribution's round, a checkpoint's terms).
      const { verified, added } = await this.#consent.addManifest(
        JSON.parse(new TextDecoder().decode(bytes)) as object,
        false,
        { validityWindow: 'skip' },
      )
      if (added)
        this.#log.info({ manifest: verified.digest, custodian: verified.custodian }, 'manifest fetched')
    } catch (err) {
      this.#log.warn({ manifest: manifestId, code: errorCode(err), err }, 'manifest fetch failed')
    } finally {
      this.#manifestFetches.delete(manifestId)
    }
  }
}
