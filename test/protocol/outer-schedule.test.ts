// The charter's outer learning-rate schedule (protocol/outer-schedule.ts): a pure function of the
// charter and the round, which the publisher, every verifier and the simulator must agree on bit
// for bit; the charter schema takes it as an optional field (absent: the old constant lr and the
// same coop id).
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { createCharter, verifyCharter } from '../../protocol/charter.ts'
import {
  formatOuterSchedule,
  outerHyperparameters,
  outerLrAt,
  parseOuterSchedule,
} from '../../protocol/outer-schedule.ts'
import { expectCode } from './expect-code.ts'
import { charterContent, publisherA, publisherB } from './fixtures.ts'

describe('outerLrAt', () => {
  it.each([
    // [lr, schedule, k, total, expected]
    [0.7, undefined, 1, 10, 0.7],
    [0.7, undefined, 99, 10, 0.7],
    [1, { warmupRounds: 0, finalLrFraction: 1 }, 5, 10, 1],
    [1, { warmupRounds: 3, finalLrFraction: 1 }, 1, 10, 0.25],
    [1, { warmupRounds: 3, finalLrFraction: 1 }, 3, 10, 0.75],
    [1, { warmupRounds: 3, finalLrFraction: 1 }, 4, 10, 1],
    [1, { warmupRounds: 0, finalLrFraction: 0.5 }, 1, 5, 1],
    [1, { warmupRounds: 0, finalLrFraction: 0.5 }, 3, 5, 0.75],
    [1, { warmupRounds: 0, finalLrFraction: 0.5 }, 5, 5, 0.5],
    [1, { warmupRounds: 0, finalLrFraction: 0.5 }, 9, 5, 0.5],
    [1, { warmupRounds: 1, finalLrFraction: 0.5 }, 1, 4, 0.5],
    [1, { warmupRounds: 1, finalLrFraction: 0.5 }, 2, 4, 1],
    [1, { warmupRounds: 1, finalLrFraction: 0.5 }, 4, 4, 0.5],
    // One round after the warm-up: no decay span, the first decaying round keeps the full lr.
    [1, { warmupRounds: 2, finalLrFraction: 0.5 }, 3, 3, 1],
  ])('lr %d, schedule %j, round %d of %d -> %d', (lr, schedule, k, total, expected) => {
    expect(outerLrAt(lr, schedule, k, total)).toBeCloseTo(expected, 12)
  })

  it('stays in (0, lr] and never rises after the warm-up', () => {
    fc.assert(
      fc.property(
        fc.double({ min: 1e-3, max: 100, noNaN: true }),
        fc.integer({ min: 0, max: 20 }),
        fc.double({ min: 1e-3, max: 1, noNaN: true }),
        fc.integer({ min: 1, max: 60 }),
        (lr, warmupRounds, finalLrFraction, total) => {
          const schedule = { warmupRounds, finalLrFraction }
          let previous = Infinity
          for (let k = 1; k <= total + 2; k++) {
            const value = outerLrAt(lr, schedule, k, total)
            expect(value).toBeGreaterThan(0)
            expect(value).toBeLessThanOrEqual(lr)
            if (k > warmupRounds + 1) expect(value).toBeLessThanOrEqual(previous)
            previous = value
          }
        },
      ),
    )
  })

  it.each([
    [0, undefined, 1, 10],
    [Number.NaN, undefined, 1, 10],
    [0.7, undefined, 0, 10],
    [0.7, undefined, 1.5, 10],
    [0.7, { warmupRounds: -1, finalLrFraction: 1 }, 1, 10],
    [0.7, { warmupRounds: 1.5, finalLrFraction: 1 }, 1, 10],
    [0.7, { warmupRounds: 1, finalLrFraction: 0 }, 1, 10],
    [0.7, { warmupRounds: 1, finalLrFraction: 1.5 }, 1, 10],
    [0.7, { warmupRounds: 1, finalLrFraction: Number.NaN }, 1, 10],
  ])('refuses lr %d, schedule %j, round %d', (lr, schedule, k, total) => {
    expectCode(() => outerLrAt(lr, schedule, k, total), 'SCHEMA')
  })
})

describe('parseOuterSchedule', () => {
  it.each([
    ['constant', undefined],
    ['warmup:2,final:0.5', { warmupRounds: 2, finalLrFraction: 0.5 }],
    ['final:0.25', { warmupRounds: 0, finalLrFraction: 0.25 }],
    ['warmup:3', { warmupRounds: 3, finalLrFraction: 1 }],
  ])('%s', (text, expected) => {
    expect(parseOuterSchedule(text)).toEqual(expected)
    expect(parseOuterSchedule(formatOuterSchedule(parseOuterSchedule(text)))).toEqual(expected)
  })

  it.each([
    '',
    'warmup',
    'warmup:',
    'warmup:x',
    'warmup:1,warmup:2',
    'cosine:1',
    'final:0',
    'final:2',
    'warmup:1:2',
  ])('refuses %j', (text) => {
    expectCode(() => parseOuterSchedule(text), 'SCHEMA')
  })
})

describe('the charter field', () => {
  const sign = (rounds: Record<string, unknown>) =>
    createCharter(charterContent({ rounds: { ...charterContent().rounds, ...rounds } as never }), [
      publisherA,
      publisherB,
    ])

  it('is optional: a charter without it keeps its id and a constant lr', () => {
    const plain = sign({})
    expect(plain.charter.rounds.outerSchedule).toBeUndefined()
    expect(plain.coopId).toBe(createCharter(charterContent(), [publisherA, publisherB]).coopId)
    for (const round of [1, 3, 4, 13]) expect(outerHyperparameters(plain.charter, round).lr).toBe(0.7)
  })

  it('runs each phase from its own first round (3 autoencoder rounds, then 10 U-Net rounds)', () => {
    const { envelope } = sign({ outerSchedule: { warmupRounds: 1, finalLrFraction: 0.5 } })
    const charter = verifyCharter(envelope).charter
    const lr = (round: number) => outerHyperparameters(charter, round).lr
    // Autoencoder rounds 1-3: warm-up then decay to 0.5 at its last round.
    expect([lr(1), lr(2), lr(3)]).toEqual([0.35, 0.7, 0.35])
    // U-Net rounds 4-13 restart the schedule.
    expect(lr(4)).toBe(0.35)
    expect(lr(5)).toBe(0.7)
    expect(lr(13)).toBeCloseTo(0.35, 12)
    expect(outerHyperparameters(charter, 7).momentum).toBe(0.9)
  })

  it.each([
    { warmupRounds: -1, finalLrFraction: 0.5 },
    { warmupRounds: 1, finalLrFraction: 0 },
    { warmupRounds: 1, finalLrFraction: 1.01 },
    { warmupRounds: 1 },
    { warmupRounds: 1, finalLrFraction: 0.5, cosine: true },
  ])('refuses %j', (outerSchedule) => {
    expect(() => sign({ outerSchedule })).toThrow()
  })
})
