// A real RoundState over LevelDB in a temp dir, and checkpoints adopted through its commit point,
// for the round component tests.
import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createCharter, type CoopCharter } from '../../../protocol/charter.ts'
import { peerIdString } from '../../../protocol/keys.ts'
import { summarizeExclusions } from '../../../protocol/exclusions.ts'
import { createProvenance, verifyProvenance, type ProvenancePredicate } from '../../../protocol/provenance.ts'
import { componentLogger } from '../../../node/log.ts'
import { RoundState } from '../../../node/round/state.ts'
import { openStore, type CoopStore } from '../../../node/store/store.ts'
import { publisherA } from '../../protocol/fixtures.ts'
import { randomDigest } from './consent.ts'

export const publisher = peerIdString(publisherA.publicKey)
const log = componentLogger('test')

/** A RoundState over its own LevelDB, for one charter (in `existing`, to reopen a store after a restart). */
export async function openState(
  charter: CoopCharter,
  existing?: string,
): Promise<{ state: RoundState; store: CoopStore; dir: string }> {
  const dir = existing ?? (await mkdtemp(join(tmpdir(), 'coop-validate-')))
  const store = await openStore(dir)
  const { envelope, coopId } = createCharter(charter, [publisherA])
  const state = new RoundState(
    { charter, coopId, charterEnvelope: envelope, peerId: publisher },
    { store, log },
  )
  return { state, store, dir }
}

/** What a test checkpoint excludes since its parent (empty lists when not given). */
export type TestExclusions = Partial<{ revocations: string[]; expiredManifests: string[]; items: string[] }>

/** A CheckpointProvenance signed by the publisher: a U-Net genesis unless `predicate` says otherwise. */
export function signProvenance(
  state: RoundState,
  predicate: Partial<ProvenancePredicate> & { files?: Record<string, string> },
  excluded: TestExclusions = {},
) {
  const exclusions = summarizeExclusions({
    revocations: excluded.revocations ?? [],
    expiredManifests: excluded.expiredManifests ?? [],
    items: excluded.items ?? [],
  })
  const envelope = createProvenance(
    {
      coop: state.coopId,
      round: 1,
      phase: 'unet',
      parent: null,
      contributions: [],
      manifests: [],
      exclusions: exclusions.summary,
      components: [],
      license: 'CC-BY-4.0',
      attribution: [],
      files: { 'model.safetensors': randomDigest() },
      ...predicate,
    },
    [publisherA],
  )
  return {
    envelope,
    verified: verifyProvenance(envelope, { publishers: [publisher], threshold: 1 }),
    exclusions: exclusions.details,
  }
}

/** Adopts a signed checkpoint through the state's commit point (its files are placeholder bytes). */
export async function adopt(
  state: RoundState,
  predicate: Partial<ProvenancePredicate>,
  excluded: TestExclusions = {},
) {
  const { envelope, verified, exclusions } = signProvenance(state, predicate, excluded)
  const bytes = new Uint8Array([1, 2, 3])
  const record = await state.adopt(
    verified,
    envelope,
    { model: bytes, momentum: bytes, config: bytes },
    'published',
    exclusions,
  )
  return { record, verified }
}
