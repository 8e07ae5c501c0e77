// The publisher's close rule (closeDecision, pure): when the open round closes, with what, and
// which payloads it still has to fetch.
import { describe, expect, it } from 'vitest'
import { closeDecision, type CloseCandidate, type CloseInput } from '../../../node/round/publisher.ts'

const BASE = 'sha256:base'

function candidate(id: string, options: { base?: string; payload?: boolean } = {}) {
  return {
    id: `sha256:${id}`,
    delta: `sha256:delta-${id}`,
    contributor: `peer-${id}`,
    predicate: { baseCheckpoint: options.base ?? BASE },
    payload: options.payload ?? true,
  }
}

function decide(
  candidates: ReturnType<typeof candidate>[],
  overrides: Partial<CloseInput<CloseCandidate>> = {},
) {
  const stored = new Set(candidates.filter((c) => c.payload).map((c) => c.delta))
  const decision = closeDecision({
    candidates,
    base: BASE,
    hasPayload: (delta) => stored.has(delta),
    quorum: 3,
    deadlineSeconds: 60,
    elapsedSeconds: 10,
    ...overrides,
  })
  return { close: decision.close ?? null, fetch: decision.fetch.map((c) => c.id) }
}

describe('closeDecision', () => {
  it.each([
    ['nothing yet', [], {}, { close: null, fetch: [] }],
    [
      'below quorum before the deadline: wait, fetching missing payloads',
      [candidate('a'), candidate('b', { payload: false })],
      {},
      { close: null, fetch: ['sha256:b'] },
    ],
    [
      'quorum of ready contributions: close with them, sorted by id',
      [candidate('c'), candidate('a'), candidate('b'), candidate('d', { payload: false })],
      {},
      {
        close: { reason: 'quorum', contributions: ['sha256:a', 'sha256:b', 'sha256:c'] },
        fetch: ['sha256:d'],
      },
    ],
    [
      'contributions without a stored payload do not count toward quorum',
      [candidate('a'), candidate('b'), candidate('c', { payload: false })],
      {},
      { close: null, fetch: ['sha256:c'] },
    ],
    [
      'contributions from another base never count, even with their payload',
      [candidate('a'), candidate('b'), candidate('c', { base: 'sha256:stale' })],
      {},
      { close: null, fetch: [] },
    ],
    [
      'deadline passed with one ready contribution: close with it',
      [candidate('a'), candidate('b', { payload: false })],
      { elapsedSeconds: 60 },
      { close: { reason: 'deadline', contributions: ['sha256:a'] }, fetch: ['sha256:b'] },
    ],
    [
      'deadline passed with none ready: an empty round publishes nothing',
      [candidate('a', { payload: false }), candidate('b', { base: 'sha256:stale' })],
      { elapsedSeconds: 600 },
      { close: null, fetch: ['sha256:a'] },
    ],
    [
      'quorum reached after the deadline is still a quorum close',
      [candidate('a'), candidate('b'), candidate('c')],
      { elapsedSeconds: 600 },
      { close: { reason: 'quorum', contributions: ['sha256:a', 'sha256:b', 'sha256:c'] }, fetch: [] },
    ],
  ] as const)('%s', (_, candidates, overrides, expected) => {
    expect(decide([...candidates], overrides)).toEqual(expected)
  })
})
