// Traceability over the checkpoint lineage. Pure functions over normalised records, so the same
// code answers `coop trace` (reading checkpoint directories and blobs, no database lock) and
// tests.
//
// The rule for "a contribution used image X": the contribution lists a manifest that holds X,
// X had not been recorded as revoked, and that manifest had not been recorded as expired, by any
// checkpoint up to and including the one the contribution trained from. A revocation that arrives mid-round is recorded by that round's
// checkpoint, so that round's contributions still count as having (possibly) used the image:
// the trainer saw it in the steps before the revocation arrived.
import { ancestors } from './lineage.ts'
import type { Phase } from './schedule.ts'

export interface TraceContribution {
  /** Digest of the signed ContributionStatement. */
  statement: string
  payload: string
  peer: string
  round: number
  /** Digests of the consent manifests the contributor trained on. */
  manifests: string[]
  samples: number
}

export interface TraceCheckpoint {
  /** The checkpoint id: digest of its signed provenance. */
  id: string
  phase: Phase
  round: number
  parent: string | null
  /** Checkpoint ids of components this one depends on (the autoencoder for U-Net checkpoints). */
  components: string[]
  contributions: TraceContribution[]
  /** Item digests revoked since the parent and excluded from training from now on. */
  revokedExcluded: string[]
  /** Manifests whose consent ended since the parent: none of their items is used from now on. */
  expiredManifests: string[]
}

export interface TraceManifest {
  id: string
  issuer: string
  custodian: string
  items: string[]
  license: string
  attribution: { name: string; uri?: string; text?: string }
  /** Per-item licenses override the manifest's one for attribution. */
  itemLicenses?: Record<string, string>
}

export interface ImageTraceEntry {
  checkpoint: string
  phase: Phase
  round: number
  /** The contributions in its lineage that used the image, oldest first. */
  via: { round: number; peer: string; statement: string; manifest: string }[]
}

export interface AttributionEntry {
  issuer: string
  name: string
  uri?: string
  text?: string
  license: string
  items: number
  manifests: string[]
  contributors: string[]
}

export interface CheckpointAttribution {
  checkpoint: string
  phase: Phase
  round: number
  rounds: number
  contributions: number
  entries: AttributionEntry[]
  /** Manifests listed in the lineage whose documents are not available here. */
  unknownManifests: string[]
}

export class LineageIndex {
  readonly #checkpoints = new Map<string, TraceCheckpoint>()
  readonly #manifests = new Map<string, TraceManifest>()

  constructor(checkpoints: Iterable<TraceCheckpoint>, manifests: Iterable<TraceManifest>) {
    for (const c of checkpoints) this.#checkpoints.set(c.id, c)
    for (const m of manifests) this.#manifests.set(m.id, m)
  }

  checkpoint(id: string): TraceCheckpoint | undefined {
    return this.#checkpoints.get(id)
  }

  checkpoints(): TraceCheckpoint[] {
    return [...this.#checkpoints.values()].sort(
      (a, b) => a.round - b.round || (a.phase < b.phase ? -1 : a.phase > b.phase ? 1 : 0),
    )
  }

  /** The same-phase chain from genesis to `id` (genesis first); stops at a missing parent. */
  chain(id: string): TraceCheckpoint[] {
    const chain = ancestors(this.#checkpoints.get(id), (c) =>
      c.parent === null ? undefined : this.#checkpoints.get(c.parent),
    )
    return [...chain].reverse()
  }

