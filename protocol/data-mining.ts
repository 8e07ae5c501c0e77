// Opt-out signals a file carries in its own metadata, and the rule that turns them into a
// verdict for generative training. Pure: the reader that extracts them from image bytes is
// trainer/embedded-metadata.ts. Two vocabularies:
//
// - PLUS Data Mining (IPTC Photo Metadata Standard 2023.1, property "Data Mining",
//   XMP `plus:DataMining`, namespace http://ns.useplus.org/ldf/xmp/1.0/, values from the closed
//   PLUS vocabulary http://ns.useplus.org/ldf/vocab/DMI-*). It has no IPTC IIM (APP13) form.
// - CAWG training-and-data-mining entries (`cawg.ai_generative_training`, `cawg.ai_training`,
//   `cawg.data_mining`, `cawg.ai_inference`; each allowed | notAllowed | constrained), here read
//   only where a file states them as XMP properties (see docs/PROTOCOL.md §4.5).
//
// The most restrictive signal wins: one signal that forbids our use refuses the file, whatever
// a consent manifest or any other signal says. A value we cannot interpret forbids too, because
// it cannot be read as consent.

export const PLUS_XMP_NAMESPACE = 'http://ns.useplus.org/ldf/xmp/1.0/'
export const PLUS_VOCABULARY_PREFIX = 'http://ns.useplus.org/ldf/vocab/'

/** Each PLUS Data Mining value, whether it forbids generative AI training, and its meaning. */
export const PLUS_DATA_MINING_VALUES: Record<string, { forbids: boolean; meaning: string }> = {
  'DMI-UNSPECIFIED': { forbids: false, meaning: 'unspecified: no prohibition defined' },
  'DMI-ALLOWED': { forbids: false, meaning: 'allowed' },
  'DMI-PROHIBITED-AIMLTRAINING': { forbids: true, meaning: 'prohibited for AI/ML training' },
  'DMI-PROHIBITED-GENAIMLTRAINING': { forbids: true, meaning: 'prohibited for generative AI/ML training' },
  'DMI-PROHIBITED-EXCEPTSEARCHENGINEINDEXING': {
    forbids: true,
    meaning: 'prohibited except for search engine indexing',
  },
  'DMI-PROHIBITED': { forbids: true, meaning: 'prohibited' },
  // The details live in free text or another rights expression no machine here evaluates.
  'DMI-PROHIBITED-SEECONSTRAINT': { forbids: true, meaning: 'prohibited, see plus:OtherConstraints' },
  'DMI-PROHIBITED-SEEEMBEDDEDRIGHTSEXPR': {
    forbids: true,
    meaning: 'prohibited, see the embedded rights expression',
  },
  'DMI-PROHIBITED-SEELINKEDRIGHTSEXPR': {
    forbids: true,
    meaning: 'prohibited, see the linked rights expression',
  },
}

/**
 * CAWG entries and whether they govern training a generative image model: it is generative
 * training, AI training, and text-and-data mining. Inference (using the file as a model input)
 * is not what a trainer does, so `cawg.ai_inference` is recorded but decides nothing.
 */
export const CAWG_ENTRIES: Record<string, { governsTraining: boolean }> = {
  'cawg.ai_generative_training': { governsTraining: true },
  'cawg.ai_training': { governsTraining: true },
  'cawg.data_mining': { governsTraining: true },
  'cawg.ai_inference': { governsTraining: false },
}

export type EmbeddedSignalSource = 'xmp:plus:DataMining' | 'xmp:cawg' | 'xmp:unreadable'

export interface EmbeddedSignal {
  source: EmbeddedSignalSource
  /** The property that carried it: `plus:DataMining`, or the CAWG label. */
  property: string
  /** The value as written (vocabulary URI or term, or the CAWG `use`). */
  value: string
  forbids: boolean
  /** One human-readable phrase: why it forbids or permits. */
  meaning: string
}

/** Interprets one `plus:DataMining` value (a vocabulary URI, or its bare term as some tools write it). */
export function plusDataMiningSignal(value: string): EmbeddedSignal {
  const trimmed = value.trim()
  const term = trimmed.startsWith(PLUS_VOCABULARY_PREFIX)
    ? trimmed.slice(PLUS_VOCABULARY_PREFIX.length)
    : trimmed
  const known = PLUS_DATA_MINING_VALUES[term]
  return {
    source: 'xmp:plus:DataMining',
    property: 'plus:DataMining',
    value: trimmed,
    forbids: known?.forbids ?? true,
    meaning: known?.meaning ?? 'not a PLUS Data Mining vocabulary value: cannot be read as consent',
  }
}

/** Interprets one CAWG entry's `use`. `constrained` forbids: its conditions are free text. */
export function cawgSignal(label: string, use: string): EmbeddedSignal {
  const governs = CAWG_ENTRIES[label]?.governsTraining ?? false
  const known = use === 'allowed' || use === 'notAllowed' || use === 'constrained'
  const forbids = governs && use !== 'allowed'
  const meaning = !known
    ? `unknown use '${use}': cannot be read as consent`
    : use === 'allowed'
      ? 'allowed'
      : use === 'notAllowed'
        ? 'not allowed'
        : 'constrained (conditions no machine can check count as not allowed)'
  return {
    source: 'xmp:cawg',
    property: label,
    value: use,
    forbids,
    meaning: governs ? meaning : `${meaning} (inference only: does not govern training)`,
  }
}

export interface EmbeddedVerdict {
  /** True when no signal forbids generative training. */
  allowed: boolean
  /** Every signal found, in the order read. */
  signals: EmbeddedSignal[]
  /** The signals that forbid, for the refusal message. */
  refusing: EmbeddedSignal[]
}

/** The most restrictive signal wins: any forbidding signal refuses the file. */
export function embeddedVerdict(signals: readonly EmbeddedSignal[]): EmbeddedVerdict {
  const refusing = signals.filter((s) => s.forbids)
  return { allowed: refusing.length === 0, signals: [...signals], refusing }
}

/** One line for logs and CLI output: `plus:DataMining = DMI-PROHIBITED (prohibited)`. */
export function describeSignals(signals: readonly EmbeddedSignal[]): string {
  return signals.map((s) => `${s.property} = ${s.value} (${s.meaning})`).join('; ')
}
