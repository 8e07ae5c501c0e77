import { mkdtemp, mkdir, readFile, rm } from 'node:fs/promises'
import { existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { parseAddrs, runPeers } from '../../../node/demo/orchestrate.ts'
import type { PeerLaunch } from '../../../node/demo/orchestrate.ts'
import { demoLayout } from '../../../node/demo/layout.ts'
import { createPlainView } from '../../../node/demo/live-view.ts'
import { DemoError } from '../../../node/demo/errors.ts'

const scripted = fileURLToPath(new URL('./fixtures/scripted-node.ts', import.meta.url))
let out: string
beforeEach(async () => {
  out = await mkdtemp(join(tmpdir(), 'demo-orch-'))
})
afterEach(async () => {
  await rm(out, { recursive: true, force: true })
})

async function launches(modes: string[]): Promise<PeerLaunch[]> {
  const layout = demoLayout(out, modes.length, 0)
  for (const peer of layout.peers) await mkdir(peer.dir, { recursive: true })
  return layout.peers.map((peer, i) => ({
    peer,
    entry: scripted,
    args: (bootstrap: string[]) => [peer.dir, modes[i] as string, ...bootstrap],
    addrsFile: join(peer.dir, 'addrs.json'),
  }))
}

function collectingView() {
  const lines: string[] = []
  return { lines, view: createPlainView({ write: (t: string) => lines.push(t.trimEnd()) }) }
}

describe('demo orchestration of peer processes', () => {
  it('starts the publisher first, bootstraps the others from it, and follows them to the end', async () => {
    const { lines, view } = collectingView()
    const ls = await launches(['finish', 'finish', 'finish'])
    const outcome = await runPeers({ launches: ls, view })
    expect(outcome.kind).toBe('finished')
    const publisherAddr = JSON.parse(await readFile(join(ls[0]!.peer.dir, 'addrs.json'), 'utf8'))[0]
    expect(JSON.parse(await readFile(join(ls[0]!.peer.dir, 'argv.json'), 'utf8')).bootstrap).toEqual([])
    for (const l of ls.slice(1))
      expect(JSON.parse(await readFile(join(l.peer.dir, 'argv.json'), 'utf8')).bootstrap).toEqual([
        publisherAddr,
      ])
    expect(outcome.progress.rounds).toEqual([expect.objectContaining({ round: 1, contributions: 2 })])
    expect(outcome.progress.peers.map((p) => p.activity)).toEqual(['stopped', 'stopped', 'stopped'])
    expect(lines.some((l) => l.includes('peer-1: round 1 closed (unet) with 2 contributions'))).toBe(true)
    // Each peer's stderr is kept in its log file.
    expect(await readFile(ls[1]!.peer.log, 'utf8')).toContain('"msg":"training step"')
  })

  it('stops the other peers cleanly when one dies, and says which one with its last lines', async () => {
    const { view } = collectingView()
    const ls = await launches(['wait', 'fail', 'wait'])
    const error = await runPeers({ launches: ls, view }).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(DemoError)
    expect((error as DemoError).code).toBe('NODE_EXITED')
    expect((error as DemoError).message).toContain('peer-2 exited with code 3')
    expect((error as DemoError).message).toContain('scripted failure')
    for (const i of [0, 2])
      expect(await readFile(join(ls[i]!.peer.dir, 'signals.txt'), 'utf8')).toBe('SIGINT\n')
  })

  it('stops every peer cleanly when the time box says so, after the publisher closes a round', async () => {
    const { lines, view } = collectingView()
    const ls = await launches(['rounds', 'rounds'])
    const asked: number[] = []
    const outcome = await runPeers({
      launches: ls,
      view,
      timeBox: (progress) => {
        const closed = progress.rounds.filter((r) => r.phase === 'unet').length
        asked.push(closed)
        return closed < 4
          ? undefined
          : {
              unetRoundsDone: closed,
              unetRoundsPlanned: 40,
              elapsedSeconds: 1,
              unetRoundSeconds: 0.05,
              plannedUnetRoundSeconds: 0.04,
              projectedSeconds: 901,
              limitSeconds: 900,
              reason: `stopping after U-Net round ${closed} of 40`,
            }
      },
    })
    expect(outcome.kind).toBe('time-boxed')
    if (outcome.kind !== 'time-boxed') return
    expect(outcome.stop.unetRoundsDone).toBe(4)
    // Asked once per round the publisher closed, and not again once it said stop.
    expect(asked).toEqual([1, 2, 3, 4])
    expect(lines.some((l) => l.includes('stopping after U-Net round 4 of 40'))).toBe(true)
    for (const l of ls) expect(await readFile(join(l.peer.dir, 'signals.txt'), 'utf8')).toBe('SIGINT\n')
    expect(outcome.progress.peers.map((p) => p.activity)).toEqual(['stopped', 'stopped'])
  })

  it('forwards one SIGINT to each peer on Ctrl-C and reports the run as interrupted', async () => {
    const { view } = collectingView()
    const ls = await launches(['wait', 'wait'])
    const running = runPeers({ launches: ls, view })
    // Ctrl-C once both peers are up.
    while (!existsSync(join(ls[1]!.peer.dir, 'argv.json'))) await new Promise((r) => setTimeout(r, 50))
    await new Promise((r) => setTimeout(r, 300))
    process.kill(process.pid, 'SIGINT')
    const outcome = await running
    expect(outcome.kind).toBe('interrupted')
    for (const l of ls) expect(await readFile(join(l.peer.dir, 'signals.txt'), 'utf8')).toBe('SIGINT\n')
    expect(outcome.progress.peers.map((p) => p.activity)).toEqual(['stopped', 'stopped'])
  })

  it('gives up with a clear error when the publisher never listens', async () => {
    const { view } = collectingView()
    const ls = await launches(['finish'])
    const silent: PeerLaunch = {
      ...ls[0]!,
      entry: fileURLToPath(new URL('./fixtures/silent-node.ts', import.meta.url)),
      args: () => [],
    }
    const error = await runPeers({ launches: [silent], view, startTimeoutMs: 500 }).catch((e: unknown) => e)
    expect((error as DemoError).code).toBe('NODE_START_TIMEOUT')
  })

  it('reads addrs files as JSON lists or lines, keeping only dialable /p2p/ addresses', () => {
    expect(parseAddrs('["/ip4/127.0.0.1/tcp/1/p2p/12D3KooWA","/ip4/127.0.0.1/tcp/1"]')).toEqual([
      '/ip4/127.0.0.1/tcp/1/p2p/12D3KooWA',
    ])
    expect(parseAddrs('/ip4/127.0.0.1/tcp/1/p2p/12D3KooWA\n\n')).toEqual([
      '/ip4/127.0.0.1/tcp/1/p2p/12D3KooWA',
    ])
    expect(parseAddrs('{"addrs":["/ip4/127.0.0.1/tcp/1/p2p/X"]}')).toEqual(['/ip4/127.0.0.1/tcp/1/p2p/X'])
    expect(parseAddrs('{broken')).toEqual([])
  })
})
