// The README's tutorial is run as written: its marked sh block is extracted and executed with
// bash from the project root (as a reader would paste it), on loopback, and what it promises is
// checked: both peers finish, the last checkpoint verifies with recomputation, a grid is drawn
// and a revocation is written.
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { readFile, rm } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { afterAll, describe, expect, it } from 'vitest'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const MARKER = '<!-- tutorial: the next sh block is run by test/readme-tutorial.test.ts -->'
const OUT = 'coop-tutorial'

/** The first ```sh block after the marker comment. */
export function extractTutorial(readme: string): string {
  const at = readme.indexOf(MARKER)
  if (at < 0) throw new Error('README.md has no tutorial marker')
  const match = /```sh\n([\s\S]*?)\n```/.exec(readme.slice(at))
  if (match === null) throw new Error('no sh block after the tutorial marker')
  return match[1] as string
}

describe('the README tutorial', () => {
  afterAll(async () => {
    await rm(new URL(`../${OUT}`, import.meta.url), { recursive: true, force: true })
  })

  it('runs as written and gives what it says', async () => {
    const script = extractTutorial(await readFile(new URL('../README.md', import.meta.url), 'utf8'))
    expect(script).toContain(`T=${OUT}`)
    await rm(new URL(`../${OUT}`, import.meta.url), { recursive: true, force: true })
    const run = await new Promise<{ code: number | null; output: string }>((resolve) => {
      const child = spawn('bash', ['-euo', 'pipefail', '-c', script], {
        cwd: ROOT,
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, COOP_LOG_LEVEL: 'warn' },
      })
      let output = ''
      child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()))
      child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()))
      child.on('close', (code) => resolve({ code, output }))
    })
    expect(run.code, run.output.slice(-4000)).toBe(0)
    expect(run.output).toContain('VALID (signature, digests, recomputation)')
    expect(run.output).toMatch(/round\s+all 2 rounds done/)
    expect(run.output).toMatch(/unet round 2 sha256:[0-9a-f]{64}\s+via rounds 1,2/)
    expect(existsSync(`${ROOT}/${OUT}/grid.png`)).toBe(true)
    expect(existsSync(`${ROOT}/${OUT}/b/revoke.json`)).toBe(true)
  }, 600_000)
})
