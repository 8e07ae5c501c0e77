// What a person sees from `coop start` on a terminal: real node processes under a real
// pseudo-terminal (util-linux `script`, in Debian's essential bsdutils). The publisher prints
// sentences, one summary line per round and a live line redrawn in place, never raw JSON or a
// line per step; a trainer on the same kind of terminal started with `--log json` prints JSON
// lines only, with no live line, and its JSON carries the same round summaries.
import { spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  bootstrapAddr,
  COOP_MAIN,
  createCluster,
  NODE,
  startNode,
  stopAll,
  type Cluster,
  type ClusterPeer,
  type NodeProcess,
} from './cluster-helpers/cluster.ts'

const CLEAR_ROW = '\r\x1b[2K'
const SGR = /\x1b\[[0-9;]*m/g

interface TerminalRun {
  output: () => string
  /** Types on the terminal (\x03 is Ctrl-C: the terminal signals the node). */
  type: (text: string) => void
  exited: Promise<number | null>
}

const quote = (arg: string): string => `'${arg.replace(/'/g, `'\\''`)}'`

/** `coop start` for a peer inside a 160-column pseudo-terminal; stdout and stderr both go to it. */
function startOnTerminal(cluster: Cluster, peer: ClusterPeer, extra: string[]): TerminalRun {
  const args = [
    'start',
    ...['--charter', cluster.charter, '--store', peer.store, '--data', peer.data],
    ...['--consent', peer.consentPath, '--key', peer.nodeKeyPath],
    ...['--backend', process.env.COOP_TEST_BACKEND ?? 'auto'],
    ...(peer.publisher ? ['--publisher'] : []),
    ...extra,
  ]
  const command = `stty cols 160; exec ${[NODE, COOP_MAIN, ...args].map(quote).join(' ')}`
  const child = spawn('script', ['-qfec', command, '/dev/null'], {
    stdio: ['pipe', 'pipe', 'inherit'],
    env: { ...process.env, COOP_LOG_LEVEL: 'info', NO_COLOR: '1', VITEST: '' },
  })
  let text = ''
  child.stdout.on('data', (chunk: Buffer) => {
    text += chunk.toString('utf8')
  })
  return {
    output: () => text,
    type: (keys) => child.stdin.write(keys),
    exited: new Promise((resolve) => child.once('close', (code) => resolve(code))),
  }
}

/** The lines a person ends up reading: each row as the terminal shows it after the redraws. */
function screenRows(raw: string): string[] {
  return raw
    .replace(SGR, '')
    .split('\n')
    .map((row) => row.replace(/\r$/, ''))
    .map((row) => row.split(/\r(?:\x1b\[2K)?/).at(-1) ?? '')
    .filter((row) => row.length > 0)
}

// The quorum warning comes only after QUORUM_WARN_AFTER_MS (30 s) of shortage: its publisher is
// started first, so that wait runs alongside the terminal rounds instead of after them.
let quorumDir: string
let quorumNode: Promise<NodeProcess>

beforeAll(async () => {
  quorumDir = await mkdtemp(join(tmpdir(), 'coop-quorum-'))
  quorumNode = (async () => {
    const cluster = await createCluster({
      dir: quorumDir,
      peers: 2,
      imagesPerPeer: 4,
      charterArgs: [
        '--ae-rounds',
        '1',
        '--unet-rounds',
        '1',
        '--inner-steps',
        '2',
        '--quorum',
        '2',
        '--deadline',
        '600',
      ],
    })
    // Only the publisher runs: it trains, so it sees one trainer, itself.
    return startNode(cluster, cluster.peers[0]!)
  })()
  // Awaited by its test; marked handled here so a failed start fails that test, not the file.
  quorumNode.catch(() => undefined)
})

afterAll(async () => {
  const node = await quorumNode.catch(() => undefined)
  if (node !== undefined) await stopAll([node])
  await rm(quorumDir, { recursive: true, force: true })
})

describe('coop start on a terminal', () => {
  let dir: string
  let cluster: Cluster
  let publisher: string
  let trainer: string
  let codes: (number | null)[]

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'coop-tty-'))
    cluster = await createCluster({
      dir,
      peers: 2,
      imagesPerPeer: 8,
      charterArgs: ['--ae-rounds', '1', '--unet-rounds', '1', '--inner-steps', '3', '--quorum', '2'],
    })
    const a = startOnTerminal(cluster, cluster.peers[0]!, ['--stay'])
    const addr = await bootstrapAddr(cluster.peers[0]!)
    const b = startOnTerminal(cluster, cluster.peers[1]!, [
      '--bootstrap',
      addr,
      '--linger',
      '0',
      '--log',
      'json',
    ])
    const trainerCode = await b.exited
    // The publisher stays (--stay) until Ctrl-C on its terminal.
    a.type('\x03')
    codes = [await a.exited, trainerCode]
    publisher = a.output()
    trainer = b.output()
  }, 300_000)

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  it('both runs end well (the publisher on Ctrl-C)', () => {
    expect(codes, `publisher:\n${publisher.slice(-3000)}\ntrainer:\n${trainer.slice(-3000)}`).toEqual([0, 0])
  })

  it('the publisher shows sentences, one summary per round and a live line, never JSON or a line per step', () => {
    const rows = screenRows(publisher)
    expect(rows.filter((r) => r.startsWith('{'))).toEqual([])
    expect(
      rows.some((r) =>
        /^\d\d:\d\d:\d\d listening on \/ip4\/127\.0\.0\.1\/tcp\/\d+\S* \(publisher\)$/.test(r),
      ),
    ).toBe(true)
    expect(rows.some((r) => /training on 8 consented images from 1 manifest/.test(r))).toBe(true)
    const summaries = rows.filter((r) => / round \d+\/\d+ (autoencoder|U-Net) · /.test(r))
    expect(summaries).toHaveLength(2)
    for (const s of summaries)
      expect(s).toMatch(
        /^\d\d:\d\d:\d\d round \d+\/2 (autoencoder|U-Net) · 2 contributions · checkpoint [0-9a-f]{8} published · loss \d\.\d{4}( · eval loss \d\.\d{4})? · [\d.]+ (s|min)/,
      )
    // The live line was drawn in place (cleared and redrawn), with the step and the image rate. Its
    // peer count is whatever it was when a step was drawn: on a fast machine the autoencoder's steps
    // were all drawn before the other peer connected ("· 0 peers"), and the U-Net's only once the
    // round was waiting for the checkpoint.
    expect(publisher).toContain(CLEAR_ROW)
    expect(publisher).toMatch(/round \d\/2 · (.+ · )?step \d\/3 · loss \d\.\d{4} · \d+ img\/s · [01] peers?/)
    // Nothing the live line or the summaries say is repeated as a log line.
    expect(
      rows.filter((r) => /training step|round closed|checkpoint adopted|contribution published/.test(r)),
    ).toEqual([])
    // Ctrl-C: the node says it stops, the live line ends as a finished line, then the node says
    // what it moved.
    expect(rows.slice(-3), rows.join('\n')).toEqual([
      expect.stringMatching(
        /^\d\d:\d\d:\d\d stopping \(SIGINT\) after the current step; press Ctrl-C again to quit at once$/,
      ),
      expect.stringMatching(/^all 2 rounds done · [01] peers?$/),
      expect.stringMatching(
        /^\d\d:\d\d:\d\d stopped \(served [\d.]+ [kM]?B, fetched [\d.]+ [kM]?B, published [\d.]+ [kM]?B of gossip\)$/,
      ),
    ])
    if (process.env.COOP_SHOW_SCREEN !== undefined) console.log(rows.join('\n'))
  })

  it('with --log json the trainer prints JSON lines only, with its round summaries, and no live line', () => {
    expect(trainer).not.toContain('\x1b[2K')
    const rows = trainer
      .split('\n')
      .map((r) => r.replace(/\r$/, ''))
      .filter((r) => r.length > 0)
    const records = rows.map((r) => JSON.parse(r) as { msg: string; [key: string]: unknown })
    expect(records.some((r) => r.msg === 'training step')).toBe(true)
    const summaries = records.filter((r) => r.msg === 'round summary' && r.contributions === 2)
    expect(summaries.map((s) => [s.verification, typeof s.checkpoint, typeof s.seconds])).toEqual([
      [expect.stringMatching(/^(recomputed|signature)$/), 'string', 'number'],
      [expect.stringMatching(/^(recomputed|signature)$/), 'string', 'number'],
    ])
  })
})

describe('a publisher whose quorum exceeds its trainers', () => {
  it('warns that each round will wait for its deadline', async () => {
    const node = await quorumNode
    const warning = await node.waitFor('quorum above visible trainers', undefined, 180_000)
    expect(warning).toMatchObject({ level: 40, quorum: 2, trainers: 1, deadlineSeconds: 600 })
    // Once per shortage: the count has not changed, so no second line in the three checks
    // (QUORUM_CHECK_MS apart) that follow the warning.
    const settled = (warning.time as number) + 3000 - Date.now()
    if (settled > 0) await new Promise((resolve) => setTimeout(resolve, settled))
    expect(node.running).toBe(true)
    expect(node.count('quorum above visible trainers')).toBe(1)
  }, 240_000)
})
