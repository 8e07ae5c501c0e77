// Runs independent async jobs (here: one-shot `coop` child processes) side by side, at most
// `limit` at a time: all at once would start a dozen Node processes on a 2-core machine.

/** `fn` over `items` with at most `limit` calls in flight; the results in the order of `items`. */
export async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T, index: number) => Promise<R>,
): Promise<R[]> {
  const results = new Array<R>(items.length)
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const index = next++
      results[index] = await fn(items[index] as T, index)
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker))
  return results
}
