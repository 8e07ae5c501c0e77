// The round event stream: typed subscriptions that never let a subscriber break the emitter.
import { describe, expect, it } from 'vitest'
import { RoundEvents, type RoundEventName } from '../../../node/round/events.ts'

describe('RoundEvents', () => {
  it('delivers to named and catch-all subscribers in order, and stops after unsubscribing', () => {
    const events = new RoundEvents()
    const heard: string[] = []
    const offClosed = events.on('roundClosed', (e) => heard.push(`closed ${e.round} ${e.checkpoint}`))
    events.onAny((name) => heard.push(`any ${name}`))
    events.emit('roundClosed', {
      round: 2,
      phase: 'unet',
      checkpoint: 'sha256:c',
      contributions: 3,
      aggregateMs: 5,
    })
    events.emit('evalLoss', { round: 2, phase: 'unet', evalLoss: 0.1 })
    offClosed()
    events.emit('roundClosed', {
      round: 3,
      phase: 'unet',
      checkpoint: 'sha256:d',
      contributions: 3,
      aggregateMs: 5,
    })
    expect(heard).toEqual(['closed 2 sha256:c', 'any roundClosed', 'any evalLoss', 'any roundClosed'])
  })

  it('reports a throwing subscriber and still reaches the others', () => {
    const failures: RoundEventName[] = []
    const events = new RoundEvents((_, name) => failures.push(name))
    let reached = 0
    events.on('allRoundsDone', () => {
      throw new Error('subscriber bug')
    })
    events.on('allRoundsDone', () => {
      reached += 1
    })
    expect(() => events.emit('allRoundsDone', { rounds: 4, checkpoint: undefined })).not.toThrow()
    expect(reached).toBe(1)
    expect(failures).toEqual(['allRoundsDone'])
  })
})
