// The in-domain sample-quality metric (issue 10): one module for the simulator, the demo,
// `coop sample --score`, the benchmarks and the memorization audit. See README.md here.
export { loadQualityModel, heldOutReference, referenceOf, scoreImages } from './score.ts'
export type { QualityModel, QualityReference, QualityScore } from './score.ts'
export { scoreModel } from './generate.ts'
export type { ModelQuality, ScoreModelOptions } from './generate.ts'
export { frechetDistance, gaussianOf, precisionRecall } from './frechet.ts'
export type { Gaussian } from './frechet.ts'
export { loadTwemojiSplit, isQualityHoldout, twemojiRecords } from './twemoji.ts'
export type { LabelledImages } from './twemoji.ts'
export { bytesToPixels, resizeImages } from './resize.ts'
