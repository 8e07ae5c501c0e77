// What `coop start` prints for a person: the live line, the round summary, log records as
// sentences, and the screen that keeps the live line whole while other lines print above it.
import { describe, expect, it } from 'vitest'
import { formatHumanLine, LIVE_COVERED, parseLogRecord } from '../../node/console/human-log.ts'
import {
  formatBytes,
  formatLiveLine,
  formatRoundSummary,
  formatSeconds,
  type LiveState,
  type RoundSummary,
} from '../../node/console/node-lines.ts'
import { REJECTION_REASONS, rejectionReason } from '../../node/console/rejection-reasons.ts'
import { fit, Screen, stripColour } from '../../node/console/screen.ts'
import { GOSSIP_ERROR_CODES } from '../../node/p2p/gossip-errors.ts'

const CHECKPOINT = 'sha256:3fa9c2e1' + '0'.repeat(56)

describe('the live line', () => {
  const base: LiveState = {
    activity: 'training',
    phase: 'unet',
    round: 7,
    totalRounds: 21,
    contributions: 1,
    quorum: 3,
    peers: 3,
  }
  it.each<[string, Partial<LiveState>, string]>([
    [
      'training',
      { step: 23, steps: 50, loss: 0.14321, imgPerSec: 410.4 },
      'U-Net round 7/21 · step 23/50 · loss 0.1432 · 410 img/s · 3 peers',
    ],
    ['training before the first step', { step: 0, steps: 50 }, 'U-Net round 7/21 · step 0/50 · 3 peers'],
    [
      'waiting for the checkpoint after contributing',
      { activity: 'waiting', step: 50, steps: 50, loss: 0.1 },
      'U-Net round 7/21 · waiting for the checkpoint (1/3 contributions) · step 50/50 · loss 0.1000 · 3 peers',
    ],
    [
      'aggregating',
      { activity: 'aggregating', contributions: 3 },
      'U-Net round 7/21 · aggregating 3 contributions · 3 peers',
    ],
    ['an autoencoder round, one peer', { phase: 'autoencoder', peers: 1 }, 'autoencoder round 7/21 · 1 peer'],
    [
      'before the first checkpoint',
      { activity: 'starting', round: null, phase: null, peers: 0 },
      "waiting for the publisher's first checkpoint · 0 peers",
    ],
    ['done', { activity: 'done' }, 'all 21 rounds done · 3 peers'],
    ['stopped in a round', { activity: 'stopped' }, 'stopped in U-Net round 7/21'],
    ['stopped before any round', { activity: 'stopped', round: null, phase: null }, 'stopped'],
  ])('%s', (_name, change, expected) => {
    expect(formatLiveLine({ ...base, ...change })).toBe(expected)
  })
})

describe('the round summary', () => {
  const base: RoundSummary = {
    round: 7,
    phase: 'unet',
    totalRounds: 21,
    contributions: 4,
    checkpoint: CHECKPOINT,
    verification: 'recomputed',
    seconds: 41.23,
    bytesIn: 1_234_567,
    bytesOut: 350_000,
  }
  it.each<[string, Partial<RoundSummary>, string]>([
    [
      'a trainer that recomputed',
      { loss: 0.15 },
      'round 7/21 U-Net · 4 contributions · checkpoint 3fa9c2e1 recomputed · loss 0.1500 · 41.2 s · in 1.2 MB, out 350.0 kB',
    ],
    [
      'the publisher with its eval loss',
      {
        verification: 'published',
        contributions: 1,
        evalLoss: 0.1432,
        seconds: 125,
        bytesIn: 999,
        bytesOut: 0,
      },
      'round 7/21 U-Net · 1 contribution · checkpoint 3fa9c2e1 published · eval loss 0.1432 · 2 min 5 s · in 999 B, out 0 B',
    ],
    [
      "a phase's genesis",
      { contributions: 0, verification: 'genesis', phase: 'autoencoder' },
      'autoencoder starts from checkpoint 3fa9c2e1 (genesis)',
    ],
  ])('%s', (_name, change, expected) => {
    expect(formatRoundSummary({ ...base, ...change })).toBe(expected)
  })

  it.each([
    [0, '0 B'],
    [999, '999 B'],
    [1000, '1.0 kB'],
    [5_500_000_000, '5.5 GB'],
  ])('%d bytes read %s', (n, text) => expect(formatBytes(n)).toBe(text))

  it.each([
    [0.04, '0.0 s'],
    [59.9, '59.9 s'],
    [61, '1 min 1 s'],
    [3725, '1 h 2 min'],
  ])('%d seconds read %s', (n, text) => expect(formatSeconds(n)).toBe(text))
})

