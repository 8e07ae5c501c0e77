// Requesters that ask a holder for a blob and then never read: each stream sends a valid request
// and pauses, so yamux stops granting window and the holder's sends stall. Several identities,
// since a holder (and libp2p) caps streams per peer.
import type { Stream } from '@libp2p/interface'
import { multiaddr } from '@multiformats/multiaddr'
import * as lp from 'it-length-prefixed'
import { BLOB_PROTOCOL } from '../../../node/constants.ts'
import type { CoopHost } from '../../../node/p2p/host.ts'
import { startHost } from './net.ts'

export interface NonReaders {
  hosts: CoopHost[]
  streams: Stream[]
  /** Streams the holder has closed its end of or reset (busy, evicted, timed out). */
  ended(): number
  stop(): Promise<void>
}

/** Opens `identities` x `streamsPerIdentity` blob streams to `target` that ask for `digest` and never read. */
export async function openNonReadingStreams(options: {
  target: string
  coopId: string
  digest: string
  identities: number
  streamsPerIdentity: number
  maxBytes?: number
}): Promise<NonReaders> {
  const hosts = await Promise.all(
    Array.from({ length: options.identities }, () => startHost({ coopId: options.coopId })),
  )
  const request = new TextEncoder().encode(
    JSON.stringify({ digest: options.digest, maxBytes: options.maxBytes ?? 512 * 1024 * 1024 }),
  )
  let ended = 0
  const streams: Stream[] = []
  // One identity at a time: libp2p accepts at most 5 inbound connections per second from one
  // address (inboundConnectionThreshold), and every attacker here is on 127.0.0.1.
  for (const host of hosts) {
    await dialWithRetry(host, options.target)
    await Promise.all(
      Array.from({ length: options.streamsPerIdentity }, async () => {
        const stream = await host.libp2p.dialProtocol(multiaddr(options.target), BLOB_PROTOCOL)
        // The holder is done with the stream once it closed its end (busy, served) or reset it.
        let counted = false
        const end = (): void => {
          if (!counted) ended += 1
          counted = true
        }
        stream.addEventListener('remoteCloseWrite', end, { once: true })
        stream.addEventListener('close', end, { once: true })
        for (const frame of lp.encode([request])) stream.send(frame)
        // Never read: no window updates, so the holder can send only what the first window allows.
        stream.pause()
        streams.push(stream)
      }),
    )
  }
  return {
    hosts,
    streams,
    ended: () => ended,
    async stop() {
      for (const stream of streams) stream.abort(new Error('attack over'))
      await Promise.all(hosts.map((h) => h.stop()))
    },
  }
}

async function dialWithRetry(host: CoopHost, target: string): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    await new Promise((resolve) => setTimeout(resolve, 250))
    try {
      await host.dial(target)
      return
    } catch (err) {
      if (attempt >= 5) throw err
    }
  }
}
