// Opt-out signals inside the files: real PNG, JPEG and WebP files carrying each signal, written
// by ExifTool (committed fixtures, test/fixtures/optout/make-fixtures.ts) and by sharp (libvips
// puts XMP in a PNG zTXt chunk, a JPEG APP1 segment and a WebP XMP chunk); the image loader and
// `coop consent create` refuse the files that say no, even when a manifest lists them.
import { execFile } from 'node:child_process'
import {
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { promisify } from 'node:util'
import sharp from 'sharp'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { PLUS_DATA_MINING_VALUES, PLUS_VOCABULARY_PREFIX } from '../../protocol/data-mining.ts'
import { sha256Digest } from '../../protocol/digest.ts'
import { loadImageFolder } from '../../trainer/data.ts'
import { readEmbeddedOptOut } from '../../trainer/embedded-metadata.ts'
import { DATA_MAX_FILE_BYTES, EMBEDDED_XMP_MAX_BYTES } from '../../trainer/constants.ts'

const root = resolve(import.meta.dirname, '..', '..')
const fixtures = join(root, 'test', 'fixtures', 'optout')
const expected = JSON.parse(readFileSync(join(fixtures, 'fixtures.json'), 'utf8')) as {
  file: string
  allowed: boolean
  what: string
}[]
const twemoji = join(root, 'node_modules', 'emoji-datasource-twitter', 'img', 'twitter', '64')

const packet = (namespaces: string, body: string) =>
  `<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about="" ${namespaces}>${body}</rdf:Description></rdf:RDF></x:xmpmeta>`
const PLUS = 'xmlns:plus="http://ns.useplus.org/ldf/xmp/1.0/"'
const CAWG = 'xmlns:cawg="https://cawg.io/training-mining/"'

async function withXmp(format: 'png' | 'jpeg' | 'webp', xmp: string): Promise<Buffer> {
  return await sharp({ create: { width: 12, height: 12, channels: 3, background: '#c33' } })
    .toFormat(format)
    .withXmp(xmp)
    .toBuffer()
}

let dir: string
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'coop-optout-'))
})
afterAll(() => rmSync(dir, { recursive: true, force: true }))

describe('readEmbeddedOptOut on files written by ExifTool', () => {
  it.each(expected)('$file: allowed = $allowed ($what)', async ({ file, allowed }) => {
    const verdict = await readEmbeddedOptOut(readFileSync(join(fixtures, file)))
    expect(verdict.allowed).toBe(allowed)
    if (!allowed) expect(verdict.refusing.length).toBeGreaterThan(0)
  })

  it('reads the same verdict from a path as from the bytes', async () => {
    const verdict = await readEmbeddedOptOut(join(fixtures, 'plus-aimltraining.png'))
    expect(verdict.refusing.map((s) => s.value)).toEqual([
      `${PLUS_VOCABULARY_PREFIX}DMI-PROHIBITED-AIMLTRAINING`,
    ])
  })
})

describe('readEmbeddedOptOut on files written by sharp', () => {
  const cases = Object.entries(PLUS_DATA_MINING_VALUES).flatMap(([term, { forbids }]) =>
    (['png', 'jpeg', 'webp'] as const).map((format) => ({ term, forbids, format })),
  )
  it.each(cases)(
    '$format with plus:DataMining $term forbids = $forbids',
    async ({ term, forbids, format }) => {
      const bytes = await withXmp(
        format,
        packet(PLUS, `<plus:DataMining>${PLUS_VOCABULARY_PREFIX}${term}</plus:DataMining>`),
      )
      const verdict = await readEmbeddedOptOut(bytes)
      expect(verdict.allowed).toBe(!forbids)
      expect(verdict.signals).toHaveLength(1)
    },
  )

  it.each([
    {
      form: 'attribute',
      body: '',
      attrs: `plus:DataMining="${PLUS_VOCABULARY_PREFIX}DMI-PROHIBITED"`,
      allowed: false,
    },
    {
      form: 'bare term',
      body: '<plus:DataMining>DMI-PROHIBITED-GENAIMLTRAINING</plus:DataMining>',
      attrs: '',
      allowed: false,
    },
    { form: 'unknown term', body: '<plus:DataMining>DMI-MAYBE</plus:DataMining>', attrs: '', allowed: false },
    {
      form: 'rdf:Bag with one prohibition among allowances',
      body: `<plus:DataMining><rdf:Bag><rdf:li>${PLUS_VOCABULARY_PREFIX}DMI-ALLOWED</rdf:li><rdf:li>${PLUS_VOCABULARY_PREFIX}DMI-PROHIBITED</rdf:li></rdf:Bag></plus:DataMining>`,
      attrs: '',
      allowed: false,
    },
    {
      form: 'CAWG allowed',
      body: '<cawg:cawg.ai_generative_training>allowed</cawg:cawg.ai_generative_training>',
      attrs: '',
      allowed: true,
    },
    {
      form: 'CAWG unknown use',
      body: '<cawg:cawg.data_mining>perhaps</cawg:cawg.data_mining>',
      attrs: '',
      allowed: false,
    },
  ])('PNG zTXt, $form: allowed = $allowed', async ({ body, attrs, allowed }) => {
    const bytes = await withXmp('png', packet(`${PLUS} ${CAWG} ${attrs}`, body))
    expect((await readEmbeddedOptOut(bytes)).allowed).toBe(allowed)
  })

  it('refuses a file whose XMP mentions an opt-out but does not parse, and one whose XMP exceeds the bound', async () => {
    const broken = await withXmp(
      'png',
      `<x:xmpmeta><plus:DataMining>${PLUS_VOCABULARY_PREFIX}DMI-ALLOWED</x:xmpmeta>`,
    )
    const brokenVerdict = await readEmbeddedOptOut(broken)
    expect(brokenVerdict.allowed).toBe(false)
    expect(brokenVerdict.refusing[0]?.source).toBe('xmp:unreadable')
    const huge = await withXmp(
      'png',
      packet(PLUS, `<plus:Note>${'x'.repeat(EMBEDDED_XMP_MAX_BYTES)}</plus:Note>`),
    )
    expect((await readEmbeddedOptOut(huge)).refusing[0]?.meaning).toMatch(/larger than/)
  })

  it('allows files with no XMP, and XMP that does not parse but mentions no opt-out', async () => {
    const plain = await sharp({ create: { width: 8, height: 8, channels: 3, background: '#000' } })
      .png()
      .toBuffer()
    expect(await readEmbeddedOptOut(plain)).toEqual({ allowed: true, signals: [], refusing: [] })
    const junk = await withXmp('jpeg', '<not xmp')
    expect((await readEmbeddedOptOut(junk)).allowed).toBe(true)
  })

  it('refuses a GIF file too large to search for its XMP, given by path', async () => {
    const gif = await sharp({ create: { width: 8, height: 8, channels: 3, background: '#000' } })
      .gif()
      .toBuffer()
    const path = join(dir, 'padded.gif')
    // Bytes after the GIF trailer are ignored by decoders: a valid GIF over the file bound.
    writeFileSync(path, Buffer.concat([gif, Buffer.alloc(DATA_MAX_FILE_BYTES)]))
    const verdict = await readEmbeddedOptOut(path)
    expect(verdict.allowed).toBe(false)
    expect(verdict.refusing[0]?.meaning).toMatch(/GIF larger than/)
    expect((await readEmbeddedOptOut(gif)).allowed).toBe(true)
  })

  it('throws on bytes that are not an image (the loader then reports the file as unusable)', async () => {
    await expect(readEmbeddedOptOut(new Uint8Array([1, 2, 3, 4]))).rejects.toThrow()
  })
})

