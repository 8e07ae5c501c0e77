// Who holds the rights to each audited image: the issuers of the consent manifests that list it,
// from manifest files given on the command line (signatures verified) and from the manifests a
// store's checkpoint lineage names (blobs whose digest is the signed manifest id).
import { readFile } from 'node:fs/promises'
import { MANIFEST_MAX_BYTES } from '../../protocol/constants.ts'
import { verifyManifest } from '../../protocol/manifest.ts'
import { loadLineage } from '../round/audit.ts'

export interface RightsHolder {
  /** did:key of the manifest issuer. */
  issuer: string
  name: string
  license: string
  manifests: string[]
}

export interface HolderIndex {
  /** Image digest -> the holders whose manifests list it (one in practice). */
  byImage: Map<string, RightsHolder[]>
}

/** The holders of each of `images` (sha256 digests). */
export async function loadHolders(
  images: readonly string[],
  options: { consentFiles?: string[]; storeDir?: string },
): Promise<HolderIndex> {
  const holders = new Map<string, RightsHolder>()
  const byImage = new Map<string, RightsHolder[]>()
  const wanted = new Set(images)
  const add = (issuer: string, name: string, license: string, manifest: string, items: readonly string[]) => {
    const key = `${issuer}\u0000${name}\u0000${license}`
    let holder = holders.get(key)
    if (holder === undefined) {
      holder = { issuer, name, license, manifests: [] }
      holders.set(key, holder)
    }
    if (!holder.manifests.includes(manifest)) holder.manifests.push(manifest)
    for (const item of items) {
      if (!wanted.has(item)) continue
      const list = byImage.get(item) ?? []
      if (!list.includes(holder)) list.push(holder)
      byImage.set(item, list)
    }
  }
  for (const path of options.consentFiles ?? []) {
    const bytes = await readFile(path)
    if (bytes.byteLength > MANIFEST_MAX_BYTES) throw new Error(`${path} is larger than a manifest may be`)
    const peek = JSON.parse(bytes.toString('utf8')) as { validFrom?: string }
    // Judged at its own start: an expired or later-revoked manifest still names who holds the rights.
    const verified = verifyManifest(new Uint8Array(bytes), { now: new Date(peek.validFrom ?? Date.now()) })
    const subject = verified.manifest.credentialSubject
    add(
      verified.issuer,
      subject.attribution.name,
      subject.license,
      verified.digest,
      verified.items.map((i) => i.digest),
    )
  }
  if (options.storeDir !== undefined) {
    const { index } = await loadLineage(options.storeDir)
    for (const image of wanted)
      for (const manifest of index.manifestsWithImage(image))
        add(manifest.issuer, manifest.attribution.name, manifest.license, manifest.id, [image])
  }
  return { byImage }
}
