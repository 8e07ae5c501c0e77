// The simulator's cached Twemoji folder (node/simulate/data.ts ensureTwemoji): laid out once, kept
// while its stamp matches what this code lays out from the installed package, and laid out again
// when the stamp differs or is missing (a folder from older code would otherwise be reused forever
// and give other benchmark figures than a fresh clone).
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { ensureTwemoji, TWEMOJI_STAMP_FILE, twemojiLayoutStamp } from '../../node/simulate/data.ts'

const work = mkdtempSync(join(tmpdir(), 'coop-twemoji-cache-'))
const dir = join(work, 'twemoji-train')

afterAll(() => {
  rmSync(work, { recursive: true, force: true })
})

function imageCount(folder: string): number {
  return readdirSync(folder, { withFileTypes: true })
    .filter((entry) => entry.isDirectory())
    .reduce((total, entry) => total + readdirSync(join(folder, entry.name)).length, 0)
}

describe('ensureTwemoji', () => {
  it('lays out once, keeps a current folder, and lays out again a stale or unstamped one', async () => {
    const stamp = await twemojiLayoutStamp()
    expect(stamp).toMatch(/^sha256:[0-9a-f]{64}$/)
    expect(await twemojiLayoutStamp()).toBe(stamp)

    expect(await ensureTwemoji(dir)).toEqual({ dir, laidOut: true })
    expect(readFileSync(join(dir, TWEMOJI_STAMP_FILE), 'utf8')).toBe(stamp)
    const images = imageCount(dir)
    expect(images).toBeGreaterThan(1000)
    expect(await ensureTwemoji(dir)).toEqual({ dir, laidOut: false })

    // Another stamp (other code or package): the whole folder is replaced, stray files included.
    writeFileSync(join(dir, TWEMOJI_STAMP_FILE), 'sha256:' + '0'.repeat(64))
    writeFileSync(join(dir, 'flags', 'stray.png'), 'not an image')
    expect(await ensureTwemoji(dir)).toEqual({ dir, laidOut: true })
    expect(existsSync(join(dir, 'flags', 'stray.png'))).toBe(false)
    expect(readFileSync(join(dir, TWEMOJI_STAMP_FILE), 'utf8')).toBe(stamp)
    expect(imageCount(dir)).toBe(images)

    // No stamp at all: a folder laid out before stamps existed.
    rmSync(join(dir, TWEMOJI_STAMP_FILE))
    expect(await ensureTwemoji(dir)).toEqual({ dir, laidOut: true })
    expect(readFileSync(join(dir, TWEMOJI_STAMP_FILE), 'utf8')).toBe(stamp)
    // Nothing is left beside it: no staging or stale copies.
    expect(readdirSync(work)).toEqual(['twemoji-train'])
  }, 120_000)
})
