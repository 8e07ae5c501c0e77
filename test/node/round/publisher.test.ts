// The publisher's close rule (closeDecision, pure): when the open round closes, with what, and
// which payloads it still has to admit.
import { describe, expect, it } from 'vitest'
import { closeDecision, type CloseCandidate, type CloseInput } from '../../../node/round/publisher.ts'

const BASE = 'sha256:base'

type Admission = 'admitted' | 'refused' | 'pending'

function candidate(id: string, options: { base?: string; payload?: Admission; contributor?: string } = {}) {
  return {
    id: `sha256:${id}`,
    delta: `sha256:delta-${id}`,
    contributor: options.contributor ?? `peer-${id}`,
    predicate: { baseCheckpoint: options.base ?? BASE },
    payload: options.payload ?? 'admitted',
  }
}

function decide(
  candidates: ReturnType<typeof candidate>[],
  overrides: Partial<CloseInput<CloseCandidate>> = {},
) {
  const admission = new Map(candidates.map((c) => [c.delta, c.payload]))
  const decision = closeDecision({
    candidates,
    base: BASE,
    admission: (delta) => admission.get(delta) ?? 'pending',
    quorum: 3,
    deadlineSeconds: 60,
    elapsedSeconds: 10,
    ...overrides,
  })
  return { close: decision.close ?? null, admit: decision.admit.map((c) => c.id) }
}

describe('closeDecision', () => {
  it.each([
    ['nothing yet', [], {}, { close: null, admit: [] }],
    [
      'below quorum before the deadline: wait, admitting pending payloads',
      [candidate('a'), candidate('b', { payload: 'pending' })],
      {},
      { close: null, admit: ['sha256:b'] },
    ],
    [
      'quorum of admitted contributions: close with them, sorted by id',
      [candidate('c'), candidate('a'), candidate('b'), candidate('d', { payload: 'pending' })],
      {},
      {
        close: { reason: 'quorum', contributions: ['sha256:a', 'sha256:b', 'sha256:c'] },
        admit: ['sha256:d'],
      },
    ],
    [
      'contributions whose payload is not admitted yet do not count toward quorum',
      [candidate('a'), candidate('b'), candidate('c', { payload: 'pending' })],
      {},
      { close: null, admit: ['sha256:c'] },
    ],
    [
      'a refused payload never counts, is never admitted again, and the round closes with the rest',
      [candidate('a'), candidate('b'), candidate('c', { payload: 'refused' })],
      { elapsedSeconds: 60 },
      { close: { reason: 'deadline', contributions: ['sha256:a', 'sha256:b'] }, admit: [] },
    ],
    [
      'refused payloads cannot fill a quorum',
      [
        candidate('a'),
        candidate('x1', { payload: 'refused' }),
        candidate('x2', { payload: 'refused' }),
        candidate('x3', { payload: 'refused' }),
      ],
      {},
      { close: null, admit: [] },
    ],
    [
      'the quorum counts distinct contributors',
      [candidate('a'), candidate('b', { contributor: 'peer-a' }), candidate('c')],
      {},
      { close: null, admit: [] },
    ],
    [
      'contributions from another base never count, and are not admitted',
      [candidate('a'), candidate('b'), candidate('c', { base: 'sha256:stale', payload: 'pending' })],
      {},
      { close: null, admit: [] },
    ],
    [
      'deadline passed with one admitted contribution: close with it',
      [candidate('a'), candidate('b', { payload: 'pending' })],
      { elapsedSeconds: 60 },
      { close: { reason: 'deadline', contributions: ['sha256:a'] }, admit: ['sha256:b'] },
    ],
    [
      'deadline passed with none admitted: an empty round publishes nothing',
      [candidate('a', { payload: 'pending' }), candidate('b', { base: 'sha256:stale' })],
      { elapsedSeconds: 600 },
      { close: null, admit: ['sha256:a'] },
    ],
    [
      'quorum reached after the deadline is still a quorum close',
      [candidate('a'), candidate('b'), candidate('c')],
      { elapsedSeconds: 600 },
      { close: { reason: 'quorum', contributions: ['sha256:a', 'sha256:b', 'sha256:c'] }, admit: [] },
    ],
  ] as const)('%s', (_, candidates, overrides, expected) => {
    expect(decide([...candidates], overrides)).toEqual(expected)
  })
})
