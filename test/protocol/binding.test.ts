// What ties a checkpoint to its inputs: plain file names in provenance, each listed contribution
// bound to the statement its contributor signed (delta included), the parent bound by id and model
// digest. Tables of one broken rule per row; every other field is the valid document's.
import { PROVENANCE_PREDICATE_TYPE } from '../../protocol/constants.ts'
import { describe, expect, it } from 'vitest'
import {
  checkListedContribution,
  checkParent,
  claimOf,
  verifyListedStatement,
  type ParentClaim,
} from '../../protocol/binding.ts'
import {
  createContribution,
  readContributionStatement,
  verifyContribution,
} from '../../protocol/contribution.ts'
import type { DsseEnvelope } from '../../protocol/dsse.ts'
import { peerIdString } from '../../protocol/keys.ts'
import {
  createProvenance,
  readProvenanceStatement,
  verifyProvenance,
  type ProvenancePredicate,
} from '../../protocol/provenance.ts'
import { isPlainFileName } from '../../protocol/schemas.ts'
import { signStatement } from '../../protocol/statement.ts'
import { expectCode } from './expect-code.ts'
import {
  digestOf,
  makeCharter,
  makeContribution,
  makeProvenance,
  nodeKey,
  outsider,
  publisherA,
  publisherB,
} from './fixtures.ts'
import { summarizeExclusions } from '../../protocol/exclusions.ts'

const statementBytes = (envelope: DsseEnvelope) => new Uint8Array(Buffer.from(envelope.payload, 'base64'))
const publishers = [peerIdString(publisherA.publicKey), peerIdString(publisherB.publicKey)]
const { coopId: coop } = makeCharter()

describe('checkpoint file names are plain names', () => {
  const refused: [string, string][] = [
    ['parent traversal', '../../etc/passwd'],
    ['parent directory', '..'],
    ['current directory', '.'],
    ['absolute path', '/etc/passwd'],
    ['separator', 'checkpoints/model.safetensors'],
    ['backslash separator', '..\\..\\model.safetensors'],
    ['drive letter', 'C:model.safetensors'],
    ['hidden file', '.model.safetensors'],
    ['leading dash (an option to tools)', '-rf'],
    ['NUL byte', 'model.safetensors\u0000.txt'],
    ['newline', 'model\n.safetensors'],
    ['right-to-left override', 'model\u202esrotnesfas.json'],
    ['non-ASCII lookalike', 'mоdel.safetensors'],
    ['space', 'model .safetensors'],
    ['longer than 128 characters', `${'m'.repeat(125)}.bin`],
    ['empty', ''],
  ]
  const accepted = [
    'model.safetensors',
    'momentum.safetensors',
    'config.json',
    'samples_r1-2.png',
    'a..b',
    `${'m'.repeat(124)}.bin`,
  ]

  it.each(refused)('refuses a %s', (_why, name) => {
    expect(isPlainFileName(name)).toBe(false)
    // A publisher that signs such a name anyway: every verifier refuses the provenance.
    const envelope = signStatement(
      {
        _type: 'https://in-toto.io/Statement/v1',
        subject: [{ name, digest: { sha256: digestOf('file').slice(7) } }],
        predicateType: PROVENANCE_PREDICATE_TYPE,
        predicate: genesisPredicate(),
      },
      [publisherA, publisherB],
    )
    expectCode(() => verifyProvenance(envelope, { publishers, threshold: 2 }), 'SCHEMA')
    expectCode(() => readProvenanceStatement(statementBytes(envelope)), 'SCHEMA')
    // and our own signer never produces one.
    expectCode(
      () => createProvenance({ ...genesisPredicate(), files: { [name]: digestOf('file') } }, [publisherA]),
      'SCHEMA',
    )
  })

  it.each(accepted)('accepts %s', (name) => {
    expect(isPlainFileName(name)).toBe(true)
    const envelope = createProvenance({ ...genesisPredicate(), files: { [name]: digestOf('file') } }, [
      publisherA,
      publisherB,
    ])
    expect([...verifyProvenance(envelope, { publishers, threshold: 2 }).files.keys()]).toEqual([name])
  })
})

function genesisPredicate(): ProvenancePredicate {
  return {
    coop,
    round: 0,
    phase: 'unet',
    parent: null,
    contributions: [],
    manifests: [],
    exclusions: summarizeExclusions({ revocations: [], expiredManifests: [], items: [] }).summary,
    components: [],
    license: 'CC-BY-4.0',
    attribution: [],
  }
}

