// Payload admission (node/round/admission.ts), one row per outcome: a contribution's payload is
// decoded against its base checkpoint's layout and the charter's codec, measured against the
// trivial-delta floor, and either admitted or refused with a code, a durable record and a charge
// to the contributor who signed it. Real RoundState and LevelDB in a temp dir; the payloads are
// in the store, so no fetch is needed (the fetch path is covered end to end by
// test/node/adversary/payload-admission.test.ts).
import { rm, writeFile } from 'node:fs/promises'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { loadConfig } from '../../../configs/index.ts'
import type { CoopCharter } from '../../../protocol/charter.ts'
import { compressDelta, type Codec } from '../../../protocol/compression.ts'
import { sha256Digest } from '../../../protocol/digest.ts'
import { generateKey, peerIdString } from '../../../protocol/keys.ts'
import { encodeSafetensors, type TensorEntry } from '../../../protocol/safetensors.ts'
import { ConsentBook } from '../../../node/consent/book.ts'
import { componentLogger } from '../../../node/log.ts'
import type { GossipErrorCode } from '../../../node/p2p/gossip-errors.ts'
import { PayloadAdmission, type AdmissionResult } from '../../../node/round/admission.ts'
import { Fetcher } from '../../../node/round/fetcher.ts'
import { deltaRmsFloor } from '../../../node/round/limits.ts'
import type { ContributionRecord } from '../../../node/round/records.ts'
import type { RoundState } from '../../../node/round/state.ts'
import { encodeTensors, type NamedTensor } from '../../../node/round/tensors.ts'
import type { CoopStore } from '../../../node/store/store.ts'
import { charterContent } from '../../protocol/fixtures.ts'
import { randomDigest } from '../helpers/consent.ts'
import { openState, publisher, signProvenance } from '../helpers/round.ts'

const log = componentLogger('test')
const charter = charterContent({
  threshold: 1,
  model: loadConfig('tiny') as unknown as CoopCharter['model'],
  phases: { autoencoder: { mode: 'cooperative', rounds: 1 }, unet: { rounds: 3 } },
})
const INT8: Codec = { kind: 'int8' }
const floor = deltaRmsFloor(charter, 'unet')
const trainer = peerIdString(generateKey().publicKey)
const other = peerIdString(generateKey().publicKey)

/** The base checkpoint's model: what every delta of round 2 must fit. */
const MODEL: NamedTensor[] = [
  { name: 'a.weight', shape: [8, 16], data: new Float32Array(128) },
  { name: 'b.bias', shape: [16], data: new Float32Array(16) },
]

/** A delta of the model's layout (or `names`/`shapes` in its place) with values of RMS about `rms`. */
function delta(rms: number, options: { names?: string[]; shapes?: number[][] } = {}): NamedTensor[] {
  return MODEL.map((t, i) => {
    const shape = options.shapes?.[i] ?? t.shape
    const n = shape.reduce((a, b) => a * b, 1)
    return {
      name: options.names?.[i] ?? t.name,
      shape,
      data: Float32Array.from({ length: n }, (_, j) => rms * Math.SQRT2 * Math.sin(j + i + 0.5)),
    }
  })
}

const payload = (tensors: NamedTensor[], codec: Codec = INT8) =>
  encodeSafetensors(compressDelta(tensors, codec).entries)

/** Top-k entries with the model's names, each declaring 2^40 elements: 8 MiB in all. */
function hugeShape(): Uint8Array {
  const k = (8 * 1024 * 1024) / 8 / MODEL.length
  return encodeSafetensors(
    MODEL.flatMap((t): TensorEntry[] => [
      { name: `${t.name}.idx`, dtype: 'I32', shape: [k], data: Int32Array.from({ length: k }, (_, i) => i) },
      { name: `${t.name}.val`, dtype: 'F32', shape: [k], data: new Float32Array(k).fill(1e-3) },
      { name: `${t.name}.shape`, dtype: 'I32', shape: [2], data: Int32Array.from([1 << 20, 1 << 20]) },
    ]),
  )
}

interface Row {
  bytes: () => Uint8Array
  /** The signed digest names these bytes, but the stored blob file holds others (a damaged disk). */
  storedBytes?: () => Uint8Array
  contributor?: string
  /** Round 2's base is adopted unless this is false. */
  baseAdopted?: boolean
}

type Expected = [AdmissionResult, GossipErrorCode | null, 'charged' | 'not charged']