describe('log records as sentences', () => {
  const at = new Date(2026, 0, 1, 9, 5, 7).getTime()
  const line = (record: Record<string, unknown>, hide?: ReadonlySet<string>) =>
    formatHumanLine({ level: 30, time: at, ...record } as never, {
      colour: false,
      ...(hide === undefined ? {} : { hide }),
    })
  const PEER = '12D3KooWHostile'

  it.each<[string, Record<string, unknown>, string]>([
    [
      'a rejected contribution: who, why and the code',
      { level: 40, msg: 'contribution rejected', code: 'BAD_SIGNATURE', peer: PEER },
      `09:05:07 warning: rejected a contribution from ${PEER}: the signature does not verify (BAD_SIGNATURE); the sender is penalised`,
    ],
    [
      'more rejections of a code, counted',
      { level: 40, msg: 'contribution rejected', code: 'WRONG_BASE', count: 12, seconds: 60 },
      "09:05:07 warning: rejected 12 more contributions in the last 60 s: it does not start from the round's checkpoint (WRONG_BASE); senders are penalised",
    ],
    [
      'refused checkpoints at gossip',
      { level: 40, msg: 'gossip rejected', what: 'checkpoint', code: 'NOT_PUBLISHER', count: 2 },
      '09:05:07 warning: rejected 2 checkpoints at gossip validation: the signer is not a publisher of the charter (NOT_PUBLISHER); senders are penalised',
    ],
    [
      'a code from another version keeps the code',
      { level: 40, msg: 'contribution rejected', code: 'SOMETHING_NEW', peer: PEER },
      `09:05:07 warning: rejected a contribution from ${PEER}: SOMETHING_NEW; the sender is penalised`,
    ],
    [
      'a checkpoint failing verification',
      {
        level: 50,
        msg: 'checkpoint rejected',
        checkpoint: CHECKPOINT,
        code: 'RECOMPUTE_MISMATCH',
        err: { message: 'the aggregate differs', code: 'RECOMPUTE_MISMATCH' },
      },
      '09:05:07 error: rejected checkpoint 3fa9c2e1: RECOMPUTE_MISMATCH: the aggregate differs; it is not adopted',
    ],
    [
      'the quorum warning',
      { level: 40, msg: 'quorum above visible trainers', quorum: 3, trainers: 1, deadlineSeconds: 600 },
      "09:05:07 warning: the charter's quorum is 3 but this node sees 1 trainer: each round waits for its deadline (600 s) and closes with the contributions it has",
    ],
    [
      'a round summary',
      {
        msg: 'round summary',
        round: 2,
        phase: 'unet',
        totalRounds: 2,
        contributions: 2,
        checkpoint: CHECKPOINT,
        verification: 'recomputed',
        seconds: 3,
        bytesIn: 10,
        bytesOut: 20,
      },
      '09:05:07 round 2/2 U-Net · 2 contributions · checkpoint 3fa9c2e1 recomputed · 3.0 s · in 10 B, out 20 B',
    ],
    [
      'the backend, with what was skipped and why',
      {
        msg: 'training backend selected',
        backend: 'wasm',
        threads: 2,
        skipped: [{ name: 'torch', reason: 'no NVIDIA GPU' }],
      },
      '09:05:07 backend wasm on 2 threads (skipped torch: no NVIDIA GPU)',
    ],
    [
      'a resumed store',
      { msg: 'round state loaded', component: 'round', checkpoints: 4, contributions: 7, round: 3 },
      '09:05:07 resuming: the store holds 4 checkpoints (latest round 3) and 7 contributions',
    ],
    [
      'a new store',
      { msg: 'round state loaded', checkpoints: 0, contributions: 0, round: null },
      '09:05:07 new store: no checkpoint yet',
    ],
    [
      'a peer leaving',
      { msg: 'peer disconnected', component: 'peers', peer: PEER, peers: 1 },
      `09:05:07 peer ${PEER} disconnected (1 peer left)`,
    ],
    [
      'any other record: component, message, context',
      {
        msg: 'blob served',
        component: 'p2p',
        digest: 'sha256:ab',
        bytes: 12,
        ratio: 0.123456,
        note: 'two words',
      },
      '09:05:07 p2p: blob served digest=sha256:ab bytes=12 ratio=0.1235 note="two words"',
    ],
  ])('%s', (_name, record, expected) => {
    expect(line(record)).toBe(expected)
  })

  it('hides per-step records always, and what the live line shows while it is on', () => {
    expect(line({ msg: 'training step', step: 3 })).toBeUndefined()
    const summary = { msg: 'round closed', round: 1 }
    expect(line(summary)).toBeDefined()
    expect(line(summary, LIVE_COVERED)).toBeUndefined()
    expect(
      line({ level: 40, msg: 'contribution rejected', code: 'SCHEMA', peer: PEER }, LIVE_COVERED),
    ).toBeDefined()
  })

  it("shows a peer's control characters as escapes: no screen rewriting, no forged second line", () => {
    // An error message can quote what a peer sent: here a refused document's unknown key.
    const message = 'Unrecognized key: "\x1b]0;owned\x07\n09:05:08 round 3: checkpoint verified \u202e"'
    const shown = formatHumanLine(
      {
        level: 50,
        time: at,
        msg: 'checkpoint rejected',
        checkpoint: CHECKPOINT,
        code: 'SCHEMA',
        err: { message, code: 'SCHEMA' },
      },
      { colour: true },
    )
    expect(stripColour(shown as string)).not.toMatch(/[\x00-\x1f\x7f-\x9f\u202e]/)
    expect(stripColour(shown as string)).toBe(
      '09:05:07 error: rejected checkpoint 3fa9c2e1: SCHEMA: Unrecognized key: "\\u001b]0;owned\\u0007\\u000a09:05:08 round 3: checkpoint verified \\u202e"; it is not adopted',
    )
  })

  it('colours the level label only when asked', () => {
    const coloured = formatHumanLine({ level: 50, time: at, msg: 'node failed' }, { colour: true })
    expect(coloured).toContain('\x1b[31m')
    expect(stripColour(coloured as string)).toBe('09:05:07 error: node failed')
  })

  it.each(['', 'not json', '[1,2]', '{"msg":"no level"}', '{"level":30}', 'null'])(
    'parseLogRecord(%j) is not a record',
    (text) => expect(parseLogRecord(text)).toBeUndefined(),
  )

  it('every gossip refusal code has a reason', () => {
    for (const code of GOSSIP_ERROR_CODES) expect(REJECTION_REASONS[code]).toMatch(/^[a-z]/)
    expect(rejectionReason('toString')).toBeUndefined()
    expect(rejectionReason(42)).toBeUndefined()
  })
})

