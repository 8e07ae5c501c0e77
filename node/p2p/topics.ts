// The three gossip topics of a cooperative, scoped by its coop id (the charter digest).
import { TOPIC_PREFIX, TOPIC_VERSION } from '../constants.ts'

export const TOPIC_NAMES = ['consent', 'contributions', 'checkpoints'] as const
export type TopicName = (typeof TOPIC_NAMES)[number]

export function topicString(coopId: string, topic: TopicName): string {
  // The coop id goes into a path segment: refuse anything that could inject another segment.
  if (!/^[A-Za-z0-9:._-]{1,128}$/.test(coopId))
    throw new RangeError('coop id must be 1-128 characters of [A-Za-z0-9:._-]')
  return `${TOPIC_PREFIX}/${coopId}/${topic}/${TOPIC_VERSION}`
}
