// Says what happens to the node's connections, so that silence is never the only symptom: a
// warning when the node has had no peer for a while (repeated with growing intervals), and a
// log line when a publisher of the charter connects or is lost.
import type { Libp2p } from '@libp2p/interface'
import type { Logger } from 'pino'
import { NO_PEERS_WARN_MS } from '../constants.ts'

export interface PeerWatchOptions {
  /** PeerIds the node depends on (the charter's publishers), named when they come and go. */
  publishers: readonly string[]
  /** The node's own PeerId: a publisher does not watch itself. */
  self: string
  /** How long without any peer before the first warning (default NO_PEERS_WARN_MS). */
  noPeersWarnMs?: number
}

export interface PeerWatch {
  start(): void
  stop(): void
}

export function createPeerWatch(
  options: PeerWatchOptions,
  modules: { libp2p: Libp2p; log: Logger },
): PeerWatch {
  const { libp2p, log } = modules
  const warnAfter = options.noPeersWarnMs ?? NO_PEERS_WARN_MS
  const publishers = new Set(options.publishers.filter((p) => p !== options.self))
  let aloneSince = Date.now()
  let nextWarning = warnAfter
  let timer: NodeJS.Timeout | undefined

  const connected = (): string[] => [...new Set(libp2p.getConnections().map((c) => c.remotePeer.toString()))]

  const onConnect = (event: CustomEvent<{ toString(): string }>): void => {
    const peer = event.detail.toString()
    aloneSince = Number.POSITIVE_INFINITY
    nextWarning = warnAfter
    if (publishers.has(peer)) log.info({ peer }, 'publisher connected')
    else log.debug({ peer }, 'peer connected')
  }
  const onDisconnect = (event: CustomEvent<{ toString(): string }>): void => {
    const peer = event.detail.toString()
    const remaining = connected().length
    if (publishers.has(peer)) log.warn({ peer, peers: remaining }, 'publisher lost')
    else log.info({ peer, peers: remaining }, 'peer disconnected')
    if (remaining === 0) aloneSince = Date.now()
  }
  const check = (): void => {
    if (connected().length > 0) {
      aloneSince = Number.POSITIVE_INFINITY
      return
    }
    if (!Number.isFinite(aloneSince)) aloneSince = Date.now()
    const alone = Date.now() - aloneSince
    if (alone < nextWarning) return
    log.warn({ seconds: Math.round(alone / 1000) }, 'no peers')
    // 30 s, 60 s, 120 s...: a node left alone for hours logs a handful of lines, not thousands.
    nextWarning = alone * 2
  }

  return {
    start() {
      aloneSince = connected().length > 0 ? Number.POSITIVE_INFINITY : Date.now()
      libp2p.addEventListener('peer:connect', onConnect)
      libp2p.addEventListener('peer:disconnect', onDisconnect)
      timer = setInterval(check, Math.min(1000, warnAfter))
      timer.unref()
    },
    stop() {
      clearInterval(timer)
      libp2p.removeEventListener('peer:connect', onConnect)
      libp2p.removeEventListener('peer:disconnect', onDisconnect)
    },
  }
}
