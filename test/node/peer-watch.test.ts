// Silence is never the only symptom: real libp2p hosts on loopback. A failed bootstrap dial is
// logged with its reason and retried with growing delays; a node alone warns "no peers"; losing
// the publisher is logged, and so is its return.
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { createServer } from 'node:net'
import { Writable } from 'node:stream'
import { pino } from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import type { CoopHost } from '../../node/p2p/host.ts'
import { createPeerWatch, type PeerWatch } from '../../node/p2p/peer-watch.ts'
import { startHost, waitFor } from './helpers/net.ts'

function capturingLogger() {
  const lines: Record<string, unknown>[] = []
  const stream = new Writable({
    write(chunk, _encoding, done) {
      for (const line of String(chunk).split('\n')) if (line.trim() !== '') lines.push(JSON.parse(line))
      done()
    },
  })
  return { log: pino({ level: 'debug' }, stream), lines }
}

describe('connectivity is logged', () => {
  const hosts: CoopHost[] = []
  const watches: PeerWatch[] = []
  afterEach(async () => {
    for (const w of watches.splice(0)) w.stop()
    await Promise.all(hosts.splice(0).map((h) => h.stop()))
  })

  it('a bootstrap peer that refuses connections is logged at warn with the reason, then retried later each time', async () => {
    // A port with nobody listening: bind one, note it, release it.
    const server = createServer()
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const port = (server.address() as { port: number }).port
    await new Promise((resolve) => server.close(resolve))
    const absent = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
    const { log, lines } = capturingLogger()
    hosts.push(await startHost({ bootstrap: [`/ip4/127.0.0.1/tcp/${port}/p2p/${absent}`] }, log))
    await waitFor(
      () => lines.filter((l) => l.msg === 'bootstrap dial failed').length >= 2,
      'two failed dials',
      20_000,
    )
    const failures = lines.filter((l) => l.msg === 'bootstrap dial failed')
    expect(failures[0]).toMatchObject({ level: 40, attempt: 1, retryInSeconds: 2 })
    expect(String(failures[0]!.reason)).toMatch(/ECONNREFUSED|refused/i)
    expect(failures[1]).toMatchObject({ attempt: 2, retryInSeconds: 4 })
  })

  it('warns when alone, and logs the publisher lost and back', async () => {
    const publisher = await startHost()
    const { log, lines } = capturingLogger()
    const node = await startHost({}, log)
    hosts.push(node, publisher)
    const watch = createPeerWatch(
      { publishers: [publisher.peerId], self: node.peerId, noPeersWarnMs: 300 },
      { libp2p: node.libp2p, log },
    )
    watches.push(watch)
    watch.start()
    await waitFor(() => lines.some((l) => l.msg === 'no peers'), 'the no-peers warning', 10_000)
    expect(lines.find((l) => l.msg === 'no peers')).toMatchObject({ level: 40 })

    await node.dial(publisher.multiaddrs()[0] as string)
    await waitFor(() => lines.some((l) => l.msg === 'publisher connected'), 'publisher connected')
    const warningsBefore = lines.filter((l) => l.msg === 'no peers').length
    await publisher.stop()
    await waitFor(() => lines.some((l) => l.msg === 'publisher lost'), 'publisher lost')
    expect(lines.find((l) => l.msg === 'publisher lost')).toMatchObject({
      level: 40,
      peer: publisher.peerId,
      peers: 0,
    })
    // Alone again: the warning comes back.
    await waitFor(
      () => lines.filter((l) => l.msg === 'no peers').length > warningsBefore,
      'a new no-peers warning',
      10_000,
    )
  })
})
