// The memorization audit: sample the checkpoint (class-conditional where it is), then for every
// training image find its nearest sample in pixel space and in a feature space, and flag the
// near-copies (thresholds and their sources in constants.ts). Deterministic: the same checkpoint,
// data and options give the same audit.json except for its timestamp.
import type { Logger } from 'pino'
import { merkleRoot } from '../../protocol/merkle.ts'
import { loadImageFolder } from '../../trainer/data.ts'
import { sampleImages } from '../../trainer/sample.ts'
import { nullClass } from '../../trainer/unet.ts'
import { AUDIT_L2_THRESHOLD, AUDIT_RATIO_THRESHOLD, AUDIT_SEED } from './constants.ts'
import { AuditError } from './errors.ts'
import { defaultFeatures, type FeatureExtractor } from './features.ts'
import { loadHolders } from './holders.ts'
import { nearestMatches, rowDistance } from './nearest.ts'
import type { AuditSource } from './source.ts'

export const AUDIT_REPORT_FORMAT = 'diffusion-coop-memorization-audit/1'

export interface AuditImage {
  sha256: string
  path: string
  class: string | null
  /** Nearest sample in pixel space: its index, class and normalised ℓ2 distance. */
  nearest: { sample: number; class: string | null; l2: number }
  /** Ratio test in pixel space (see constants.ts). */
  ratio: number
  /** Nearest sample in the feature space, its feature distance and ratio, and its pixel ℓ2. */
  feature: { sample: number; distance: number; ratio: number; l2: number }
  flagged: boolean
  /** did:key of the rights holder whose manifest lists the image; null when none is known. */
  holder: string | null
}

export interface AuditHolder {
  issuer: string | null
  name: string
  license: string | null
  images: number
  flagged: number
  /** The holder's worst case: the image a sample came closest to. */
  closest: { sha256: string; path: string; sample: number; l2: number; ratio: number } | null
}

export interface AuditMethod {
  sampler: { kind: 'ddim'; steps: number; guidance: number; seed: number }
  classes: string[]
  samplesPerClass: number
  samples: number
  imageSize: number
  pixelMetric: 'normalised-l2'
  features: { extractor: string; dims: number }
}

export interface AuditReport {
  format: typeof AUDIT_REPORT_FORMAT
  createdAt: string
  checkpoint: {
    kind: 'cooperative' | 'local'
    dir: string
    id: string | null
    coop: string | null
    round: number | null
    files: Record<string, string>
  }
  method: AuditMethod & { flagRule: string }
  thresholds: { l2: number; ratio: number; sources: string[] }
  summary: { images: number; flagged: number; samples: number; imagesRoot: string }
  holders: AuditHolder[]
  images: AuditImage[]
}

export interface AuditRun {
  report: AuditReport
  /** The samples as RGB bytes (samples * size * size * 3), for the HTML view. */
  samples: Uint8Array
  /** The audited images as RGB bytes, in report.images order. */
  images: Uint8Array
  size: number
}

export interface RunAuditOptions {
  source: AuditSource
  dataDir: string
  samplesPerClass: number
  consentFiles?: string[]
  /** Builds the feature extractor; defaults to defaultFeatures (the classifier where it applies, else the autoencoder's latents). */
  features?: (source: AuditSource) => FeatureExtractor | Promise<FeatureExtractor>
  now?: Date
  log?: Logger
}

const THRESHOLD_SOURCES = [
  `normalised l2 < ${AUDIT_L2_THRESHOLD}: Carlini et al., Extracting Training Data from Diffusion Models, USENIX Security 2023 (arXiv 2301.13188), section 4`,
  'nearest/second-nearest ratio < 1/3: the relative-distance test of Carlini et al. 2023 (section 5) in the form of Lowe (IJCV 2004)',
]

