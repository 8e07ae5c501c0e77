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
  /** Streams the holder has reset or closed (evicted, timed out, refused). */
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
  await Promise.all(
    hosts.flatMap((host) =>
      Array.from({ length: options.streamsPerIdentity }, async () => {
        const stream = await host.libp2p.dialProtocol(multiaddr(options.target), BLOB_PROTOCOL)
        stream.addEventListener('close', () => void (ended += 1), { once: true })
        for (const frame of lp.encode([request])) stream.send(frame)
        // Never read: no window updates, so the holder can send only what the first window allows.
        stream.pause()
        streams.push(stream)
      }),
    ),
  )
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
