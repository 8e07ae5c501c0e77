// `coop data twemoji`: lays out the Twemoji graphics shipped by the npm package
// emoji-datasource-twitter (CC-BY 4.0) as <out>/<category>/<name>.png, the project's real,
// licensed training data, with the attribution the license requires.
import { randomBytes } from 'node:crypto'
import { copyFile, mkdir, readdir, readFile, rename, rm, rmdir, writeFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { dirname, join, resolve } from 'node:path'
import { TEMP_PREFIX } from '../../store/durable.ts'
import { assertFolderOutputFree } from '../outputs.ts'
import { parseCommandArgs, requireFlags, wholeNumberFlag } from '../args.ts'
import type { Command } from '../command.ts'
import { categorySlug, twemojiRecords } from '../../../trainer/quality/twemoji.ts'
import { CliError, UsageError } from '../command.ts'

export const TWEMOJI_ATTRIBUTION =
  'Twemoji graphics by Twitter, Inc and other contributors, licensed under CC-BY 4.0'
/** Categories left out by default: 'component' holds five skin-tone swatches, not emoji. */
const EXCLUDED_CATEGORIES = new Set(['component'])
/** The 64px images: twice the largest configured Twemoji size, so resizing only shrinks. */
const TWEMOJI_IMAGE_DIR = 'img/twitter/64'

interface EmojiRecord {
  short_name: string
  image: string
  category: string
  sort_order: number
  has_img_twitter: boolean
}

export { categorySlug }

function fileSafe(name: string): string {
  return name.replace(/[^A-Za-z0-9_+-]+/g, '_')
}

export interface LayoutTwemojiOptions {
  out: string
  /** At most this many images per category, spread evenly over the category's sort order. */
  perCategory?: number
  /** Category slugs to include (default: all but 'component'). */
  categories?: string[]
  /**
   * Leave out the quality metric's held-out images (trainer/quality/twemoji.ts), so a model
   * trained on the folder is scored on images it never saw. The demo and the simulator do.
   */
  withoutQualityHoldout?: boolean
}

export interface LayoutTwemojiResult {
  images: number
  perCategory: Record<string, number>
}

export async function layoutTwemoji(options: LayoutTwemojiOptions): Promise<LayoutTwemojiResult> {
  const require = createRequire(import.meta.url)
  const packageDir = dirname(require.resolve('emoji-datasource-twitter/package.json'))
  const records = JSON.parse(await readFile(join(packageDir, 'emoji.json'), 'utf8')) as EmojiRecord[]
  const byCategory = new Map<string, EmojiRecord[]>()
  for (const record of records) {
    if (!record.has_img_twitter || typeof record.category !== 'string' || typeof record.image !== 'string')
      continue
    const slug = categorySlug(record.category)
    const list = byCategory.get(slug) ?? []
    list.push(record)
    byCategory.set(slug, list)
  }
  if (options.withoutQualityHoldout === true) {
    // By content: an image drawn identically under another name must go too.
    const heldOut = new Set<string>()
    const digestOf = new Map<string, string>()
    for (const list of (await twemojiRecords()).values())
      for (const record of list) {
        digestOf.set(record.image, record.sha256)
        if (record.heldOut) heldOut.add(record.sha256)
      }
    for (const [slug, list] of byCategory)
      byCategory.set(
        slug,
        list.filter((r) => !heldOut.has(digestOf.get(r.image) ?? '')),
      )
  }
  const wanted = options.categories ?? [...byCategory.keys()].filter((c) => !EXCLUDED_CATEGORIES.has(c))
  for (const category of wanted)
    if (!byCategory.has(category))
      throw new CliError(
        'UNKNOWN_CATEGORY',
        `no Twemoji category '${category}' (known: ${[...byCategory.keys()].sort().join(', ')})`,
      )
  const perCategory: Record<string, number> = {}
  let images = 0
  for (const category of [...wanted].sort()) {
    const all = (byCategory.get(category) as EmojiRecord[])
      .slice()
      .sort((a, b) => a.sort_order - b.sort_order)
    const limit = Math.min(options.perCategory ?? all.length, all.length)
    // Evenly spaced picks: a small subset still spans the whole category (not only its first faces).
    const picked = Array.from(
      { length: limit },
      (_, i) => all[Math.floor((i * all.length) / limit)] as EmojiRecord,
    )
    await mkdir(join(options.out, category), { recursive: true })
    const used = new Set<string>()
    for (const record of picked) {
      let name = fileSafe(record.short_name)
      while (used.has(name)) name = `${name}_`
      used.add(name)
      await copyFile(
        join(packageDir, TWEMOJI_IMAGE_DIR, record.image),
        join(options.out, category, `${name}.png`),
      )
    }
    perCategory[category] = picked.length
    images += picked.length
  }
  await writeFile(
    join(options.out, 'LICENSE-ATTRIBUTION.txt'),
    `${TWEMOJI_ATTRIBUTION}.\nhttps://creativecommons.org/licenses/by/4.0/\nSource: https://github.com/jdecked/twemoji via the npm package emoji-datasource-twitter.\n`,
  )
  return { images, perCategory }
}

/** Runs `fill` on a temp folder beside `out`, then renames it to `out` (which is missing or empty). */
async function intoNewFolder<T>(out: string, fill: (dir: string) => Promise<T>): Promise<T> {
  const parent = dirname(resolve(out))
  await mkdir(parent, { recursive: true })
  const temp = join(parent, `${TEMP_PREFIX}${randomBytes(6).toString('hex')}`)
  try {
    const result = await fill(temp)
    // An empty folder at `out` (allowed) gives way; rename would refuse to replace it on some systems.
    await rmdir(out).catch(() => undefined)
    await rename(temp, out)
    return result
  } catch (err) {
    await rm(temp, { recursive: true, force: true })
    throw err
  }
}

const usage = `Usage: coop data twemoji --out <dir> [--per-category N] [--categories a,b] [--without-quality-holdout] [--force]

Lays out the Twemoji images of the npm package emoji-datasource-twitter (CC-BY 4.0) as
<dir>/<category>/<name>.png and writes <dir>/LICENSE-ATTRIBUTION.txt.

Options:
  --out <dir>           output folder: new or empty (created whole, or not at all)
  --force               add to a folder that already has files
  --per-category <n>    at most n images per category, spread over the category
  --categories <list>   comma-separated category slugs (e.g. smileys-emotion,flags)
  --without-quality-holdout
                        leave out the images the quality metric holds out (one in four per category),
                        so models trained on the folder are scored on images they never saw`

export const command: Command = {
  summary: 'lay out licensed sample data (Twemoji) as an image folder',
  usage,
  async run(argv) {
    const { values, positionals } = parseCommandArgs(
      argv,
      {
        out: { type: 'string' },
        'per-category': { type: 'string' },
        categories: { type: 'string' },
        force: { type: 'boolean' },
        'without-quality-holdout': { type: 'boolean' },
      },
      { allowPositionals: true },
    )
    if (positionals.length !== 1 || positionals[0] !== 'twemoji')
      throw new UsageError('the only data set is twemoji: coop data twemoji --out <dir>')
    requireFlags(values, ['out'])
    const perCategory = wholeNumberFlag('per-category', values['per-category'], { min: 1 })
    const categories = values.categories
      ?.split(',')
      .map((c) => c.trim())
      .filter((c) => c.length > 0)
    const force = values.force === true
    await assertFolderOutputFree(values.out, force)
    const layout = (out: string) =>
      layoutTwemoji({
        out,
        ...(perCategory === undefined ? {} : { perCategory }),
        ...(categories === undefined ? {} : { categories }),
        withoutQualityHoldout: values['without-quality-holdout'] === true,
      })
    // A new folder appears complete or not at all (laid out beside it, then renamed); --force on a
    // folder with files adds to it in place.
    const fresh = (await readdir(values.out).catch(() => [] as string[])).length === 0
    const result = fresh ? await intoNewFolder(values.out, layout) : await layout(values.out)
    process.stdout.write(
      `${result.images} Twemoji images in ${Object.keys(result.perCategory).length} categories written to ${values.out}\n`,
    )
    for (const [category, count] of Object.entries(result.perCategory))
      process.stdout.write(`  ${category}: ${count}\n`)
    return 0
  },
}
