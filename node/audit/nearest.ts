// The audit's distance maths, pure. For every training image x: its nearest sample s* (distance
// d1), and the ratio d1 / d2 where d2 is the distance from s* to the nearest *other* training
// image. A ratio far below 1 says s* is a copy of x in particular, not a generic image close to
// many (see constants.ts for the thresholds and their sources).

export interface NearestMatch {
  /** Index of the nearest sample. */
  sample: number
  /** Distance to it (normalised ℓ2 in pixel space; mean-squared-root in feature space). */
  distance: number
  /** distance / (distance from that sample to the nearest other training image); 1 when there is none. */
  ratio: number
}

/**
 * sqrt(mean((a - b)^2)) between every row of `a` (n rows) and every row of `b` (m rows), both of
 * `dims` values: an n x m matrix, float64. For pixels in [0, 1] this is Carlini et al.'s
 * normalised ℓ2 distance.
 */
export function distanceMatrix(
  a: Float32Array,
  n: number,
  b: Float32Array,
  m: number,
  dims: number,
): Float64Array {
  const out = new Float64Array(n * m)
  for (let i = 0; i < n; i++) {
    const ai = i * dims
    for (let j = 0; j < m; j++) {
      const bj = j * dims
      let sum = 0
      for (let k = 0; k < dims; k++) {
        const d = (a[ai + k] as number) - (b[bj + k] as number)
        sum += d * d
      }
      out[i * m + j] = Math.sqrt(sum / dims)
    }
  }
  return out
}

/** For each of the n training images, its nearest of the m samples and the ratio test (see the module comment). */
export function nearestMatches(distances: Float64Array, n: number, m: number): NearestMatch[] {
  // Per sample, the two smallest distances to training images and which image gives the smallest.
  const best = new Float64Array(m).fill(Infinity)
  const second = new Float64Array(m).fill(Infinity)
  const bestImage = new Int32Array(m).fill(-1)
  for (let i = 0; i < n; i++)
    for (let j = 0; j < m; j++) {
      const d = distances[i * m + j] as number
      if (d < (best[j] as number)) {
        second[j] = best[j] as number
        best[j] = d
        bestImage[j] = i
      } else if (d < (second[j] as number)) second[j] = d
    }
  const out: NearestMatch[] = []
  for (let i = 0; i < n; i++) {
    let sample = 0
    for (let j = 1; j < m; j++)
      if ((distances[i * m + j] as number) < (distances[i * m + sample] as number)) sample = j
    const distance = distances[i * m + sample] as number
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
