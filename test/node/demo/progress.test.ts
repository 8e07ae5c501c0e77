import { describe, expect, it } from 'vitest'
import { interpretRecord, parseLogLine } from '../../../node/demo/events.ts'
import { applyEvent, createProgress } from '../../../node/demo/progress.ts'
import { createPlainView, renderTable } from '../../../node/demo/live-view.ts'

const line = (o: Record<string, unknown>): string => JSON.stringify({ level: 30, time: 1, pid: 1, ...o })

describe('node log parsing', () => {
  it('skips what is not a pino record of a node', () => {
    for (const bad of [
      '',
      'plain text',
      '{"level":30}',
      '{"msg":"x"}',
      '[1,2]',
      '{"level":30,"msg":',
      `{"level":30,"msg":"${'x'.repeat(70_000)}"}`,
    ]) {
      expect(parseLogLine(bad)).toBeUndefined()
    }
  })

  it('turns a training step into a step event with its numbers', () => {
    const record = parseLogLine(
      line({ msg: 'training step', round: 3, step: 12, steps: 40, loss: 0.25, imgPerSec: 31.5 }),
    )
    expect(record).toBeDefined()
    expect(interpretRecord(record!)).toEqual({
      kind: 'step',
      round: 3,
      step: 12,
      steps: 40,
      loss: 0.25,
      imgPerSec: 31.5,
    })
  })

  it('ignores a known message whose fields are missing or mistyped', () => {
    expect(interpretRecord(parseLogLine(line({ msg: 'training step', step: 'x', loss: 1 }))!)).toBeUndefined()
    expect(interpretRecord(parseLogLine(line({ msg: 'round closed' }))!)).toBeUndefined()
  })

  it('surfaces errors from unknown messages as problems, and drops unknown info lines', () => {
    expect(
      interpretRecord(
        parseLogLine(line({ level: 50, msg: 'contribution rejected', code: 'BAD_SIGNATURE' }))!,
      ),
    ).toEqual({
      kind: 'problem',
      level: 'error',
      message: 'contribution rejected (BAD_SIGNATURE)',
    })
    expect(interpretRecord(parseLogLine(line({ msg: 'gossip mesh updated' }))!)).toBeUndefined()
  })
})

describe('demo progress and views', () => {
  const peers = [
    { name: 'peer-1', publisher: true },
    { name: 'peer-2', publisher: false },
  ]

  it('folds steps, contributions and round closes into the table', () => {
    const progress = createProgress(peers, 0)
    applyEvent(progress, 1, { kind: 'step', round: 2, step: 5, steps: 40, loss: 0.5, imgPerSec: 12 }, 1000)
    const contributed = applyEvent(
      progress,
      1,
      { kind: 'contributed', round: 2, loss: 0.42, samples: 320 },
      2000,
    )
    expect(contributed).toEqual({
      notable: true,
      line: 'peer-2: round 2 contribution published, loss 0.4200',
    })
    const closed = applyEvent(
      progress,
      0,
      {
        kind: 'round-closed',
        round: 2,
        phase: 'unet',
        contributions: 2,
        digest: `sha256:${'ab'.repeat(32)}`,
      },
      3000,
    )
    expect(closed.notable && closed.line).toBe('peer-1: round 2 closed (unet) with 2 contributions')
    applyEvent(progress, 0, { kind: 'eval', round: 2, evalLoss: 0.3 }, 3500)
    const table = renderTable(progress, 65_000).join('\n')
    expect(table).toContain('1:05 elapsed')
    expect(table).toMatch(/peer-1\*/)
    expect(table).toMatch(/peer-2\s+waiting\s+\s*2\s+5\/40\s+0\.5000\s+12\.0/)
    expect(table).toContain(
      `round  2  unet         aggregated 2 contributions  -> ${'ab'.repeat(6)}  publisher eval loss 0.3000`,
    )
    expect(progress.peers[1]?.roundLoss.get(2)).toBe(0.42)
  })

  it("clears a peer's loss when its next round starts, so a stale loss is never shown as current", () => {
    const progress = createProgress(peers, 0)
    applyEvent(progress, 1, { kind: 'step', round: 1, step: 8, steps: 8, loss: 0.25 })
    applyEvent(progress, 1, { kind: 'round-started', round: 2, phase: 'unet', steps: 8 })
    expect(progress.peers[1]).toMatchObject({ round: 2, step: 0, phase: 'unet' })
    expect(progress.peers[1]?.loss).toBeUndefined()
  })

  it('prints only notable changes, with elapsed time, when not on a TTY', () => {
    const progress = createProgress(peers, 0)
    let written = ''
    const view = createPlainView({ write: (t: string) => (written += t) }, () => 75_000)
    const step = applyEvent(progress, 0, { kind: 'step', step: 1, loss: 1 })
    view.update(progress, step.notable ? step.line : undefined)
    const closed = applyEvent(progress, 0, { kind: 'round-closed', round: 1, contributions: 2 })
    view.update(progress, closed.notable ? closed.line : undefined)
    expect(written).toBe('[1:15] peer-1: round 1 closed with 2 contributions\n')
  })
})
