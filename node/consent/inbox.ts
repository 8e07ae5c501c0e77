// <store>/inbox/: a running node's door for consent documents. A rights holder (or their tool)
// drops a revocation or a manifest JSON file there; the node verifies it, records it in the
// consent book and gossips it, then moves the file to inbox/done/ (or done/<name>.refused).
// A revocation of a manifest this node does not hold yet stays in the inbox, untouched and
// unpublished, until the manifest arrives: only then can its issuer and items be checked.
import { mkdir, open, readdir, rename, stat } from 'node:fs/promises'
import { join } from 'node:path'
import type { Logger } from 'pino'
import { errorCode } from '../../protocol/coded-error.ts'
import { verifyRevocation } from '../../protocol/revocation.ts'
import { CONSENT_DOCUMENT_MAX_BYTES } from '../constants.ts'
import type { CoopHost } from '../p2p/host.ts'
import { inboxDir } from '../round/layout.ts'
import { encodeGossipMessage } from '../validation/messages.ts'
import type { ConsentBook } from './book.ts'
import { INBOX_POLL_MS } from './constants.ts'
import { ConsentError } from './errors.ts'
import { readInboxDocument } from './inbox-document.ts'

export interface ConsentInboxModules {
  consent: ConsentBook
  host: Pick<CoopHost, 'publish'>
  log: Logger
}

export class ConsentInbox {
  readonly #dir: string
  readonly #modules: ConsentInboxModules
  #timer: NodeJS.Timeout | undefined
  /** One poll at a time: a poll still publishing when the next tick fires would read the same
   * file again and then fail to move it (the misleading "published" + "refused ... ENOENT" pair). */
  #polling = false
  /** Files already reported as waiting for their manifest (logged once each). */
  readonly #waiting = new Set<string>()

  private constructor(dir: string, modules: ConsentInboxModules) {
    this.#dir = dir
    this.#modules = modules
  }

  /** Creates the folders at once, so users can drop files there while the node is still starting. */
  static async open(options: { storeDir: string }, modules: ConsentInboxModules): Promise<ConsentInbox> {
    const dir = inboxDir(options.storeDir)
    await mkdir(join(dir, 'done'), { recursive: true })
    return new ConsentInbox(dir, modules)
  }

  /** Starts polling; call it once the host can publish. */
  start(): void {
    this.#timer = setInterval(
      () => void this.poll().catch((err: unknown) => this.#modules.log.warn({ err }, 'inbox poll failed')),
      INBOX_POLL_MS,
    )
    this.#timer.unref()
  }

  stop(): void {
    clearInterval(this.#timer)
    this.#timer = undefined
  }

  /** Handles every *.json file in the inbox, in name order. */
  async poll(): Promise<void> {
    if (this.#polling) return
    this.#polling = true
    try {
      await this.#pollOnce()
    } finally {
      this.#polling = false
    }
  }

  async #pollOnce(): Promise<void> {
    const { consent, host, log } = this.#modules
    for (const name of (await readdir(this.#dir)).filter((n) => n.endsWith('.json')).sort()) {
      const path = join(this.#dir, name)
      try {
        // The size from stat first, so a huge file is never read; the read itself is bounded too
        // (a file may grow after stat), and readInboxDocument checks what was read.
        const info = await stat(path)
        if (info.size > CONSENT_DOCUMENT_MAX_BYTES)
          throw new ConsentError('MANIFEST_INVALID', `${name} exceeds ${CONSENT_DOCUMENT_MAX_BYTES} bytes`)
        const { kind, document } = readInboxDocument(await readAtMost(path, info.size + 1), name)
        // Encoded first: a document gossip cannot carry (TOO_LARGE) is refused before it is recorded.
        if (kind === 'revocation') {
          const message = encodeGossipMessage('revocation', document)
          const verified = verifyRevocation(document)
          const status = consent.revocationStatus(verified)
          if (status.kind === 'unknown-manifest') {
            if (!this.#waiting.has(name))
              log.warn({ file: name, manifest: verified.manifest }, 'revocation waits for its manifest')
            this.#waiting.add(name)
            continue
          }
          this.#waiting.delete(name)
          const outcome = await consent.addVerifiedRevocation(verified)
          await host.publish('consent', message)
          if (outcome === 'known') log.info({ file: name }, 'revocation already known; published again')
          else log.info({ revocation: verified.digest, file: name }, 'revocation published')
        } else {
          const message = encodeGossipMessage('manifest', document)
          const { verified } = await consent.addManifest(document, false)
          await host.publish('consent', message)
          log.info({ manifest: verified.digest, file: name }, 'manifest published')
        }
        await rename(path, join(this.#dir, 'done', name))
      } catch (err) {
        this.#waiting.delete(name)
        log.warn({ file: name, code: errorCode(err), err }, 'inbox document refused')
        await rename(path, join(this.#dir, 'done', `${name}.refused`)).catch(() => undefined)
      }
    }
  }
}

/** At most `limit` bytes of a file: one that grew after stat is read only as far as stat said (and a byte more, so it shows). */
async function readAtMost(path: string, limit: number): Promise<Uint8Array> {
  const handle = await open(path, 'r')
  try {
    const buffer = new Uint8Array(limit)
    let filled = 0
    for (;;) {
      const { bytesRead } = await handle.read(buffer, filled, buffer.byteLength - filled, filled)
      if (bytesRead === 0 || filled + bytesRead === buffer.byteLength)
        return buffer.subarray(0, filled + bytesRead)
      filled += bytesRead
    }
  } finally {
    await handle.close()
  }
}