export async function runAudit(options: RunAuditOptions): Promise<AuditRun> {
  const { source, log } = options
  const config = source.config
  const size = config.image.size
  const loaded = await loadImageFolder({ dir: options.dataDir, size, ...(log === undefined ? {} : { log }) })
  // The same bytes twice are one image: audit each once.
  const keep: number[] = []
  const seen = new Set<string>()
  loaded.items.forEach((item, i) => {
    if (!seen.has(item.sha256)) keep.push(i)
    seen.add(item.sha256)
  })
  const dims = size * size * 3
  const dataset = {
    classes: loaded.classes,
    items: keep.map((i) => loaded.items[i]!),
    pixels: new Float32Array(keep.length * dims),
  }
  keep.forEach((from, to) =>
    dataset.pixels.set(loaded.pixels.subarray(from * dims, (from + 1) * dims), to * dims),
  )
  // The classes sampled: those of the data folder, or every class (or none) of the model.
  const modelClasses = config.classes
  let sampledClasses: (string | null)[]
  if (dataset.classes.length > 0) {
    for (const name of dataset.classes)
      if (!modelClasses.includes(name))
        throw new AuditError(
          'DATA_MISMATCH',
          `data class '${name}' is not one of the model's classes (${modelClasses.join(', ') || 'none'})`,
        )
    sampledClasses = dataset.classes
  } else sampledClasses = modelClasses.length > 0 ? modelClasses : [null]
  const labels = sampledClasses.flatMap((name) =>
    new Array<number>(options.samplesPerClass).fill(
      name === null ? nullClass(config) : modelClasses.indexOf(name),
    ),
  )
  const sampler = {
    kind: 'ddim' as const,
    steps: config.diffusion.samplingSteps,
    guidance: config.diffusion.guidance,
    seed: AUDIT_SEED,
  }
  log?.info(
    { samples: labels.length, classes: sampledClasses.length, images: dataset.items.length },
    'audit sampling',
  )
  const sampleBytes = await sampleImages({
    config,
    autoencoder: source.autoencoder,
    unet: source.unet,
    labels,
    guidance: sampler.guidance,
    steps: sampler.steps,
    seed: sampler.seed,
  })
  const m = labels.length
  const n = dataset.items.length
  const samplesSigned = new Float32Array(sampleBytes.length)
  for (let i = 0; i < sampleBytes.length; i++) samplesSigned[i] = (sampleBytes[i] as number) / 127.5 - 1
  // Pixels are in [-1, 1]: half the distance is the normalised ℓ2 over [0, 1] pixels.
  const PIXEL_SCALE = 0.5
  const pixelMatches = nearestMatches(dataset.pixels, n, samplesSigned, m, dims, PIXEL_SCALE)
  const extractor = await (options.features ?? defaultFeatures)(source)
  let featureMatches
  try {
    const imageFeatures = extractor.extract(dataset.pixels, n)
    const sampleFeatures = extractor.extract(samplesSigned, m)
    featureMatches = nearestMatches(imageFeatures, n, sampleFeatures, m, extractor.dims)
  } finally {
    extractor.dispose()
  }
  const holders = await loadHolders(
    dataset.items.map((i) => i.sha256),
    {
      ...(options.consentFiles === undefined ? {} : { consentFiles: options.consentFiles }),
      ...(source.storeDir === undefined ? {} : { storeDir: source.storeDir }),
    },
  )
  const classOf = (label: number) =>
    label >= 0 && label < modelClasses.length ? (modelClasses[label] as string) : null
  const images: AuditImage[] = dataset.items.map((item, i) => {
    const pixel = pixelMatches[i]!
    const feature = featureMatches[i]!
    const featureL2 = rowDistance(dataset.pixels, i, samplesSigned, feature.sample, dims, PIXEL_SCALE)
    const flagged =
      (pixel.distance < AUDIT_L2_THRESHOLD && pixel.ratio < AUDIT_RATIO_THRESHOLD) ||
      (featureL2 < AUDIT_L2_THRESHOLD && feature.ratio < AUDIT_RATIO_THRESHOLD)
    const holder = [...(holders.byImage.get(item.sha256) ?? [])].sort((a, b) =>
      a.issuer < b.issuer ? -1 : 1,
    )[0]
    return {
      sha256: item.sha256,
      path: item.path,
      class: item.label >= 0 ? (dataset.classes[item.label] as string) : null,
      nearest: { sample: pixel.sample, class: classOf(labels[pixel.sample] as number), l2: pixel.distance },
      ratio: pixel.ratio,
      feature: { sample: feature.sample, distance: feature.distance, ratio: feature.ratio, l2: featureL2 },
      flagged,
      holder: holder?.issuer ?? null,
    }
  })
  // Per rights holder: counts and the worst case (closest sample).
  const byHolder = new Map<string | null, AuditHolder>()
  images.forEach((image) => {
    let entry = byHolder.get(image.holder)
    if (entry === undefined) {
      const known =
        image.holder === null
          ? undefined
          : holders.byImage.get(image.sha256)?.find((h) => h.issuer === image.holder)
      entry = {
        issuer: image.holder,
        name: known?.name ?? 'no consent manifest known',
        license: known?.license ?? null,
        images: 0,
        flagged: 0,
        closest: null,
      }
      byHolder.set(image.holder, entry)
    }
    entry.images++
    if (image.flagged) entry.flagged++
    if (entry.closest === null || image.nearest.l2 < entry.closest.l2)
      entry.closest = {
        sha256: image.sha256,
        path: image.path,
        sample: image.nearest.sample,
        l2: image.nearest.l2,
        ratio: image.ratio,
      }
  })
  const method: AuditMethod = {
    sampler,
    classes: sampledClasses.filter((c): c is string => c !== null),
    samplesPerClass: options.samplesPerClass,
    samples: m,
    imageSize: size,
    pixelMetric: 'normalised-l2',
    features: { extractor: extractor.name, dims: extractor.dims },
  }
  const report: AuditReport = {
    format: AUDIT_REPORT_FORMAT,
    createdAt: `${(options.now ?? new Date()).toISOString().slice(0, 19)}Z`,
    checkpoint: {
      kind: source.kind,
      dir: source.dir,
      id: source.checkpoint,
      coop: source.coop,
      round: source.round,
      files: source.files,
    },
    method: {
      ...method,
      flagRule:
        'flagged when a sample lies within the l2 threshold of the image and passes the ratio test, with the sample found by pixel distance or by feature distance',
    },
    thresholds: { l2: AUDIT_L2_THRESHOLD, ratio: AUDIT_RATIO_THRESHOLD, sources: THRESHOLD_SOURCES },
    summary: {
      images: n,
      flagged: images.filter((i) => i.flagged).length,
      samples: m,
      imagesRoot: merkleRoot(images.map((i) => i.sha256).sort()),
    },
    holders: [...byHolder.values()].sort((a, b) => ((a.issuer ?? '') < (b.issuer ?? '') ? -1 : 1)),
    images,
  }
  const imageBytes = new Uint8Array(dataset.pixels.length)
  for (let i = 0; i < dataset.pixels.length; i++)
    imageBytes[i] = Math.round(((dataset.pixels[i] as number) + 1) * 127.5)
  log?.info({ images: n, flagged: report.summary.flagged, samples: m }, 'audit done')
  return { report, samples: sampleBytes, images: imageBytes, size }
}
