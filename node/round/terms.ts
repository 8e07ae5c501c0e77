// What a checkpoint's license and attribution are computed from: the manifests of its whole
// lineage, and their signed terms. Shared by the publisher's aggregate and rollback checkpoints.
import { attributionOfManifests, licenseOfManifests } from '../../protocol/license.ts'
import type { ProvenancePredicate } from '../../protocol/provenance.ts'
import type { ConsentBook } from '../consent/book.ts'
import { RoundError } from './errors.ts'
import type { CheckpointRecord } from './records.ts'
import { compareStrings, type RoundState } from './state.ts'

/**
 * Every manifest of this cooperative in the lineage of `record`: its chain and, through
 * components, theirs. An imported component (another cooperative's autoencoder, pinned by the
 * charter) is left out: its manifests are that cooperative's, not held here, and its own signed
 * provenance carries their license and attribution.
 */
export function lineageManifestsOf(
  state: Pick<RoundState, 'ancestors' | 'checkpointById'>,
  record: CheckpointRecord,
  visited = new Set<string>(),
): string[] {
  const out = new Set<string>()
  for (const c of state.ancestors(record)) {
    for (const m of c.predicate.manifests) out.add(m)
    for (const component of c.predicate.components) {
      const ae = state.checkpointById(component.provenance)
      if (ae === undefined || ae.verification === 'component' || visited.has(ae.id)) continue
      visited.add(ae.id)
      for (const m of lineageManifestsOf(state, ae, visited)) out.add(m)
    }
  }
  return [...out]
}

/**
 * The license and attribution of a checkpoint trained on these manifests, from their signed
 * documents only (held by the consent book, expired ones included), never from what is valid
 * or held now: the same inputs give the same terms on every peer and after any restart.
 */
export function checkpointTerms(
  consent: Pick<ConsentBook, 'manifest'>,
  manifestIds: readonly string[],
): Pick<ProvenancePredicate, 'license' | 'attribution'> {
  const manifests = [...new Set(manifestIds)].sort(compareStrings).map((id) => {
    const verified = consent.manifest(id)
    if (verified === undefined)
      throw new RoundError('MISSING_MANIFEST', `manifest ${id} of the lineage is not held here`)
    const subject = verified.manifest.credentialSubject
    return { license: subject.license, attribution: subject.attribution, items: subject.items }
  })
  return { license: licenseOfManifests(manifests), attribution: attributionOfManifests(manifests) }
}
