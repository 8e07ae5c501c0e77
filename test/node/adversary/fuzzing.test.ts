// Class 11, fuzzing: every decoder that reads peer or user bytes (payloads and their safetensors
// container, gossip messages, blob framing, the consent inbox) answers arbitrary, mutated and
// forged input with one of its typed errors, never another throw, and never allocates past its
// bound (test/fuzz/harness.ts). A few thousand inputs per target here; `npm run fuzz` runs 10^6.
// Then the inbox end to end: a real ConsentInbox over a real store refuses a folder of fuzzed files
// one by one, keeps the valid manifest, and is still polling afterwards.
import { verifyRevocation } from '../../../protocol/revocation.ts'
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import fc from 'fast-check'
import pino from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { verifyManifest } from '../../../protocol/manifest.ts'
import { ConsentBook } from '../../../node/consent/book.ts'
import { ConsentInbox } from '../../../node/consent/inbox.ts'
import { inboxDir } from '../../../node/round/layout.ts'
import { openStore, type CoopStore } from '../../../node/store/store.ts'
import { fuzz, type FuzzTarget } from '../../fuzz/harness.ts'
import { FUZZ_TARGETS } from '../../fuzz/targets/index.ts'
import { inboxTarget } from '../../fuzz/targets/inbox.ts'

/** Inputs per target in the suite: enough to reach every generator branch many times. */
const SUITE_RUNS = 3_000

describe.each(FUZZ_TARGETS.map((t) => [t.name, t] as const))(
  'fuzzing %s',
  (_name, target: FuzzTarget<unknown>) => {
    it('accepts the valid inputs its mutations start from', async () => {
      await fc.assert(
        fc.asyncProperty(target.valid, async (input) => {
          expect(await target.run(input)).toEqual({ accepted: true })
        }),
        { numRuns: 50 },
      )
    })

    it(`answers ${SUITE_RUNS} arbitrary, mutated and forged inputs with typed errors within its memory bound`, async () => {
      const report = await fuzz(target, { runs: SUITE_RUNS })
      expect(report.runs).toBe(SUITE_RUNS)
      // The inputs reach more than the first check: several distinct refusals.
      expect(Object.keys(report.codes).length).toBeGreaterThanOrEqual(3)
    })
  },
)

describe('the consent inbox under a folder of fuzzed files', () => {
  const dirs: string[] = []
  const stores: CoopStore[] = []
  afterEach(async () => {
    await Promise.all(stores.splice(0).map((s) => s.close()))
    await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })))
  })

  it('refuses each bad file into done/*.refused, records the valid manifest, and keeps polling', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'coop-fuzz-inbox-'))
    dirs.push(dir)
    const store = await openStore(join(dir, 'store'))
    stores.push(store)
    const valid = await readFile(join(import.meta.dirname, '..', '..', 'vectors', 'manifest.valid.json'))
    const manifest = verifyManifest(JSON.parse(valid.toString('utf8')), { now: new Date() })
    const log = pino({ level: 'silent' })
    const consent = new ConsentBook(
      {
        peerId: manifest.custodian,
        acceptedLicenses: [manifest.manifest.credentialSubject.license],
        intendedUse: { commercialUse: false, weightRedistribution: false },
      },
      { store, log },
    )
    await consent.load()
    const published: Uint8Array[] = []
    const inbox = await ConsentInbox.open(
      { storeDir: join(dir, 'store') },
      {
        consent,
        host: {
          publish: async (_topic, data) => {
            published.push(data)
            return { recipients: 1 }
          },
        },
        log,
      },
    )
    const fuzzed = fc.sample(inboxTarget.inputs, { numRuns: 120, seed: Date.now() % 2 ** 31 })
    const folder = inboxDir(join(dir, 'store'))
    await Promise.all(
      fuzzed.map((bytes, i) => writeFile(join(folder, `f${String(i).padStart(3, '0')}.json`), bytes)),
    )
    await writeFile(join(folder, 'valid.json'), valid)
    await inbox.poll()
    // Files are handled in name order: a revocation read before valid.json waited for its manifest;
    // the next poll settles it.
    await inbox.poll()

    const done = await readdir(join(folder, 'done'))
    // Every file was handled and moved, except a genuine revocation of a manifest this node does not
    // hold: it waits in the inbox, unpublished, until its manifest arrives (issue 8, class 2).
    const waiting = (await readdir(folder)).filter((n) => n.endsWith('.json'))
    for (const name of waiting) {
      const revocation = verifyRevocation(
        JSON.parse(await readFile(join(folder, name), 'utf8')) as Parameters<typeof verifyRevocation>[0],
      )
      expect(consent.manifest(revocation.manifest)).toBeUndefined()
    }
    expect(done).toContain('valid.json')
    expect(done).toHaveLength(fuzzed.length + 1 - waiting.length)
    // The valid manifest is recorded; what else was accepted is exactly what verifies.
    expect(consent.manifest(manifest.digest)).toBeDefined()
    expect(published.length).toBe(done.filter((n) => !n.endsWith('.refused')).length)
    // The inbox still works after the batch.
    await writeFile(join(folder, 'late.json'), 'not json')
    await inbox.poll()
    expect(await readdir(join(folder, 'done'))).toContain('late.json.refused')
  })
})
