// The one wrapper between gossipsub and our validators: validators are plain async functions
// that throw GossipValidationError; this maps the outcome to a TopicValidatorResult, counts
// it per code, throttles floods and charges the propagating peer for what it relayed.
// Copies of messages we accepted before are free (no token, no penalty): honest peers
// re-announce what they hold, and relaying those must never cost them standing.
import { TopicValidatorResult } from '@libp2p/gossipsub'
import type { Message } from '@libp2p/gossipsub'
import type { PeerId } from '@libp2p/interface'
import type { Logger } from 'pino'
import { PENALTY_RATE_LIMITED, PENALTY_REJECT } from '../constants.ts'
import type { TopicName } from './topics.ts'
import { type GossipErrorCode, GossipValidationError, isGossipValidationError } from './gossip-errors.ts'
import { AcceptedContent } from './accepted-content.ts'
import type { PeerPenalties } from './penalties.ts'
import type { RateLimiter } from './rate-limit.ts'

export interface GossipInput {
  /** The peer that authored and signed the gossip message (StrictSign guarantees it is present and verified). */
  from: string
  /** The peer that relayed it to us; it is the one charged for invalid messages. */
  propagationSource: string
  topic: TopicName
  data: Uint8Array
}

export type GossipValidator = (msg: GossipInput) => Promise<void>

export type ValidationOutcome = 'accept' | 'ignore' | 'reject'

export interface TopicValidationStats {
  accept: number
  ignore: Partial<Record<GossipErrorCode, number>>
  reject: Partial<Record<GossipErrorCode, number>>
}

/** Counters per topic and code, for `coop status` and metrics. */
export class ValidationCounters {
  readonly #stats = new Map<TopicName, TopicValidationStats>()

  record(topic: TopicName, outcome: ValidationOutcome, code?: GossipErrorCode): void {
    let stats = this.#stats.get(topic)
    if (stats === undefined) {
      stats = { accept: 0, ignore: {}, reject: {} }
      this.#stats.set(topic, stats)
    }
    if (outcome === 'accept' || code === undefined) {
      stats.accept += 1
      return
    }
    const bucket = stats[outcome]
    bucket[code] = (bucket[code] ?? 0) + 1
  }

  snapshot(): Partial<Record<TopicName, TopicValidationStats>> {
    return structuredClone(Object.fromEntries(this.#stats))
  }
}

export interface ValidatorWrapperDeps {
  counters: ValidationCounters
  penalties: PeerPenalties
  rateLimiter: RateLimiter
  /** Content of accepted messages; created on first use when not given. */
  accepted?: AcceptedContent
  log?: Logger
}

const acceptedByDeps = new WeakMap<ValidatorWrapperDeps, AcceptedContent>()

function acceptedContent(deps: ValidatorWrapperDeps): AcceptedContent {
  if (deps.accepted !== undefined) return deps.accepted
  let accepted = acceptedByDeps.get(deps)
  if (accepted === undefined) {
    accepted = new AcceptedContent()
    acceptedByDeps.set(deps, accepted)
  }
  return accepted
}

/** Runs `validate` for one message and returns the outcome, never throwing. */
export async function runValidator(
  validate: GossipValidator,
  input: GossipInput,
  deps: ValidatorWrapperDeps,
): Promise<{ result: TopicValidatorResult; code?: GossipErrorCode }> {
  const { counters, penalties, rateLimiter, log } = deps
  const accepted = acceptedContent(deps)
  const bucket = `${input.propagationSource}|${input.topic}`
  let contentKey: string | undefined
  const content = (): string => {
    contentKey ??= AcceptedContent.key(input.topic, input.data)
    return contentKey
  }
  // Flood control comes before any work on the message: a peer within its budget costs one map
  // lookup, one over it one hash (to let copies of what we accepted through for free).
  const tookToken = rateLimiter.take(bucket)
  if (!tookToken && !accepted.has(content())) {
    counters.record(input.topic, 'ignore', 'RATE_LIMITED')
    // Only the author of a flood is charged: a relay forwarding others' messages at the rate
    // it accepted them is honest, and charging it would turn an attack against bystanders.
    if (input.from === input.propagationSource)
      penalties.add(input.propagationSource, 'RATE_LIMITED', PENALTY_RATE_LIMITED)
    return { result: TopicValidatorResult.Ignore, code: 'RATE_LIMITED' }
  }
  try {
    await validate(input)
    counters.record(input.topic, 'accept')
    // A copy of an accepted message costs no token; a new one is remembered as accepted.
    if (accepted.has(content())) {
      if (tookToken) rateLimiter.refund(bucket)
    }
    accepted.add(content())
    return { result: TopicValidatorResult.Accept }
  } catch (err) {
    const failure = isGossipValidationError(err)
      ? err
      : new GossipValidationError('IGNORE', 'INTERNAL', err instanceof Error ? err.message : String(err))
    if (failure.code === 'INTERNAL')
      log?.warn({ topic: input.topic, err }, 'gossip validator failed unexpectedly')
    else
      log?.debug(
        { topic: input.topic, peer: input.propagationSource, code: failure.code, reason: failure.message },
        'gossip message refused',
      )
    if (failure.action === 'REJECT') {
      counters.record(input.topic, 'reject', failure.code)
      penalties.add(input.propagationSource, failure.code, PENALTY_REJECT)
      return { result: TopicValidatorResult.Reject, code: failure.code }
    }
    counters.record(input.topic, 'ignore', failure.code)
    return { result: TopicValidatorResult.Ignore, code: failure.code }
  }
}

/** Adapts a plain validator to gossipsub's TopicValidatorFn signature. */
export function toTopicValidatorFn(
  topic: TopicName,
  getValidator: () => GossipValidator | undefined,
  deps: ValidatorWrapperDeps,
): (propagationSource: PeerId, message: Message) => Promise<TopicValidatorResult> {
  return async (propagationSource, message) => {
    const validate = getValidator()
    // StrictSign: gossipsub already refused unsigned messages, but never trust that silently.
    if (message.type !== 'signed') {
      deps.counters.record(topic, 'reject', 'BAD_SIGNATURE')
      deps.penalties.add(propagationSource.toString(), 'BAD_SIGNATURE', PENALTY_REJECT)
      return TopicValidatorResult.Reject
    }
    const input: GossipInput = {
      from: message.from.toString(),
      propagationSource: propagationSource.toString(),
      topic,
      data: message.data,
    }
    // Until the application installs a validator the topic accepts nothing: an unvalidated
    // message must never reach a handler or be forwarded.
    const outcome = await runValidator(
      validate ??
        (async () => {
          throw new GossipValidationError('IGNORE', 'INTERNAL', 'no validator installed')
        }),
      input,
      deps,
    )
    return outcome.result
  }
}
