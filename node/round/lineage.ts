// The one walk up a checkpoint chain, shared by the round state (adopted records) and `coop trace`
// (checkpoint directories): follow each node's parent until one is missing, never looping.

/** `start` and its ancestors, newest first; stops at the first parent `parentOf` does not know. */
export function* ancestors<T extends { id: string }>(
  start: T | undefined,
  parentOf: (node: T) => T | undefined,
): Generator<T> {
  const seen = new Set<string>()
  for (let current = start; current !== undefined && !seen.has(current.id); current = parentOf(current)) {
    seen.add(current.id)
    yield current
  }
}