describe('each listed contribution is exactly what its contributor signed', () => {
  const envelope = makeContribution(coop)
  const contribution = verifyContribution(envelope)
  // The fixture provenance, with the parent the fixture contribution was trained from.
  const fixture = verifyProvenance(makeProvenance(coop, contribution.digest), { publishers, threshold: 2 })
  const provenance = verifyProvenance(
    createProvenance(
      {
        ...fixture.predicate,
        parent: { checkpoint: digestOf('base model'), provenance: contribution.predicate.baseCheckpoint },
        files: Object.fromEntries(fixture.files),
      },
      [publisherA, publisherB],
    ),
    { publishers, threshold: 2 },
  )
  const entry = provenance.predicate.contributions[0]!
  const bytes = statementBytes(envelope)

  it('accepts the honest pairing, from the envelope and from the statement bytes alone', () => {
    expect(() => checkListedContribution(provenance.predicate, entry, claimOf(contribution))).not.toThrow()
    expect(verifyListedStatement(provenance.predicate, entry, bytes).samples).toBe(3200)
    expect(readContributionStatement(bytes)).toMatchObject({
      digest: contribution.digest,
      delta: contribution.delta,
    })
  })

  const entryRows: [string, Partial<typeof entry>][] = [
    ['a delta the contributor never signed', { delta: digestOf('another delta') }],
    ['another statement digest', { statement: digestOf('another statement') }],
    ['fewer manifests than signed', { manifests: [entry.manifests[0]!] }],
    ['a manifest it never declared', { manifests: [...entry.manifests.slice(0, 1), digestOf('m9')].sort() }],
  ]
  it.each(entryRows)('refuses %s (CONTRIBUTION_MISMATCH)', (_why, change) => {
    const forged = { ...entry, ...change }
    expectCode(
      () => checkListedContribution(provenance.predicate, forged, claimOf(contribution)),
      'CONTRIBUTION_MISMATCH',
    )
    expectCode(() => verifyListedStatement(provenance.predicate, forged, bytes), 'CONTRIBUTION_MISMATCH')
  })

  it('refuses another contributor when the signature is at hand; statement bytes alone cannot say who signed', () => {
    const forged = { ...entry, contributor: peerIdString(outsider.publicKey) }
    expectCode(
      () => checkListedContribution(provenance.predicate, forged, claimOf(contribution)),
      'CONTRIBUTION_MISMATCH',
    )
    // The limit THREAT-MODEL.md states: without the envelope, the publisher's signature vouches for the contributor.
    expect(() => verifyListedStatement(provenance.predicate, forged, bytes)).not.toThrow()
  })

  const provenanceRows: [string, Partial<ProvenancePredicate>][] = [
    ['another coop', { coop: digestOf('other coop') }],
    ['another round', { round: 4 }],
    ['another phase', { phase: 'autoencoder' }],
    [
      'another parent (the statement was trained from another base)',
      { parent: { checkpoint: digestOf('base'), provenance: digestOf('other parent') } },
    ],
    ['no parent at all', { parent: null }],
  ]
  it.each(provenanceRows)('refuses a statement for %s (CONTRIBUTION_MISMATCH)', (_why, change) => {
    const predicate = { ...provenance.predicate, ...change }
    expectCode(
      () => checkListedContribution(predicate, entry, claimOf(contribution)),
      'CONTRIBUTION_MISMATCH',
    )
    expectCode(() => verifyListedStatement(predicate, entry, bytes), 'CONTRIBUTION_MISMATCH')
  })

  it('refuses statement bytes that are not a contribution statement', () => {
    expectCode(
      () => verifyListedStatement(provenance.predicate, entry, new TextEncoder().encode('{}')),
      'UNKNOWN_TYPE',
    )
    expectCode(
      () => verifyListedStatement(provenance.predicate, entry, new Uint8Array([0xff])),
      'INVALID_JSON',
    )
    // The statement of a contribution by another node, re-listed under this entry's digest.
    const other = createContribution({ ...contribution.predicate, delta: digestOf('delta bytes') }, outsider)
    expectCode(
      () => checkListedContribution(provenance.predicate, entry, claimOf(verifyContribution(other))),
      'CONTRIBUTION_MISMATCH',
    )
    expect(peerIdString(nodeKey.publicKey)).toBe(entry.contributor)
  })
})

describe('the parent is the checkpoint the child names', () => {
  const parentEnvelope = createProvenance(
    {
      ...genesisPredicate(),
      round: 2,
      files: {
        'model.safetensors': digestOf('parent model'),
        'momentum.safetensors': digestOf('parent momentum'),
      },
    },
    [publisherA, publisherB],
  )
  const parentVerified = verifyProvenance(parentEnvelope, { publishers, threshold: 2 })
  const parent: ParentClaim = parentVerified
  const child: ProvenancePredicate = {
    ...genesisPredicate(),
    round: 3,
    parent: { checkpoint: digestOf('parent model'), provenance: parentVerified.digest },
  }

  it('accepts the parent it names, from the envelope and from the statement bytes alone', () => {
    expect(() => checkParent(child, parent)).not.toThrow()
    expect(() => checkParent(child, readProvenanceStatement(statementBytes(parentEnvelope)))).not.toThrow()
  })

  const rows: [string, ProvenancePredicate, ParentClaim][] = [
    ['a genesis child', { ...child, parent: null }, parent],
    ['another parent id', { ...child, parent: { ...child.parent!, provenance: digestOf('x') } }, parent],
    [
      'another parent model digest',
      { ...child, parent: { ...child.parent!, checkpoint: digestOf('x') } },
      parent,
    ],
    [
      'a parent from another phase',
      child,
      { ...parent, predicate: { ...parent.predicate, phase: 'autoencoder' } },
    ],
    [
      'a parent from another coop',
      child,
      { ...parent, predicate: { ...parent.predicate, coop: digestOf('c') } },
    ],
    ['a parent two rounds back', { ...child, round: 4 }, parent],
    ['a parent whose model file is missing', child, { ...parent, files: new Map() }],
  ]
  it.each(rows)('refuses %s (PARENT_MISMATCH)', (_why, childPredicate, parentClaim) => {
    expectCode(() => checkParent(childPredicate, parentClaim), 'PARENT_MISMATCH')
  })
})
