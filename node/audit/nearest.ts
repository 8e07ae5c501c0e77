// The audit's distance maths, pure. For every training image x: its nearest sample s* (distance
// d1), and the ratio d1 / d2 where d2 is the distance from s* to the nearest *other* training
// image. A ratio far below 1 says s* is a copy of x in particular, not a generic image close to
// many (see constants.ts for the thresholds and their sources). Distances are computed row by
// row, never held as an n x m matrix, so memory stays O(n + m) whatever the data size.

export interface NearestMatch {
  /** Index of the nearest sample. */
  sample: number
  /** Distance to it: sqrt(mean squared difference), times `scale`. */
  distance: number
  /** distance / (distance from that sample to the nearest other training image); 1 when there is none. */
  ratio: number
}

/**
 * sqrt(mean((a_i - b_j)^2)) * scale between row i of `a` and row j of `b`, rows of `dims` values.
 * With pixels in [-1, 1] and scale 1/2 this is Carlini et al.'s normalised ℓ2 over [0, 1] pixels.
 */
export function rowDistance(
  a: Float32Array,
  i: number,
  b: Float32Array,
  j: number,
  dims: number,
  scale = 1,
): number {
  const ai = i * dims
  const bj = j * dims
  let sum = 0
  for (let k = 0; k < dims; k++) {
    const d = (a[ai + k] as number) - (b[bj + k] as number)
    sum += d * d
  }
  return Math.sqrt(sum / dims) * scale
}

/** For each of the n training images (rows of `images`), its nearest of the m samples and the ratio test. */
export function nearestMatches(
  images: Float32Array,
  n: number,
  samples: Float32Array,
  m: number,
  dims: number,
  scale = 1,
): NearestMatch[] {
  // Per sample, the two smallest distances to training images and which image gives the smallest.
  const best = new Float64Array(m).fill(Infinity)
  const second = new Float64Array(m).fill(Infinity)
  const bestImage = new Int32Array(m).fill(-1)
  const nearestSample = new Int32Array(n)
  const nearestDistance = new Float64Array(n)
  for (let i = 0; i < n; i++) {
    let sample = 0
    let distance = Infinity
    for (let j = 0; j < m; j++) {
      const d = rowDistance(images, i, samples, j, dims, scale)
      if (d < distance) {
        distance = d
        sample = j
      }
      if (d < (best[j] as number)) {
        second[j] = best[j] as number
        best[j] = d
        bestImage[j] = i
      } else if (d < (second[j] as number)) second[j] = d
    }
    nearestSample[i] = sample
    nearestDistance[i] = distance
  }
  const out: NearestMatch[] = []
  for (let i = 0; i < n; i++) {
    const sample = nearestSample[i] as number
    const distance = nearestDistance[i] as number
    // The nearest other image to this sample: its second-best if image i is its best, else its best.
    const other = bestImage[sample] === i ? (second[sample] as number) : (best[sample] as number)
    const ratio = Number.isFinite(other)
      ? other === 0
        ? distance === 0
          ? 1
          : Infinity
        : distance / other
      : 1
    out.push({ sample, distance, ratio: Math.min(ratio, 1e9) })
  }
  return out
}
