// An idle training worker must not hold its process open: every command that trained or sampled
// on two threads (coop train, coop sample, the demo's outputs) used to wait out the pool's idle
// timer (IDLE_WORKER_MS) after its last line, because the worker's port was re-referenced when
// its 'message' listener was added after unref().
import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { IDLE_WORKER_MS } from '../../trainer/constants.ts'

const CHILD = fileURLToPath(new URL('./fixtures/pool-idle.ts', import.meta.url))

describe('the training pool', () => {
  it('lets its process exit as soon as its worker is idle', async () => {
    const stdout = await new Promise<string>((resolve, reject) =>
      execFile(process.execPath, [CHILD], { timeout: IDLE_WORKER_MS + 30_000 }, (error, out, stderr) =>
        error ? reject(new Error(`${error.message}\n${stderr}`)) : resolve(out),
      ),
    )
    const lines = stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { resources?: string[]; afterReleaseMs?: number })
    const resources = lines.find((l) => l.resources !== undefined)?.resources
    expect(resources).toBeDefined()
    expect(resources).not.toContain('MessagePort')
    const exited = lines.find((l) => l.afterReleaseMs !== undefined)?.afterReleaseMs
    // Before the idle timer fires: the idle worker no longer decides when the process ends.
    expect(exited).toBeLessThan(IDLE_WORKER_MS)
  }, 60_000)
})
