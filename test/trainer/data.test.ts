// The image loader on real files: Twemoji PNGs from the npm package, JPEG and WebP written
// by sharp, a corrupt PNG among good ones, empty and missing folders, and the allowlist gate.
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import sharp from 'sharp'
import { beforeAll, describe, expect, it } from 'vitest'
import { layoutTwemoji } from '../../node/cli/commands/data.ts'
import { sha256Digest } from '../../protocol/digest.ts'
import { loadImageFolder } from '../../trainer/data.ts'
import { TrainerError } from '../../trainer/errors.ts'

let root: string
let twemoji: string

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'coop-data-'))
  twemoji = join(root, 'twemoji')
  await layoutTwemoji({
    out: twemoji,
    perCategory: 3,
    categories: ['flags', 'food-drink', 'smileys-emotion'],
  })
})

async function expectTrainerError(promise: Promise<unknown>, code: string): Promise<TrainerError> {
  try {
    await promise
  } catch (error) {
    expect(error).toBeInstanceOf(TrainerError)
    expect((error as TrainerError).code).toBe(code)
    return error as TrainerError
  }
  throw new Error(`expected TrainerError ${code}`)
}

describe('loadImageFolder', () => {
  it('loads <dir>/<class>/*.png with sorted class labels, digests of the file bytes, pixels in [-1, 1]', async () => {
    const dataset = await loadImageFolder({ dir: twemoji, size: 16 })
    expect(dataset.classes).toEqual(['flags', 'food-drink', 'smileys-emotion'])
    expect(dataset.items).toHaveLength(9)
    expect(dataset.items.map((i) => i.label)).toEqual([0, 0, 0, 1, 1, 1, 2, 2, 2])
    const first = dataset.items[0] as { path: string; sha256: string }
    expect(first.sha256).toBe(sha256Digest(readFileSync(first.path)))
    expect(dataset.pixels).toHaveLength(9 * 16 * 16 * 3)
    let min = Infinity
    let max = -Infinity
    for (const v of dataset.pixels) {
      min = Math.min(min, v)
      max = Math.max(max, v)
    }
    expect(min).toBeGreaterThanOrEqual(-1)
    expect(max).toBeLessThanOrEqual(1)
    // Twemoji have transparent corners: composited on white they read as 1.0 in every channel.
    expect([dataset.pixels[0], dataset.pixels[1], dataset.pixels[2]]).toEqual([1, 1, 1])
    expect(dataset.skipped).toEqual([])
  })

  it('gives the same items in the same order on every load', async () => {
    const a = await loadImageFolder({ dir: twemoji, size: 8 })
    const b = await loadImageFolder({ dir: twemoji, size: 8 })
    expect(b.items).toEqual(a.items)
    expect(b.pixels).toEqual(a.pixels)
  })

  it('decodes JPEG and WebP, composites transparency on white, and treats a flat folder as unconditional', async () => {
    const dir = join(root, 'flat')
    mkdirSync(dir)
    const red = { r: 255, g: 0, b: 0 }
    await sharp({ create: { width: 20, height: 10, channels: 3, background: red } })
      .jpeg({ quality: 95 })
      .toFile(join(dir, 'a.jpg'))
    await sharp({ create: { width: 10, height: 10, channels: 3, background: { r: 0, g: 0, b: 255 } } })
      .webp({ lossless: true })
      .toFile(join(dir, 'b.webp'))
    await sharp({
      create: { width: 10, height: 10, channels: 4, background: { r: 0, g: 0, b: 0, alpha: 0 } },
    })
      .png()
      .toFile(join(dir, 'c.png'))
    writeFileSync(join(dir, 'notes.txt'), 'not an image')
    const dataset = await loadImageFolder({ dir, size: 4 })
    expect(dataset.classes).toEqual([])
    expect(dataset.items.map((i) => i.label)).toEqual([-1, -1, -1])
    const pixel = (image: number) =>
      Array.from(dataset.pixels.subarray(image * 48, image * 48 + 3)).map((v) => Math.round(v * 10) / 10)
    expect(pixel(0)).toEqual([1, -1, -1])
    expect(pixel(1)).toEqual([-1, -1, 1])
    expect(pixel(2)).toEqual([1, 1, 1])
  })

  it('crops a wide image to its centre square and turns a photo upright by its EXIF orientation', async () => {
    const dir = join(root, 'shapes')
    mkdirSync(dir)
    const RED = [255, 0, 0]
    const BLUE = [0, 0, 255]
    const raw = (width: number, height: number, colour: (x: number, y: number) => number[]) => {
      const data = Buffer.alloc(width * height * 3)
      for (let y = 0; y < height; y++)
        for (let x = 0; x < width; x++) data.set(colour(x, y), (y * width + x) * 3)
      return sharp(data, { raw: { width, height, channels: 3 } })
    }
    // 30x10: blue, red, blue thirds. Squashed, it would read blue-red-blue at 3 px; cropped, all red.
    await raw(30, 10, (x) => (x >= 10 && x < 20 ? RED : BLUE))
      .png()
      .toFile(join(dir, 'a-wide.png'))
    // Stored 20x10 with red on the left and blue on the right, EXIF orientation 6 (shown turned
    // 90 degrees clockwise): upright it is 10x20, red above blue.
    await raw(20, 10, (x) => (x < 10 ? RED : BLUE))
      .jpeg({ quality: 100 })
      .withMetadata({ orientation: 6 })
      .toFile(join(dir, 'b-rotated.jpg'))
    const dataset = await loadImageFolder({ dir, size: 4 })
    // Each pixel as 'r' (red), 'b' (blue) or '?' (a blend at a JPEG-blurred edge).
    const colours = (image: number) =>
      Array.from({ length: 16 }, (_, p) => {
        const [r, g, b] = dataset.pixels.subarray((image * 16 + p) * 3, (image * 16 + p) * 3 + 3)
        if ((g as number) > -0.8) return '?'
        return (r as number) > 0.8 && (b as number) < -0.8
          ? 'r'
          : (b as number) > 0.8 && (r as number) < -0.8
            ? 'b'
            : '?'
      }).join('')
    expect(colours(0)).toBe('rrrrrrrrrrrrrrrr')
    // Rows of 4: upright, the top row is red and the bottom row blue (stored, left and right).
    const rotated = colours(1)
    expect(rotated.slice(0, 4)).toBe('rrrr')
    expect(rotated.slice(12, 16)).toBe('bbbb')
  })

  it('loads a GIF, and decodes by the bytes, not the name: an SVG or TIFF named .png is skipped', async () => {
    const dir = join(root, 'types')
    mkdirSync(dir)
    const green = { r: 0, g: 255, b: 0 }
    await sharp({ create: { width: 8, height: 8, channels: 3, background: green } })
      .gif()
      .toFile(join(dir, 'a.gif'))
    // sharp would render both if asked: an SVG may reference other files on the machine.
    writeFileSync(
      join(dir, 'b-svg.png'),
      '<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"><rect width="8" height="8" fill="red"/></svg>',
    )
    await sharp({ create: { width: 8, height: 8, channels: 3, background: green } })
      .tiff()
      .toFile(join(dir, 'c-tiff.png'))
    const dataset = await loadImageFolder({ dir, size: 4 })
    expect(dataset.items.map((i) => i.path)).toEqual([join(dir, 'a.gif')])
    expect(Array.from(dataset.pixels.subarray(0, 3)).map(Math.round)).toEqual([-1, 1, -1])
    expect(dataset.skipped).toEqual([
      { path: join(dir, 'b-svg.png'), reason: 'not a PNG, JPEG, GIF or WebP file by its first bytes' },
      { path: join(dir, 'c-tiff.png'), reason: 'not a PNG, JPEG, GIF or WebP file by its first bytes' },
    ])
  })

  it('skips a corrupt PNG among good ones, reporting it by path, and loads the rest', async () => {
    const dir = join(root, 'with-corrupt')
    await layoutTwemoji({ out: dir, perCategory: 2, categories: ['flags'] })
    const good = readFileSync(
      join(dir, 'flags', (await import('node:fs')).readdirSync(join(dir, 'flags'))[0] as string),
    )
    const truncated = join(dir, 'flags', 'zz-truncated.png')
    writeFileSync(truncated, good.subarray(0, Math.floor(good.length / 2)))
    const garbage = join(dir, 'flags', 'zz-garbage.png')
    writeFileSync(garbage, Buffer.from('this is not a png at all'))
    const dataset = await loadImageFolder({ dir, size: 8 })
    expect(dataset.items).toHaveLength(2)
    expect(dataset.skipped.map((s) => s.path).sort()).toEqual([garbage, truncated].sort())
    const reasons = Object.fromEntries(dataset.skipped.map((s) => [s.path, s.reason]))
    expect(reasons[truncated]).toMatch(/^cannot decode: /)
    expect(reasons[garbage]).toBe('not a PNG, JPEG, GIF or WebP file by its first bytes')
  })

  it('loads only allowlisted files: a file not on the list never reaches the dataset', async () => {
    const all = await loadImageFolder({ dir: twemoji, size: 8 })
    const allowed = new Set(all.items.filter((_, i) => i % 2 === 0).map((i) => i.sha256))
    const dataset = await loadImageFolder({ dir: twemoji, size: 8, allowlist: allowed })
    expect(dataset.items.map((i) => i.sha256)).toEqual(
      all.items.filter((_, i) => i % 2 === 0).map((i) => i.sha256),
    )
    expect(dataset.notAllowed).toBe(all.items.length - dataset.items.length)
    expect(dataset.pixels).toHaveLength(dataset.items.length * 8 * 8 * 3)
  })

  it('an empty folder, a folder with only corrupt files, an empty allowlist and a missing folder are typed errors', async () => {
    const empty = join(root, 'empty')
    mkdirSync(empty)
    await expectTrainerError(loadImageFolder({ dir: empty, size: 8 }), 'DATA_EMPTY')
    const onlyBad = join(root, 'only-bad')
    mkdirSync(onlyBad)
    writeFileSync(join(onlyBad, 'x.png'), 'nope')
    const error = await expectTrainerError(loadImageFolder({ dir: onlyBad, size: 8 }), 'DATA_EMPTY')
    expect(error.message).toMatch(/1 skipped/)
    await expectTrainerError(loadImageFolder({ dir: twemoji, size: 8, allowlist: new Set() }), 'DATA_EMPTY')
    await expectTrainerError(loadImageFolder({ dir: join(root, 'does-not-exist'), size: 8 }), 'DATA_MISSING')
  })
})
