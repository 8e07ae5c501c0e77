// The pieces of `coop start`'s output that follow the round engine's event stream (a real
// RoundEvents, emitted as the components emit): the round tracker (live line figures, one
// summary per checkpoint), the rejection notices and the quorum watch.
import { Writable } from 'node:stream'
import { pino } from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import type { RoundSummary } from '../../node/console/node-lines.ts'
import type { TopicValidationStats } from '../../node/p2p/gossip-validator.ts'
import type { TopicName } from '../../node/p2p/topics.ts'
import { createQuorumWatch } from '../../node/monitor/quorum-watch.ts'
import { createRejectionNotices } from '../../node/monitor/rejection-notices.ts'
import { createRoundTracker } from '../../node/monitor/round-tracker.ts'
import { RoundEvents } from '../../node/round/events.ts'

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

/** pino writes through a stream: let it drain. */
const flush = () => new Promise((resolve) => setImmediate(resolve))

const stops: (() => void)[] = []
afterEach(() => {
  for (const stop of stops.splice(0)) stop()
})

describe('the round tracker', () => {
  function tracked(expectEvalLoss: boolean, evalLossWaitMs = 60_000) {
    const events = new RoundEvents()
    const summaries: RoundSummary[] = []
    let clock = 1000
    const traffic = { in: 0, out: 0 }
    const tracker = createRoundTracker(
      { expectEvalLoss, evalLossWaitMs },
      {
        events,
        traffic: () => ({ ...traffic }),
        totalRounds: () => 4,
        onSummary: (s) => summaries.push(s),
        now: () => clock,
      },
    )
    tracker.start()
    stops.push(() => tracker.stop())
    return {
      events,
      summaries,
      tracker,
      traffic,
      tick: (ms: number) => {
        clock += ms
      },
    }
  }

  it('follows a round from opening to its checkpoint and sums it up once', () => {
    const { events, summaries, tracker, traffic, tick } = tracked(false)
    expect(tracker.live().activity).toBe('starting')
    events.emit('roundOpened', { round: 3, phase: 'unet' })
    expect(tracker.live()).toEqual({ activity: 'waiting', phase: 'unet', round: 3 })
    events.emit('roundStarted', { round: 3, phase: 'unet', steps: 5, base: 'sha256:b' })
    events.emit('trainingStep', { round: 3, phase: 'unet', step: 2, steps: 5, loss: 0.5, imgPerSec: 40 })
    expect(tracker.live()).toEqual({
      activity: 'training',
      phase: 'unet',
      round: 3,
      step: 2,
      steps: 5,
      loss: 0.5,
      imgPerSec: 40,
    })
    events.emit('contributionPublished', {
      round: 3,
      phase: 'unet',
      contribution: 'sha256:c',
      samples: 8,
      loss: 0.42,
      bytes: 100,
    })
    expect(tracker.live()).toMatchObject({ activity: 'waiting', loss: 0.42 })
    events.emit('roundClosing', { round: 3, phase: 'unet', contributions: 2, reason: 'quorum' })
    expect(tracker.live().activity).toBe('aggregating')
    tick(12_500)
    traffic.in = 5000
    traffic.out = 700
    events.emit('checkpointAdopted', {
      round: 3,
      phase: 'unet',
      checkpoint: 'sha256:k3',
      contributions: 2,
      verification: 'recomputed',
    })
    expect(summaries).toEqual([
      {
        round: 3,
        phase: 'unet',
        totalRounds: 4,
        contributions: 2,
        checkpoint: 'sha256:k3',
        verification: 'recomputed',
        loss: 0.42,
        seconds: 12.5,
        bytesIn: 5000,
        bytesOut: 700,
      },
    ])
    // The next round counts from this checkpoint, and carries no loss it did not contribute.
    tick(2000)
    traffic.in = 5100
    events.emit('checkpointAdopted', {
      round: 4,
      phase: 'unet',
      checkpoint: 'sha256:k4',
      contributions: 1,
      verification: 'signature',
    })
    expect(summaries[1]).toMatchObject({ round: 4, seconds: 2, bytesIn: 100, bytesOut: 0 })
    expect(summaries[1]).not.toHaveProperty('loss')
    events.emit('allRoundsDone', { rounds: 4, checkpoint: 'sha256:k4' })
    expect(tracker.live().activity).toBe('done')
  })

  it("a training publisher's summary waits for its eval loss, and a stop hands it over without one", () => {
    const { events, summaries, tracker } = tracked(true)
    const adopt = (round: number) =>
      events.emit('checkpointAdopted', {
        round,
        phase: 'autoencoder',
        checkpoint: `sha256:k${round}`,
        contributions: 2,
        verification: 'published',
      })
    adopt(1)
    expect(summaries).toEqual([])
    events.emit('evalLoss', { round: 1, phase: 'autoencoder', evalLoss: 0.031 })
    expect(summaries.map((s) => [s.round, s.evalLoss])).toEqual([[1, 0.031]])
    adopt(2)
    events.emit('evalLoss', { round: 9, phase: 'autoencoder', evalLoss: 0.5 }) // another round's: not this one
    expect(summaries).toHaveLength(1)
    tracker.stop()
    expect(summaries.map((s) => [s.round, s.evalLoss])).toEqual([
      [1, 0.031],
      [2, undefined],
    ])
  })

  it('a summary whose eval loss never comes is handed over after the wait', async () => {
    const { events, summaries } = tracked(true, 20)
    events.emit('checkpointAdopted', {
      round: 1,
      phase: 'unet',
      checkpoint: 'sha256:k1',
      contributions: 1,
      verification: 'published',
    })
    expect(summaries).toEqual([])
    await new Promise((resolve) => setTimeout(resolve, 100))
    expect(summaries.map((s) => s.round)).toEqual([1])
  })
})

