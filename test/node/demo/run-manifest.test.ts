import { mkdtemp, readFile, rm, writeFile, mkdir } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { spawn } from 'node:child_process'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { acquireRunLock, finishAttempt, openRun, readRunManifest } from '../../../node/demo/run-manifest.ts'
import type { DemoParams } from '../../../node/demo/run-manifest.ts'
import { DemoError } from '../../../node/demo/errors.ts'

const params: DemoParams = {
  config: 'tiny',
  configOverrides: { train: { batchSize: 8 } },
  peers: 4,
  autoencoderRounds: 1,
  unetRounds: 2,
  innerSteps: 8,
  imagesPerCategory: 12,
  categories: ['flags', 'smileys-emotion'],
}

let dir: string
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'demo-run-'))
})
afterEach(async () => {
  await rm(dir, { recursive: true, force: true })
})

async function codeOf(promise: Promise<unknown>): Promise<string | undefined> {
  try {
    await promise
    return undefined
  } catch (error) {
    expect(error).toBeInstanceOf(DemoError)
    return (error as DemoError).code
  }
}

describe('demo run manifest', () => {
  it('starts a fresh run in a missing folder and records the parameters', async () => {
    const out = join(dir, 'out')
    const result = await openRun(out, params, 'wasm')
    expect(result.mode).toBe('fresh')
    const onDisk = JSON.parse(await readFile(join(out, 'demo-run.json'), 'utf8'))
    expect(onDisk.params).toEqual(params)
    expect(onDisk.state).toBe('running')
    expect(onDisk.attempts).toHaveLength(1)
  })

  it('resumes with the same parameters, whatever the key order and backend', async () => {
    await openRun(dir, params, 'wasm')
    const reordered = Object.fromEntries(Object.entries(params).reverse()) as unknown as DemoParams
    const result = await openRun(dir, reordered, 'cpu')
    expect(result.mode).toBe('resume')
    expect(result.manifest.attempts.map((a) => a.backend)).toEqual(['wasm', 'cpu'])
  })

  it('refuses other parameters and names each difference with its flag', async () => {
    await openRun(dir, params, 'wasm')
    const error = await openRun(dir, { ...params, unetRounds: 5, peers: 3 }, 'wasm').catch((e: unknown) => e)
    expect(error).toBeInstanceOf(DemoError)
    expect((error as DemoError).code).toBe('PARAMS_MISMATCH')
    expect((error as DemoError).message).toContain('unetRounds (--rounds): recorded 2, requested 5')
    expect((error as DemoError).message).toContain('peers (--peers): recorded 4, requested 3')
    // The refusal leaves the recorded run untouched.
    expect((await readRunManifest(dir))?.params).toEqual(params)
  })

  it('refuses a nested override difference', async () => {
    await openRun(dir, params, 'wasm')
    expect(
      await codeOf(openRun(dir, { ...params, configOverrides: { train: { batchSize: 16 } } }, 'wasm')),
    ).toBe('PARAMS_MISMATCH')
  })

  it('refuses a non-empty folder that no demo wrote', async () => {
    await writeFile(join(dir, 'thesis.tex'), 'precious')
    expect(await codeOf(openRun(dir, params, 'wasm'))).toBe('OUT_NOT_A_DEMO')
    expect(await readFile(join(dir, 'thesis.tex'), 'utf8')).toBe('precious')
  })

  it('rejects a corrupt or foreign manifest instead of guessing', async () => {
    await writeFile(join(dir, 'demo-run.json'), '{"kind":"diffusion-coop/demo-run",')
    expect(await codeOf(openRun(dir, params, 'wasm'))).toBe('RUN_MANIFEST_INVALID')
    await writeFile(join(dir, 'demo-run.json'), JSON.stringify({ kind: 'something-else', version: 1 }))
    expect(await codeOf(openRun(dir, params, 'wasm'))).toBe('RUN_MANIFEST_INVALID')
    await writeFile(
      join(dir, 'demo-run.json'),
      JSON.stringify({
        kind: 'diffusion-coop/demo-run',
        version: 1,
        createdAt: 'x',
        state: 'running',
        attempts: [],
        params: { ...params, peers: -1 },
      }),
    )
    expect(await codeOf(openRun(dir, params, 'wasm'))).toBe('RUN_MANIFEST_INVALID')
  })

  it('reports a completed run as complete, not as a resume', async () => {
    const { manifest } = await openRun(dir, params, 'wasm')
    await finishAttempt(dir, manifest, 'complete')
    const again = await openRun(dir, params, 'wasm')
    expect(again.mode).toBe('complete')
    expect(again.manifest.attempts[0]?.outcome).toBe('complete')
  })

  it('records an interrupted attempt and resumes it', async () => {
    const { manifest } = await openRun(dir, params, 'wasm')
    await finishAttempt(dir, manifest, 'interrupted', 'SIGINT')
    const again = await openRun(dir, params, 'wasm')
    expect(again.mode).toBe('resume')
    expect(again.manifest.attempts[0]).toMatchObject({ outcome: 'interrupted', detail: 'SIGINT' })
  })
})

describe('demo out-dir lock', () => {
  it('refuses a second demo while the first holds the folder, and frees it on release', async () => {
    const release = await acquireRunLock(dir)
    // Another live process holding the lock: this test's parent is alive and is not us.
    await writeFile(join(dir, 'demo.lock'), `${process.ppid}\n`)
    expect(await codeOf(acquireRunLock(dir))).toBe('OUT_IN_USE')
    await release()
    const releaseAgain = await acquireRunLock(dir)
    await releaseAgain()
  })

  it('takes over a lock left by a dead process', async () => {
    const child = spawn(process.execPath, ['-e', ''])
    const deadPid = child.pid
    await new Promise((resolve) => child.on('exit', resolve))
    await mkdir(dir, { recursive: true })
    await writeFile(join(dir, 'demo.lock'), `${deadPid}\n`)
    const release = await acquireRunLock(dir)
    expect((await readFile(join(dir, 'demo.lock'), 'utf8')).trim()).toBe(String(process.pid))
    await release()
  })

  it('does not count its own lock as foreign content', async () => {
    const release = await acquireRunLock(dir)
    expect((await openRun(dir, params, 'wasm')).mode).toBe('fresh')
    await release()
  })
})