describe('the screen', () => {
  const recorder = (isTTY = true) => {
    const writes: string[] = []
    return { stream: { isTTY, columns: 40, write: (t: string) => writes.push(t) }, writes }
  }

  it('redraws the live line in place, prints lines above it, and leaves the last line finished', () => {
    const out = recorder()
    const err = recorder()
    const screen = new Screen()
    screen.start(out.stream, err.stream)
    expect(screen.active).toBe(true)
    screen.live('round 1/2 · step 1/5')
    screen.live('round 1/2 · step 1/5') // unchanged: not redrawn
    screen.print('summary line')
    screen.printError('a log line\n')
    screen.stop('all 2 rounds done')
    expect(screen.active).toBe(false)
    expect(out.writes.join('')).toBe(
      '\r\x1b[2Kround 1/2 · step 1/5' +
        '\r\x1b[2Ksummary line\nround 1/2 · step 1/5' +
        '\r\x1b[2K' +
        'round 1/2 · step 1/5' +
        '\r\x1b[2Kall 2 rounds done\n',
    )
    expect(err.writes).toEqual(['a log line\n'])
  })

  it('writes log lines straight through when stderr is not the terminal', () => {
    const out = recorder()
    const err = recorder(false)
    const screen = new Screen()
    screen.start(out.stream, err.stream)
    screen.live('live')
    screen.printError('to a file\n', err.stream)
    expect(err.writes).toEqual(['to a file\n'])
    expect(out.writes).toEqual(['\r\x1b[2Klive'])
  })

  it.each([
    ['short', 40, 'short'],
    ['x'.repeat(50), 40, `${'x'.repeat(38)}…`],
    ['\x1b[2m09:00\x1b[0m fits', 20, '\x1b[2m09:00\x1b[0m fits'],
    ['unknown width', undefined, 'unknown width'],
  ])('fit(%j, %s)', (text, columns, expected) => {
    expect(fit(text, columns)).toBe(expected)
  })
})