describe('rejection notices', () => {
  it('tells the first rejection of a code with its sender, counts the rest per window, and ignores IGNOREs', async () => {
    const events = new RoundEvents()
    const { log, lines } = capturingLogger()
    const stats: Partial<Record<TopicName, TopicValidationStats>> = {}
    const notices = createRejectionNotices(
      { windowMs: 60_000, checkMs: 60_000 },
      { events, validationStats: () => stats, log },
    )
    notices.start()
    for (let i = 0; i < 50; i++)
      events.emit('contributionRefused', { action: 'REJECT', code: 'SCHEMA', from: `p${i}` })
    events.emit('contributionRefused', { action: 'REJECT', code: 'BAD_SIGNATURE', from: 'mallory' })
    events.emit('contributionRefused', { action: 'IGNORE', code: 'ROUND_OUT_OF_WINDOW', from: 'late' })
    stats.checkpoints = { accept: 3, ignore: {}, reject: { NOT_PUBLISHER: 2 } }
    stats.consent = { accept: 1, ignore: { REVOKED: 4 }, reject: {} }
    notices.stop()
    await flush()
    const told = lines.map(({ msg, code, peer, count, what, reason }) => ({
      msg,
      code,
      peer,
      count,
      what,
      reason,
    }))
    expect(told).toEqual([
      {
        msg: 'contribution rejected',
        code: 'SCHEMA',
        peer: 'p0',
        reason: 'the document does not match its schema',
      },
      {
        msg: 'contribution rejected',
        code: 'BAD_SIGNATURE',
        peer: 'mallory',
        reason: 'the signature does not verify',
      },
      // At the window's end (here: the stop), the 49 others of the flood in one line.
      {
        msg: 'contribution rejected',
        code: 'SCHEMA',
        count: 49,
        reason: 'the document does not match its schema',
      },
      {
        msg: 'gossip rejected',
        what: 'checkpoint',
        code: 'NOT_PUBLISHER',
        count: 2,
        reason: 'the signer is not a publisher of the charter',
      },
    ])
    expect(lines.every((l) => l.level === 40)).toBe(true)
  })

  it('tells validator refusals once each, as they grow', async () => {
    const events = new RoundEvents()
    const { log, lines } = capturingLogger()
    const stats: Partial<Record<TopicName, TopicValidationStats>> = {}
    const notices = createRejectionNotices(
      { windowMs: 60_000, checkMs: 10 },
      { events, validationStats: () => stats, log },
    )
    notices.start()
    stops.push(() => notices.stop())
    stats.consent = { accept: 0, ignore: {}, reject: { FOREIGN_CUSTODIAN: 1 } }
    await new Promise((resolve) => setTimeout(resolve, 60))
    stats.consent = { accept: 0, ignore: {}, reject: { FOREIGN_CUSTODIAN: 4 } }
    await new Promise((resolve) => setTimeout(resolve, 60))
    await flush()
    expect(lines.map((l) => [l.what, l.code, l.count])).toEqual([
      ['consent document', 'FOREIGN_CUSTODIAN', 1],
      ['consent document', 'FOREIGN_CUSTODIAN', 3],
    ])
  })
})

