// Fault injection for the crash-recovery tests: COOP_CRASH_AT=<point>:<round> makes the process
// SIGKILL itself at that point, the only way to hit a window of a few milliseconds
// deterministically. Unset in normal runs.
import { CRASH_LOG_FLUSH_MS } from './constants.ts'

/** The points a test can name. */
export const CRASH_POINTS = ['after-close-frozen'] as const

export async function crashPoint(point: (typeof CRASH_POINTS)[number], round: number): Promise<void> {
  if (process.env.COOP_CRASH_AT !== `${point}:${round}`) return
  // Lets the asynchronous log destination write its lines first, so the test sees them.
  await new Promise((resolve) => setTimeout(resolve, CRASH_LOG_FLUSH_MS))
  process.kill(process.pid, 'SIGKILL')
}
