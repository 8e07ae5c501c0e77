import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'

const run = promisify(execFile)

describe('coop CLI dispatcher', () => {
  it('rejects an unknown command with exit code 2 and the command list', async () => {
    const result = await run(process.execPath, ['node/cli/main.ts', 'no-such-command']).catch((e) => e)
    expect(result.code).toBe(2)
    expect(result.stderr).toContain("unknown command 'no-such-command'")
    expect(result.stdout).toContain('Usage: coop <command>')
  })
})

describe('coop CLI usage errors', () => {
  it('turns an unknown flag of any command into exit code 2 with that command usage', async () => {
    const result = await run(process.execPath, ['node/cli/main.ts', 'status', '--no-such-flag']).catch(
      (e) => e,
    )
    expect(result.code).toBe(2)
    expect(result.stderr).toContain("Unknown option '--no-such-flag'")
    expect(result.stderr).toContain('coop status')
  })
})
