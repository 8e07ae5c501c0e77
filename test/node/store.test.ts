import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { blobDigest } from '../../node/p2p/blob.ts'
import { listBlobs, openStore, readSnapshot, roundKey, writeSnapshot } from '../../node/store/store.ts'

const dirs: string[] = []
async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'coop-store-'))
  dirs.push(dir)
  return dir
}
afterEach(async () => {
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })))
})

describe('store', () => {
  it('keeps records in sublevels across reopen, with ordered keys', async () => {
    const dir = await tempDir()
    let store = await openStore(dir)
    await store.manifests.put('sha256:' + 'a'.repeat(64), { custodian: 'peer-a' })
    await store.rounds.put(roundKey(10), { state: 'closed' })
    await store.rounds.put(roundKey(9), { state: 'closed' })
    await store.rounds.put(roundKey(11), { state: 'open' })
    await store.batch([
      { type: 'put', table: 'checkpoints', key: 'c1', value: { round: 1 } },
      { type: 'put', table: 'peers', key: 'p1', value: { addrs: [] } },
      { type: 'del', table: 'rounds', key: roundKey(9) },
    ])
    await store.close()
    store = await openStore(dir)
    expect(await store.manifests.get('sha256:' + 'a'.repeat(64))).toEqual({ custodian: 'peer-a' })
    // The same key in another table is a different record.
    expect(await store.revocations.get('sha256:' + 'a'.repeat(64))).toBeUndefined()
    expect(await store.rounds.keys()).toEqual([roundKey(10), roundKey(11)])
    expect(await store.rounds.entries({ reverse: true, limit: 1 })).toEqual([
      [roundKey(11), { state: 'open' }],
    ])
    expect(await store.checkpoints.has('c1')).toBe(true)
    expect(await store.peers.get('p1')).toEqual({ addrs: [] })
    await store.close()
  })

  it.each([
    ['empty key', ''],
    ['control character', 'a\nb'],
    ['non-ASCII', 'clé'],
    ['over 512 characters', 'k'.repeat(513)],
  ])('refuses a record key that is a %s', async (_, key) => {
    const store = await openStore(await tempDir())
    await expect(store.contributions.put(key, {})).rejects.toMatchObject({ code: 'BAD_KEY' })
    await store.close()
  })

  it('refuses a second process (or handle) on the same store with LOCKED', async () => {
    const dir = await tempDir()
    const store = await openStore(dir)
    await expect(openStore(dir)).rejects.toMatchObject({ code: 'LOCKED' })
    await store.close()
  })

  it('stores blobs by digest, verifies expected digests and reads', async () => {
    const store = await openStore(await tempDir())
    const bytes = new Uint8Array(randomBytes(100_000))
    const digest = await store.putBlob(bytes, blobDigest(bytes))
    expect(digest).toBe(blobDigest(bytes))
    expect(await store.putBlob(bytes)).toBe(digest)
    expect(Buffer.from((await store.getBlob(digest)) as Uint8Array).equals(Buffer.from(bytes))).toBe(true)
    await expect(store.putBlob(bytes, 'sha256:' + '0'.repeat(64))).rejects.toMatchObject({
      code: 'DIGEST_MISMATCH',
    })
    await expect(store.getBlob('md5:abc')).rejects.toMatchObject({ code: 'BAD_DIGEST' })
    expect(await store.getBlob('sha256:' + '1'.repeat(64))).toBeUndefined()
    await store.close()
  })

  it('repairs a truncated blob file when the blob is stored again', async () => {
    const store = await openStore(await tempDir())
    const bytes = new Uint8Array(randomBytes(5000))
    const digest = await store.putBlob(bytes)
    await writeFile(store.blobPath(digest), bytes.subarray(0, 100))
    expect(await store.putBlob(bytes)).toBe(digest)
    expect((await store.getBlob(digest))?.byteLength).toBe(5000)
    await store.close()
  })

  it('drops temp files of interrupted snapshot writes on open', async () => {
    const dir = await tempDir()
    await writeSnapshot(dir, 'status', { round: 1 })
    await writeFile(join(dir, 'snapshots', '.tmp-0123456789abcdef'), 'torn')
    const store = await openStore(dir)
    expect(await readdir(join(dir, 'snapshots'))).toEqual(['status.json'])
    await store.close()
  })

  it('quarantines a blob file whose bytes no longer match its digest', async () => {
    const store = await openStore(await tempDir())
    const bytes = new Uint8Array(randomBytes(1000))
    const digest = await store.putBlob(bytes)
    await writeFile(store.blobPath(digest), new Uint8Array(1000))
    expect(await store.getBlob(digest)).toBeUndefined()
    expect(await store.hasBlob(digest)).toBe(false)
    expect(await readdir(join(store.dir, 'blobs', 'corrupt'))).toHaveLength(1)
    await store.close()
  })

  it('streams a blob in chunks for serving, and cuts a corrupt one short before its last chunk', async () => {
    const store = await openStore(await tempDir())
    const bytes = new Uint8Array(randomBytes(2500))
    const digest = await store.putBlob(bytes)
    const blob = (await store.openBlob(digest))!
    const chunks: Uint8Array[] = []
    for await (const chunk of blob.chunks(1000)) chunks.push(chunk)
    await blob.close()
    expect(blob.size).toBe(2500)
    expect(chunks.map((c) => c.byteLength)).toEqual([1000, 1000, 500])
    expect(Buffer.concat(chunks).equals(Buffer.from(bytes))).toBe(true)
    expect(await store.openBlob(blobDigest(new Uint8Array([1])))).toBeUndefined()

    // Bit rot in the last bytes: the first chunks go out, the last one never does.
    const rotten = Uint8Array.from(bytes)
    rotten[2400] = (rotten[2400] as number) ^ 0xff
    await writeFile(store.blobPath(digest), rotten)
    const damaged = (await store.openBlob(digest))!
    const served: number[] = []
    await expect(
      (async () => {
        for await (const chunk of damaged.chunks(1000)) served.push(chunk.byteLength)
      })(),
    ).rejects.toMatchObject({ code: 'DIGEST_MISMATCH' })
    await damaged.close()
    expect(served).toEqual([1000, 1000])
    expect(await store.hasBlob(digest)).toBe(false)
    expect(await readdir(join(store.dir, 'blobs', 'corrupt'))).toHaveLength(1)
    await store.close()
  })

  it('writes and reads snapshots without the database lock', async () => {
    const dir = await tempDir()
    const store = await openStore(dir)
    await writeSnapshot(dir, 'status', { round: 3 })
    expect(await readSnapshot(dir, 'status')).toEqual({ round: 3 })
    expect(await readSnapshot(dir, 'missing')).toBeUndefined()
    await expect(writeSnapshot(dir, '../escape', {})).rejects.toMatchObject({ code: 'BAD_KEY' })
    await store.close()
  })

  it('loses nothing acknowledged when the writing process is SIGKILLed', async () => {
    const dir = await tempDir()
    const writer = new URL('./helpers/store-writer.ts', import.meta.url).pathname
    const acknowledged: { key: string; digest?: string }[] = []
    // Kill at different depths: right after open, mid-stream, and after many writes.
    for (const [run, killAfter] of [3, 40, 150].entries()) {
      const child = spawn(process.execPath, [writer, dir, `run${run}`], {
        stdio: ['ignore', 'pipe', 'inherit'],
      })
      let buffered = ''
      let seen = 0
      await new Promise<void>((resolve, rejectRun) => {
        child.on('error', rejectRun)
        child.on('exit', (code, signal) =>
          signal === 'SIGKILL' ? resolve() : rejectRun(new Error(`writer exited ${code} ${signal}`)),
        )
        child.stdout.on('data', (data: Buffer) => {
          buffered += data.toString()
          const lines = buffered.split('\n')
          buffered = lines.pop() ?? ''
          for (const line of lines) {
            const [, key, digest] = line.split(' ')
            acknowledged.push({ key: key as string, ...(digest === undefined ? {} : { digest }) })
            seen += 1
            if (seen === killAfter) child.kill('SIGKILL')
          }
        })
      })
      const store = await openStore(dir)
      for (const { key, digest } of acknowledged) {
        const record = (await store.contributions.get(key)) as { payload?: string } | undefined
        expect(record, key).toBeDefined()
        if (digest !== undefined) {
          expect(record?.payload).toBe(digest)
          expect(await store.rounds.get(key)).toMatchObject({ state: 'contributed' })
          const bytes = await store.getBlob(digest)
          expect(bytes && blobDigest(bytes)).toBe(digest)
        }
      }
      // Every blob file visible under a digest is complete (no torn writes under a final name),
      // and the temp files of interrupted writes are gone.
      for (const digest of await listBlobs(store)) expect(await store.getBlob(digest)).toBeDefined()
      expect(await readdir(join(dir, 'blobs', 'tmp'))).toEqual([])
      await store.close()
    }
    expect(acknowledged.length).toBeGreaterThanOrEqual(193)
  })
})
