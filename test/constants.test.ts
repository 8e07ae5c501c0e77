// Constants live in one constants.ts per area. A name defined in two areas must mean one thing:
// the same value (better: one definition, imported). Two values under one name is how the
// gossip and document limits once drifted apart.
import { readdir } from 'node:fs/promises'
import { join, relative } from 'node:path'
import { pathToFileURL } from 'node:url'
import { describe, expect, it } from 'vitest'

const ROOT = join(import.meta.dirname, '..')
const SOURCE_FOLDERS = ['configs', 'node', 'protocol', 'trainer']

async function constantsFiles(): Promise<string[]> {
  const out: string[] = []
  for (const folder of SOURCE_FOLDERS) {
    for (const entry of await readdir(join(ROOT, folder), { recursive: true, withFileTypes: true })) {
      if (entry.isFile() && entry.name === 'constants.ts') out.push(join(entry.parentPath, entry.name))
    }
  }
  return out.sort()
}

describe('constants', () => {
  it('give every name defined in several areas one value', async () => {
    const files = await constantsFiles()
    // The areas this repository has today; a new one is picked up without editing the test.
    expect(files.length).toBeGreaterThanOrEqual(7)
    const byName = new Map<string, { file: string; value: unknown }[]>()
    for (const file of files) {
      const exports = (await import(pathToFileURL(file).href)) as Record<string, unknown>
      for (const [name, value] of Object.entries(exports)) {
        const list = byName.get(name) ?? []
        list.push({ file: relative(ROOT, file), value })
        byName.set(name, list)
      }
    }
    const conflicts = [...byName.entries()]
      .filter(([, defs]) => defs.some((d) => JSON.stringify(d.value) !== JSON.stringify(defs[0]?.value)))
      .map(([name, defs]) => `${name}: ${defs.map((d) => `${d.file}=${JSON.stringify(d.value)}`).join(', ')}`)
    expect(conflicts).toEqual([])
  })
})