  /**
   * Every (contribution, manifest item set) in the lineage of `id`: its own chain and, through
   * components, the chains it depends on. Items already revoked when a contribution's round
   * started are removed from what that contribution used.
   */
  lineageUse(
    id: string,
    visited = new Set<string>(),
  ): {
    checkpoint: TraceCheckpoint
    contribution: TraceContribution
    manifest: string
    items: Set<string>
  }[] {
    const out: {
      checkpoint: TraceCheckpoint
      contribution: TraceContribution
      manifest: string
      items: Set<string>
    }[] = []
    const chain = this.chain(id)
    const revokedSoFar = new Set<string>()
    const expiredSoFar = new Set<string>()
    for (const checkpoint of chain) {
      for (const component of checkpoint.components) {
        if (visited.has(component)) continue
        visited.add(component)
        out.push(...this.lineageUse(component, visited))
      }
      for (const contribution of checkpoint.contributions) {
        for (const manifestId of contribution.manifests) {
          // Validators refuse contributions citing a manifest the chain recorded as expired.
          if (expiredSoFar.has(manifestId)) continue
          const manifest = this.#manifests.get(manifestId)
          const items = new Set((manifest?.items ?? []).filter((item) => !revokedSoFar.has(item)))
          out.push({ checkpoint, contribution, manifest: manifestId, items })
        }
      }
      // Revocations recorded here bind the rounds that train from this checkpoint onwards.
      for (const item of checkpoint.revokedExcluded) revokedSoFar.add(item)
      for (const manifest of checkpoint.expiredManifests) expiredSoFar.add(manifest)
    }
    return out
  }

  /** Every checkpoint whose lineage includes a contribution that used the image. */
  traceImage(imageDigest: string): ImageTraceEntry[] {
    const out: ImageTraceEntry[] = []
    for (const checkpoint of this.checkpoints()) {
      const via = this.lineageUse(checkpoint.id)
        .filter((use) => use.items.has(imageDigest))
        .map((use) => ({
          round: use.contribution.round,
          peer: use.contribution.peer,
          statement: use.contribution.statement,
          manifest: use.manifest,
        }))
      if (via.length > 0)
        out.push({ checkpoint: checkpoint.id, phase: checkpoint.phase, round: checkpoint.round, via })
    }
    return out
  }

  /** Manifests (known here) that list the image. */
  manifestsWithImage(imageDigest: string): TraceManifest[] {
    return [...this.#manifests.values()].filter((m) => m.items.includes(imageDigest))
  }

  /** The attribution list a checkpoint's licenses require: rights holders, licenses, item counts. */
  attribution(id: string): CheckpointAttribution {
    const checkpoint = this.#checkpoints.get(id)
    if (checkpoint === undefined) throw new RangeError(`unknown checkpoint ${id}`)
    const uses = this.lineageUse(id)
    const groups = new Map<
      string,
      { entry: AttributionEntry; items: Set<string>; manifests: Set<string>; contributors: Set<string> }
    >()
    const unknown = new Set<string>()
    const rounds = new Set<number>()
    const statements = new Set<string>()
    for (const use of uses) {
      rounds.add(use.contribution.round)
      statements.add(use.contribution.statement)
      const manifest = this.#manifests.get(use.manifest)
      if (manifest === undefined) {
        unknown.add(use.manifest)
        continue
      }
      for (const item of use.items) {
        const license = manifest.itemLicenses?.[item] ?? manifest.license
        const key = `${manifest.issuer}\u0000${license}\u0000${manifest.attribution.name}`
        let group = groups.get(key)
        if (group === undefined) {
          group = {
            entry: {
              issuer: manifest.issuer,
              name: manifest.attribution.name,
              ...(manifest.attribution.uri === undefined ? {} : { uri: manifest.attribution.uri }),
              ...(manifest.attribution.text === undefined ? {} : { text: manifest.attribution.text }),
              license,
              items: 0,
              manifests: [],
              contributors: [],
            },
            items: new Set(),
            manifests: new Set(),
            contributors: new Set(),
          }
          groups.set(key, group)
        }
        group.items.add(item)
        group.manifests.add(manifest.id)
        group.contributors.add(use.contribution.peer)
      }
    }
    const entries = [...groups.values()]
      .map((g) => ({
        ...g.entry,
        items: g.items.size,
        manifests: [...g.manifests].sort(),
        contributors: [...g.contributors].sort(),
      }))
      .sort((a, b) => b.items - a.items || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
    return {
      checkpoint: id,
      phase: checkpoint.phase,
      round: checkpoint.round,
      rounds: rounds.size,
      contributions: statements.size,
      entries,
      unknownManifests: [...unknown].sort(),
    }
  }
}