describe('PayloadAdmission', () => {
  let state: RoundState
  let store: CoopStore
  let dir: string
  let admission: PayloadAdmission
  let penalties: { peer: string; code: GossipErrorCode; points: number | undefined }[]
  let baseId: string

  beforeEach(async () => {
    ;({ state, store, dir } = await openState(charter))
    await state.load()
    penalties = []
    const host = {
      connectedPeers: () => [],
      fetchBlob: () => Promise.reject(new Error('no network in this test')),
      penalize: (peer: string, code: GossipErrorCode, points?: number) => {
        penalties.push({ peer, code, points })
      },
    }
    const consent = new ConsentBook(
      { peerId: publisher, acceptedLicenses: ['CC-BY-4.0'], intendedUse: charter.intendedUse },
      { store, log },
    )
    const fetcher = new Fetcher({ state, host, consent, log })
    fetcher.start()
    admission = new PayloadAdmission({ state, fetcher, host, log })
    const { envelope, verified } = signProvenance(state, { round: 1, phase: 'unet' })
    const model = encodeTensors(MODEL)
    baseId = verified.digest
    await state.adopt(verified, envelope, { model, momentum: model, config: new Uint8Array([1]) }, 'genesis')
  })

  afterEach(async () => {
    await store.close()
    await rm(dir, { recursive: true, force: true })
  })

  async function contribution(row: Row): Promise<ContributionRecord> {
    const bytes = row.bytes()
    const digest = sha256Digest(bytes)
    if (row.storedBytes === undefined) await store.putBlob(bytes, digest)
    else await writeFile(store.blobPath(digest), row.storedBytes())
    return {
      id: randomDigest(),
      contributor: row.contributor ?? trainer,
      delta: digest,
      // Only the fields admission reads; validation checked the rest before a record exists.
      predicate: {
        round: 2,
        phase: 'unet',
        baseCheckpoint: row.baseAdopted === false ? randomDigest() : baseId,
      } as ContributionRecord['predicate'],
      envelope: randomDigest(),
      acceptedAt: new Date().toISOString(),
    }
  }

  const rows: [string, Row, Expected][] = [
    ['an honest int8 delta', { bytes: () => payload(delta(1e-3)) }, ['admitted', null, 'not charged']],
    [
      'a delta just above the floor',
      { bytes: () => payload(delta(floor * 1.5)) },
      ['admitted', null, 'not charged'],
    ],
    [
      'another model’s tensor names',
      { bytes: () => payload(delta(1e-3, { names: ['evil.a', 'evil.b'] })) },
      ['refused', 'BAD_PAYLOAD', 'charged'],
    ],
    [
      'the model’s names with other shapes',
      { bytes: () => payload(delta(1e-3, { shapes: [[16, 8], [16]] })) },
      ['refused', 'BAD_PAYLOAD', 'charged'],
    ],
    [
      'a tensor missing',
      { bytes: () => payload(delta(1e-3).slice(1)) },
      ['refused', 'BAD_PAYLOAD', 'charged'],
    ],
    [
      'another codec than the charter’s (top-k for int8)',
      { bytes: () => payload(delta(1e-3), { kind: 'topk', fraction: 0.1 }) },
      ['refused', 'BAD_PAYLOAD', 'charged'],
    ],
    [
      'a non-finite int8 scale (NaN)',
      {
        bytes: () =>
          encodeSafetensors(
            delta(1e-3).flatMap((t): TensorEntry[] => [
              { name: t.name, dtype: 'I8', shape: t.shape, data: new Int8Array(t.data.length).fill(1) },
              { name: `${t.name}.scale`, dtype: 'F32', shape: [1], data: Float32Array.from([NaN]) },
            ]),
          ),
      },
      ['refused', 'BAD_PAYLOAD', 'charged'],
    ],
    [
      'a huge-shape top-k payload of 8 MiB (bounded before it is parsed)',
      { bytes: hugeShape },
      ['refused', 'TOO_LARGE', 'charged'],
    ],
    [
      'a damaged stored blob (quarantined by the store, fetched again: never the contributor’s fault)',
      { bytes: () => payload(delta(1e-3)), storedBytes: () => payload(delta(2e-3)) },
      ['pending', null, 'not charged'],
    ],
    ['an all-zero delta', { bytes: () => payload(delta(0)) }, ['refused', 'TRIVIAL_DELTA', 'charged']],
    [
      'a near-zero delta (a tenth of the floor)',
      { bytes: () => payload(delta(floor / 10)) },
      ['refused', 'TRIVIAL_DELTA', 'charged'],
    ],
    [
      'this node’s own refused payload (never a penalty against itself)',
      { bytes: () => payload(delta(0)), contributor: publisher },
      ['refused', 'TRIVIAL_DELTA', 'not charged'],
    ],
    [
      'a base this node has not adopted: asked again later',
      { bytes: () => payload(delta(1e-3)), baseAdopted: false },
      ['pending', null, 'not charged'],
    ],
  ]

  it.each(rows)('%s', async (_what, row, [result, code, charged]) => {
    const record = await contribution(row)
    expect(await admission.admit(record)).toBe(result)
    expect(state.admission(record.delta)).toBe(result)
    expect(state.evidence.refusal(record.id)?.code ?? null).toBe(code)
    expect(penalties.map((p) => [p.peer, p.code])).toEqual(
      charged === 'charged' ? [[record.contributor, code]] : [],
    )
  })

  it('refuses the same bytes at once when another identity names them, charging that identity too', async () => {
    const first = await contribution({ bytes: () => payload(delta(1e-3, { names: ['x', 'y'] })) })
    expect(await admission.admit(first)).toBe('refused')
    const second = { ...first, id: randomDigest(), contributor: other }
    expect(await admission.admit(second)).toBe('refused')
    expect(state.evidence.refusal(second.id)?.code).toBe('BAD_PAYLOAD')
    expect(penalties.map((p) => p.peer)).toEqual([trainer, other])
    // A third look at either statement costs nothing and charges no one again.
    expect(await admission.admit(second)).toBe('refused')
    expect(penalties).toHaveLength(2)
  })

  it('keeps a refusal across a restart: the payload never counts again', async () => {
    const record = await contribution({ bytes: () => payload(delta(0)) })
    expect(await admission.admit(record)).toBe('refused')
    await store.close()
    ;({ state, store } = await openState(charter, dir))
    await state.load()
    expect(state.admission(record.delta)).toBe('refused')
    expect(state.evidence.refusal(record.id)).toMatchObject({ code: 'TRIVIAL_DELTA', contributor: trainer })
  })
})
