// The gossip message decoder: the real chain validators of the three topics
// (node/validation/: size -> decode -> schema -> signature, messages.ts's wire form), with no
// state-dependent semantics beyond an empty consent book. Inputs: arbitrary bytes behind each kind
// byte, byte mutations of the signed test vectors, and structural JSON mutations of them
// re-encoded canonically (which pass the cheap stages and reach the signature). Typed errors:
// GossipValidationError, and never INTERNAL (the code our own bugs get). Bound: the message size.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import fc from 'fast-check'
import { verifyCharter } from '../../../protocol/charter.ts'
import { verifyContribution } from '../../../protocol/contribution.ts'
import { canonicalBytes } from '../../../protocol/jcs.ts'
import { verifyManifest } from '../../../protocol/manifest.ts'
import { GossipValidationError } from '../../../node/p2p/gossip-errors.ts'
import type { TopicName } from '../../../node/p2p/topics.ts'
import { createConsentValidator } from '../../../node/validation/consent.ts'
import { GOSSIP_KINDS, type GossipKind } from '../../../node/validation/messages.ts'
import {
  createCheckpointValidator,
  createContributionValidator,
} from '../../../node/validation/statements.ts'
import { concat, type FuzzTarget, mutatedJson, mutations, typedOutcome, UntypedError } from '../harness.ts'

const vectors = join(import.meta.dirname, '..', '..', 'vectors')
const vector = (file: string) => JSON.parse(readFileSync(join(vectors, file), 'utf8'))
const charter = verifyCharter(readFileSync(join(vectors, 'charter.valid.json')))
/** Inside every vector's validity window. */
const NOW = new Date('2026-06-15T12:00:00Z')

const DOCUMENTS: Record<GossipKind, object> = {
  manifest: vector('manifest.valid.json'),
  revocation: vector('revocation.valid.json'),
  contribution: vector('contribution.valid.json'),
  checkpoint: vector('provenance.valid.json'),
}

const validators = {
  consent: createConsentValidator(
    {
      acceptedLicenses: charter.charter.acceptedLicenses,
      admission: charter.charter.admission,
      intendedUse: charter.charter.intendedUse,
      now: () => NOW,
    },
    // A node for which every well-formed revocation applies (its manifest held, issuer and items
    // checked elsewhere): the valid vector is accepted and its mutations reach every stage.
    {
      revocationStatus: () => ({ kind: 'applies' }),
      holdRevocation: () => 'held',
      fullyRevoked: () => false,
    },
  ),
  contributions: createContributionValidator({
    coopId: charter.coopId,
    admission: charter.charter.admission,
  }),
  checkpoints: createCheckpointValidator({
    coopId: charter.coopId,
    publishers: charter.charter.publishers,
    threshold: charter.charter.threshold,
  }),
} satisfies Partial<Record<TopicName, unknown>>

type Topic = keyof typeof validators

export interface GossipFuzzInput {
  topic: Topic
  from: string
  data: Uint8Array
}

const KINDS = Object.keys(GOSSIP_KINDS) as GossipKind[]
const topicOf = (kind: GossipKind) => GOSSIP_KINDS[kind].topic as Topic
const tagged = (kind: GossipKind, body: Uint8Array) => concat(Uint8Array.of(GOSSIP_KINDS[kind].tag), body)
/** The author a valid message of each kind has (custodian, contributor, publisher): mutations then reach the deepest checks. */
const AUTHOR_OF: Record<GossipKind, string> = {
  manifest: verifyManifest(DOCUMENTS.manifest, { now: NOW }).custodian,
  revocation: charter.charter.publishers[0] as string,
  contribution: verifyContribution(DOCUMENTS.contribution).contributor,
  checkpoint: charter.charter.publishers[0] as string,
}
const AUTHORS = [...new Set(Object.values(AUTHOR_OF))]

const fromArb = fc.oneof(fc.constantFrom(...AUTHORS), fc.string({ maxLength: 60 }))

const kindInputs = (kind: GossipKind): fc.Arbitrary<GossipFuzzInput> => {
  const document = DOCUMENTS[kind]
  const valid = tagged(kind, canonicalBytes(document))
  return fc.oneof(
    fc.record({ topic: fc.constant(topicOf(kind)), from: fromArb, data: mutations(fc.constant(valid)) }),
    fc.record({
      topic: fc.constant(topicOf(kind)),
      from: fromArb,
      data: mutatedJson(document as never).map((mutated) => {
        try {
          return tagged(kind, canonicalBytes(mutated))
        } catch {
          return tagged(kind, new TextEncoder().encode(JSON.stringify(mutated) ?? 'null'))
        }
      }),
    }),
  )
}

export const gossipTarget: FuzzTarget<GossipFuzzInput> = {
  name: 'gossip',
  decoder: 'topic chain validators (node/validation/: messages.ts wire form, consent.ts, statements.ts)',
  inputs: fc.oneof(
    {
      arbitrary: fc.record({
        topic: fc.constantFrom(...(Object.keys(validators) as Topic[])),
        from: fromArb,
        data: fc
          .tuple(fc.integer({ min: 0, max: 6 }), fc.uint8Array({ maxLength: 400 }))
          .map(([tag, body]) => concat(Uint8Array.of(tag), body)),
      }),
      weight: 2,
    },
    ...KINDS.map((kind) => ({ arbitrary: kindInputs(kind), weight: 2 })),
  ),
  valid: fc.constantFrom(...KINDS).map((kind) => ({
    topic: topicOf(kind),
    from: AUTHOR_OF[kind],
    data: tagged(kind, canonicalBytes(DOCUMENTS[kind])),
  })),
  async run(input) {
    try {
      await validators[input.topic]({
        from: input.from,
        propagationSource: input.from,
        topic: input.topic,
        data: input.data,
      })
      return { accepted: true }
    } catch (err) {
      // INTERNAL is how the chain refuses on an error of ours: for the fuzzer it is a bug found.
      if (err instanceof GossipValidationError && err.code === 'INTERNAL') throw new UntypedError(err)
      return typedOutcome(err, [GossipValidationError])
    }
  },
  allocationBound: (input) => 4 * input.data.byteLength,
  size: (input) => input.data.byteLength,
  // Only the unmutated vectors are valid (byte for byte); a mutation that changes nothing is one of them.
  mayAccept: (input) =>
    KINDS.some((kind) => Buffer.from(input.data).equals(tagged(kind, canonicalBytes(DOCUMENTS[kind])))),
}