describe('the quorum watch', () => {
  function watched(options: { quorum: number; selfTrains: boolean }) {
    const events = new RoundEvents()
    const { log, lines } = capturingLogger()
    let now = 0
    let connected: string[] = []
    let running = true
    const watch = createQuorumWatch(
      { ...options, deadlineSeconds: 600, self: 'me', warnAfterMs: 30_000, checkMs: 5 },
      { events, connectedPeers: () => connected, running: () => running, log, now: () => now },
    )
    watch.start()
    stops.push(() => watch.stop())
    const wait = async () => {
      await new Promise((resolve) => setTimeout(resolve, 30))
      await flush()
    }
    return {
      events,
      lines,
      watch,
      wait,
      set: (change: { now?: number; connected?: string[]; running?: boolean }) => {
        now = change.now ?? now
        connected = change.connected ?? connected
        running = change.running ?? running
      },
    }
  }

  it('warns once when fewer trainers than the quorum stay around, again when the count changes', async () => {
    const w = watched({ quorum: 3, selfTrains: true })
    w.set({ connected: ['a'] })
    await w.wait()
    expect(w.watch.trainers()).toBe(2)
    w.set({ now: 29_000 })
    await w.wait()
    expect(w.lines).toEqual([])
    w.set({ now: 31_000 })
    await w.wait()
    w.set({ now: 40_000 })
    await w.wait()
    expect(w.lines.map((l) => [l.msg, l.quorum, l.trainers, l.deadlineSeconds])).toEqual([
      ['quorum above visible trainers', 3, 2, 600],
    ])
    w.set({ connected: [] })
    await w.wait()
    expect(w.lines.map((l) => l.trainers)).toEqual([2, 1])
  })

  it('counts recent contributors it reaches through others, and never itself twice', async () => {
    const w = watched({ quorum: 3, selfTrains: false })
    w.set({ connected: ['me', 'relay'] })
    w.events.emit('contributionAccepted', {
      round: 5,
      phase: 'unet',
      contribution: 'sha256:c1',
      contributor: 'far',
      from: 'relay',
    })
    w.events.emit('contributionAccepted', {
      round: 5,
      phase: 'unet',
      contribution: 'sha256:c2',
      contributor: 'further',
      from: 'relay',
    })
    expect(w.watch.trainers()).toBe(3)
    w.set({ now: 60_000 })
    await w.wait()
    expect(w.lines).toEqual([])
    // Two rounds later, contributors that stopped contributing no longer count.
    w.events.emit('contributionAccepted', {
      round: 7,
      phase: 'unet',
      contribution: 'sha256:c3',
      contributor: 'far',
      from: 'relay',
    })
    expect(w.watch.trainers()).toBe(2)
  })

  it('stays quiet when the quorum is met, and once the rounds are done', async () => {
    const met = watched({ quorum: 2, selfTrains: true })
    met.set({ connected: ['a'], now: 100_000 })
    await met.wait()
    expect(met.lines).toEqual([])
    const done = watched({ quorum: 5, selfTrains: true })
    done.set({ running: false, now: 100_000 })
    await done.wait()
    expect(done.lines).toEqual([])
  })
})
