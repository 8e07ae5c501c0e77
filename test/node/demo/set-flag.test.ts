// `coop demo --set`: a model config override is checked before anything is written, and a bad one
// is a usage error (exit 2) naming the key, with no output folder left behind.
import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

const MAIN = fileURLToPath(new URL('../../../node/cli/main.ts', import.meta.url))

function demo(args: string[]): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [MAIN, 'demo', ...args], { timeout: 60_000 }, (error, _stdout, stderr) =>
      resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : -1, stderr }),
    )
  })
}

describe('coop demo --set', () => {
  let dir: string
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'coop-demo-set-'))
  })
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  it.each([
    [['--set', 'unet.batchSize=-3'], /--set: unet\.batchSize: .*>=1/],
    [['--set', 'nope'], /--set needs key=value, got 'nope'/],
    [['--set', 'unet.channels="wide"'], /--set: unet\.channels/],
  ])('refuses %j before writing anything', async (args, message) => {
    const out = join(dir, 'out')
    const result = await demo(['--out', out, ...args])
    expect(result.code).toBe(2)
    expect(result.stderr).toMatch(message)
    expect(existsSync(out)).toBe(false)
  })
})
