// Reads the opt-out signals an image file carries in its own metadata (protocol/data-mining.ts
// says what they mean). Well-kept libraries do the parsing; only a GIF's packet is located here:
// - sharp (libvips) finds the XMP packet in the container: PNG iTXt/zTXt/tEXt
//   `XML:com.adobe.xmp`, JPEG APP1 (the main packet; not JPEG "extended XMP"), WebP `XMP `
//   chunk, TIFF, HEIF/AVIF. Neither library extracts GIF XMP, so for a GIF the packet is
//   located here by the XMP application extension's identifier (`XMP DataXMP`, XMP spec part 3):
//   its bytes run up to the 258-byte "magic trailer", which starts 0x01 0xFF 0xFE.
// - ExifReader parses the packet (RDF/XML through @xmldom/xmldom): attribute, element,
//   rdf:resource, struct and list forms alike. It is handed the packet inside a minimal PNG
//   (signature + one iTXt chunk), the one container whose XMP it reads without a size limit;
//   writing that wrapper is the only byte handling here.
// ExifReader names properties by their local name, so `DataMining` counts in any namespace
// (the PLUS one in practice): a stricter reading would only let more files through.
// Not read: C2PA/CAWG manifests inside JUMBF boxes (JPEG APP11, PNG caBX), because no library
// that installs reproducibly here parses them (docs/PROTOCOL.md §4.5); IPTC IIM (APP13) and
// EXIF, because neither defines a data-mining field (the IPTC property exists only as XMP).
import { DOMParser, onErrorStopParsing } from '@xmldom/xmldom'
import ExifReader from 'exifreader'
import sharp from 'sharp'
import { readFile, stat } from 'node:fs/promises'
import { crc32 } from 'node:zlib'
import {
  CAWG_ENTRIES,
  cawgSignal,
  embeddedVerdict,
  type EmbeddedSignal,
  type EmbeddedVerdict,
  plusDataMiningSignal,
} from '../protocol/data-mining.ts'
import { DATA_MAX_FILE_BYTES, DATA_MAX_INPUT_PIXELS, EMBEDDED_XMP_MAX_BYTES } from './constants.ts'

const PNG_SIGNATURE = Uint8Array.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])
/** iTXt header for XMP: keyword, NUL, compression flag 0, method 0, empty language tag and translated keyword. */
const XMP_ITXT_HEADER = Buffer.from('XML:com.adobe.xmp\0\0\0\0\0', 'latin1')

function pngChunk(type: string, data: Uint8Array): Buffer {
  const head = Buffer.alloc(8)
  head.writeUInt32BE(data.length, 0)
  head.write(type, 4, 'latin1')
  const crc = Buffer.alloc(4)
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])) >>> 0, 0)
  return Buffer.concat([head, data, crc])
}

/** A PNG holding only the XMP packet: what ExifReader needs to parse it. */
function xmpCarrier(xmp: Uint8Array): Buffer {
  return Buffer.concat([
    PNG_SIGNATURE,
    pngChunk('iTXt', Buffer.concat([XMP_ITXT_HEADER, xmp])),
    pngChunk('IEND', new Uint8Array(0)),
  ])
}

/** Introducer, label and block size of a GIF application extension, then its identifier. */
const GIF_XMP_ID = Buffer.concat([Buffer.from([0x21, 0xff, 0x0b]), Buffer.from('XMP DataXMP', 'latin1')])
/** The first bytes of the XMP magic trailer: never in UTF-8 text. */
const GIF_XMP_TRAILER = Buffer.from([0x01, 0xff, 0xfe])

/**
 * The XMP packet of a GIF, or undefined when it has none. Without its trailer, the rest of the
 * file is returned: too large or unparsable, it then refuses the file if it mentions an opt-out.
 */
function gifXmp(bytes: Uint8Array): Buffer | undefined {
  const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const at = buffer.indexOf(GIF_XMP_ID)
  if (at < 0) return undefined
  const start = at + GIF_XMP_ID.length
  const end = buffer.indexOf(GIF_XMP_TRAILER, start)
  return buffer.subarray(start, end < 0 ? buffer.length : end)
}

interface XmpTag {
  value: unknown
}

