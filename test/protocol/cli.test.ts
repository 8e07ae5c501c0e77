// The consent CLI end to end, as a user runs it: real key files, real Twemoji PNGs from
// node_modules, real child processes of `coop`.
import { execFile } from 'node:child_process'
import {
  chmodSync,
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { generateKey } from '../../protocol/keys.ts'
import { readKeyFile, writeKeyFile } from '../../node/keystore.ts'

const run = promisify(execFile)
const root = resolve(import.meta.dirname, '..', '..')
const nodeBin = join(root, 'node_modules', '.bin', 'node')
const twemoji = join(root, 'node_modules', 'emoji-datasource-twitter', 'img', 'twitter', '64')

async function coop(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(nodeBin, [join(root, 'node', 'cli', 'main.ts'), ...args], {
      env: { ...process.env, COOP_LOG_LEVEL: 'silent' },
    })
    return { code: 0, stdout, stderr }
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string }
    return { code: e.code, stdout: e.stdout, stderr: e.stderr }
  }
}

let dir: string
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'coop-consent-'))
})
afterAll(() => rmSync(dir, { recursive: true, force: true }))

describe('key files', () => {
  it('are written 0600, never overwritten, and refused when group/world readable', async () => {
    const path = join(dir, 'a.key')
    const key = generateKey()
    await writeKeyFile(path, key)
    expect(statSync(path).mode & 0o777).toBe(0o600)
    expect((await readKeyFile(path)).equals(key)).toBe(true)
    await expect(writeKeyFile(path, generateKey())).rejects.toMatchObject({ code: 'KEY_FILE_EXISTS' })
    chmodSync(path, 0o644)
    await expect(readKeyFile(path)).rejects.toMatchObject({ code: 'KEY_FILE_PERMISSIONS' })
    const junk = join(dir, 'junk.key')
    writeFileSync(junk, 'not a key', { mode: 0o600 })
    await expect(readKeyFile(junk)).rejects.toMatchObject({ code: 'KEY_FILE_INVALID' })
    await expect(readKeyFile(join(dir, 'absent.key'))).rejects.toMatchObject({ code: 'KEY_FILE_NOT_FOUND' })
  })
})

describe('coop consent on real Twemoji PNGs', () => {
  it('creates, verifies, detects a one-byte change naming the file, and revokes', async () => {
    const artistKey = join(dir, 'artist.key')
    const nodeKey = join(dir, 'node.key')
    const created = await coop('keys', 'new', '--out', artistKey)
    expect(created.code).toBe(0)
    expect(created.stdout).toMatch(/did:key\s+did:key:z6Mk/)
    expect(statSync(artistKey).mode & 0o777).toBe(0o600)
    expect((await coop('keys', 'new', '--out', artistKey)).stderr).toContain('KEY_FILE_EXISTS')
    await coop('keys', 'new', '--out', nodeKey)
    const peerId = /peerId\s+(\S+)/.exec((await coop('keys', 'show', nodeKey)).stdout)![1]!

    const images = join(dir, 'emoji')
    mkdirSync(join(images, 'faces'), { recursive: true })
    const pngs = readdirSync(twemoji)
      .filter((f) => f.endsWith('.png'))
      .sort()
      .slice(0, 40)
    pngs.forEach((name, i) =>
      copyFileSync(join(twemoji, name), join(i % 2 === 0 ? images : join(images, 'faces'), name)),
    )
    writeFileSync(join(images, 'notes.txt'), 'not an image')

    const manifest = join(dir, 'manifest.json')
    const made = await coop(
      'consent',
      'create',
      images,
      '--key',
      artistKey,
      '--license',
      'CC-BY-4.0',
      '--attribution-name',
      'Twemoji',
      '--attribution-uri',
      'https://github.com/twitter/twemoji',
      '--attribution-text',
      'Twemoji graphics by Twitter, Inc and other contributors, licensed under CC-BY 4.0',
      '--custodian',
      peerId,
      '--valid-until',
      '2099-01-01',
      '--out',
      manifest,
    )
    expect(made.code, made.stderr).toBe(0)
    expect(made.stdout).toMatch(/items\s+40 /)
    expect(made.stdout).toContain('skipped   1 files')

    const ok = await coop('consent', 'verify', manifest, '--dir', images)
    expect(ok.code, ok.stderr).toBe(0)
    expect(ok.stdout).toContain('all 40 images match the manifest')
    expect((await coop('verify', manifest)).stdout).toContain('valid ConsentManifest')

    // One byte of one image changes: the folder no longer matches, and the file is named.
    const victim = join(images, 'faces', pngs[1]!)
    const bytes = readFileSync(victim)
    bytes[bytes.length >> 1] ^= 0x01
    writeFileSync(victim, bytes)
    const bad = await coop('consent', 'verify', manifest, '--dir', images)
    expect(bad.code).toBe(1)
    expect(bad.stdout).toContain(`not in manifest: ${join('faces', pngs[1]!)}`)
    expect(bad.stdout).toMatch(/missing from folder: sha256:[0-9a-f]{64}/)
    expect(bad.stderr).toContain('DIR_MISMATCH')

    // One byte of the manifest changes: the signature no longer verifies.
    const tampered = join(dir, 'tampered.json')
    writeFileSync(
      tampered,
      readFileSync(manifest, 'utf8').replace('"commercialUse":false', '"commercialUse":true'),
    )
    const forged = await coop('verify', tampered)
    expect(forged.code).toBe(1)
    expect(forged.stderr).toContain('BAD_SIGNATURE')

    const revocation = join(dir, 'revocation.json')
    const revoked = await coop('consent', 'revoke', manifest, '--key', artistKey, '--out', revocation)
    expect(revoked.code, revoked.stderr).toBe(0)
    expect((await coop('verify', revocation)).stdout).toContain('valid RevocationNotice')
    const after = await coop('consent', 'verify', manifest, '--revocations', revocation)
    expect(after.code).toBe(1)
    expect(after.stderr).toContain('REVOKED')
    expect(
      (await coop('consent', 'revoke', manifest, '--key', nodeKey, '--out', join(dir, 'r2.json'))).stderr,
    ).toContain('ISSUER_MISMATCH')
  })

  it('reports bad command lines as usage errors (exit 2) and bad files by code', async () => {
    expect((await coop('consent', 'create', dir)).code).toBe(2)
    expect((await coop('consent', 'frobnicate')).code).toBe(2)
    writeFileSync(join(dir, 'garbage.json'), '{"hello": ')
    const garbage = await coop('verify', join(dir, 'garbage.json'))
    expect(garbage.code).toBe(1)
    expect(garbage.stderr).toContain('INVALID_JSON')
    const vectors = join(root, 'test', 'vectors')
    for (const [file, code] of [
      ['charter.valid.json', 0],
      ['contribution.valid.json', 0],
      ['provenance.one-signature.json', 1],
      ['provenance.valid.json', 0],
      ['revocation.valid.json', 0],
    ] as const) {
      const result = await coop(
        'verify',
        join(vectors, file),
        '--charter',
        join(vectors, 'charter.valid.json'),
      )
      expect(result.code, `${file}: ${result.stderr}`).toBe(code)
    }
  })
})