describe('the loader and coop consent create honour the files', () => {
  it('the loader refuses opted-out files even when the allowlist covers them, and counts them', async () => {
    const data = join(dir, 'data')
    mkdirSync(join(data, 'icons'), { recursive: true })
    const pngs = readdirSync(twemoji)
      .filter((f) => f.endsWith('.png'))
      .sort()
      .slice(0, 3)
    for (const name of pngs) copyFileSync(join(twemoji, name), join(data, 'icons', name))
    for (const { file } of expected) copyFileSync(join(fixtures, file), join(data, 'icons', file))
    const allowlist = new Set(
      readdirSync(join(data, 'icons')).map((f) => sha256Digest(readFileSync(join(data, 'icons', f)))),
    )
    const dataset = await loadImageFolder({ dir: data, size: 8, allowlist })
    const refusedFiles = expected.filter((e) => !e.allowed).map((e) => join(data, 'icons', e.file))
    expect(dataset.optedOut.map((o) => o.path)).toEqual([...refusedFiles].sort())
    expect(dataset.items).toHaveLength(3 + expected.filter((e) => e.allowed).length)
    for (const refused of refusedFiles) expect(dataset.items.some((i) => i.path === refused)).toBe(false)
    expect(dataset.optedOut.find((o) => o.path.endsWith('plus-aimltraining.png'))?.reason).toContain(
      'prohibited for AI/ML training',
    )
  })

  it('the loader says why a folder of only opted-out files is empty', async () => {
    const data = join(dir, 'only-refused')
    mkdirSync(data)
    copyFileSync(join(fixtures, 'plus-aimltraining.png'), join(data, 'a.png'))
    await expect(loadImageFolder({ dir: data, size: 8 })).rejects.toMatchObject({
      code: 'DATA_EMPTY',
      message: expect.stringContaining('1 refused by their embedded opt-out metadata'),
    })
  })

  it('coop consent create leaves the refused files out, names each, and counts them', async () => {
    const run = promisify(execFile)
    const node = join(root, 'node_modules', '.bin', 'node')
    const main = join(root, 'node', 'cli', 'main.ts')
    const images = join(dir, 'consent-images')
    mkdirSync(images)
    for (const { file } of expected) copyFileSync(join(fixtures, file), join(images, file))
    const artistKey = join(dir, 'artist.key')
    const nodeKey = join(dir, 'node.key')
    await run(node, [main, 'keys', 'new', '--out', artistKey])
    const shown = await run(node, [main, 'keys', 'new', '--out', nodeKey])
    const peerId = /peerId\s+(\S+)/.exec(shown.stdout)![1]!
    const manifestPath = join(dir, 'manifest.json')
    const made = await run(node, [
      main,
      'consent',
      'create',
      images,
      '--key',
      artistKey,
      '--license',
      'CC-BY-4.0',
      '--attribution-name',
      'Ada',
      '--custodian',
      peerId,
      '--out',
      manifestPath,
    ])
    const refused = expected.filter((e) => !e.allowed)
    expect(made.stdout).toContain(
      `refused   ${refused.length} image(s) whose embedded metadata forbids AI training`,
    )
    for (const { file } of refused)
      expect(made.stderr).toContain(`refused: ${file}: its metadata forbids AI training`)
    const manifest = JSON.parse(readFileSync(manifestPath, 'utf8')) as {
      credentialSubject: { items: { digest: string }[] }
    }
    const listed = new Set(manifest.credentialSubject.items.map((i) => i.digest))
    for (const { file, allowed } of expected)
      expect(listed.has(sha256Digest(readFileSync(join(fixtures, file)))), file).toBe(allowed)
  })
})