/** String leaves of an ExifReader XMP value: text, rdf:resource, structs, rdf:Bag/Seq/Alt items. */
function stringLeaves(value: unknown, depth = 0): string[] {
  if (depth > 8) return []
  if (typeof value === 'string') return value === '' ? [] : [value]
  if (typeof value === 'number' || typeof value === 'boolean') return [String(value)]
  if (Array.isArray(value)) return value.flatMap((v) => stringLeaves(v, depth + 1))
  if (typeof value === 'object' && value !== null) {
    const tag = value as { value?: unknown; attributes?: Record<string, unknown> }
    if ('value' in tag) {
      // `<x:Name rdf:resource="..."/>` has an empty value and the URI in its attributes.
      const leaves = stringLeaves(tag.value, depth + 1)
      const resource = tag.attributes?.resource
      return leaves.length === 0 && typeof resource === 'string' ? [resource] : leaves
    }
    return Object.values(value).flatMap((v) => stringLeaves(v, depth + 1))
  }
  return []
}

/** A CAWG entry's `use`: written as a plain value or as a struct with a `use` field. */
function cawgUses(tag: XmpTag): string[] {
  const value = tag.value
  if (typeof value === 'object' && value !== null && !Array.isArray(value) && 'use' in value)
    return stringLeaves((value as { use: unknown }).use)
  return stringLeaves(value)
}

/** Signals in ExifReader's XMP group (`{LocalName: {value, attributes, description}}`). */
export function signalsFromXmp(xmp: Record<string, unknown>): EmbeddedSignal[] {
  const signals: EmbeddedSignal[] = []
  for (const [name, tag] of Object.entries(xmp)) {
    if (name === '_raw' || typeof tag !== 'object' || tag === null) continue
    if (name === 'DataMining') for (const leaf of stringLeaves(tag)) signals.push(plusDataMiningSignal(leaf))
    // CAWG labels are read in any namespace: no XMP binding of them is standardised.
    if (name in CAWG_ENTRIES) for (const use of cawgUses(tag as XmpTag)) signals.push(cawgSignal(name, use))
  }
  return signals
}

function unreadable(reason: string): EmbeddedSignal {
  return { source: 'xmp:unreadable', property: 'XMP', value: reason, forbids: true, meaning: reason }
}

/**
 * The verdict on one image file's own metadata. `input` is the file's bytes or its path. Throws
 * only when the file is not a decodable image (the loader reports it as unusable); an XMP packet
 * that is present but too large or unparsable refuses the file, since it may say no.
 */
export async function readEmbeddedOptOut(input: Uint8Array | string): Promise<EmbeddedVerdict> {
  const metadata = await sharp(input, { limitInputPixels: DATA_MAX_INPUT_PIXELS }).metadata()
  let xmp = metadata.xmp
  if (metadata.format === 'gif') {
    // Read whole to find the packet: only up to the loader's file bound (it skips larger files).
    if (typeof input === 'string' && (await stat(input)).size > DATA_MAX_FILE_BYTES)
      return embeddedVerdict([
        unreadable(`GIF larger than ${DATA_MAX_FILE_BYTES} bytes: its XMP is not read`),
      ])
    xmp = gifXmp(typeof input === 'string' ? await readFile(input) : input)
  }
  if (xmp === undefined || xmp.length === 0) return embeddedVerdict([])
  if (xmp.length > EMBEDDED_XMP_MAX_BYTES)
    return embeddedVerdict([unreadable(`XMP packet larger than ${EMBEDDED_XMP_MAX_BYTES} bytes`)])
  let parsed: Record<string, unknown> | undefined
  try {
    const tags = ExifReader.load(xmpCarrier(xmp), {
      expanded: true,
      includeTags: { xmp: true },
      domParser: new DOMParser({ onError: onErrorStopParsing }),
    })
    parsed = tags.xmp as Record<string, unknown> | undefined
  } catch {
    parsed = undefined
  }
  const properties = Object.keys(parsed ?? {}).filter((k) => k !== '_raw')
  if (parsed === undefined || properties.length === 0) {
    // Nothing parsed: harmless unless the packet mentions a signal we then failed to read.
    const text = xmp.toString('latin1')
    const mentions = text.includes('DataMining') || text.includes('cawg.')
    return embeddedVerdict(
      mentions ? [unreadable('XMP packet mentions an opt-out but cannot be parsed')] : [],
    )
  }
  return embeddedVerdict(signalsFromXmp(parsed))
}
