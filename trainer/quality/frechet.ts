// The statistics of the quality metric, on feature vectors (rows of a float32 matrix): Gaussian
// moments, the Fréchet distance between two Gaussians (Dowson & Landau 1982; "FID", Heusel et
// al. 2017) and k-NN precision/recall (Kynkäänniemi et al. 2019). Pure float64 JavaScript, no
// tfjs, no randomness: the same features give the same numbers on every machine.
//
// The matrix square root goes through symmetric eigendecompositions only (ml-matrix's
// EigenvalueDecomposition: JAMA's tred2/tql2), using
//   Tr((Σ1 Σ2)^½) = Tr((Σ1^½ Σ2 Σ1^½)^½),
// whose argument is symmetric positive semi-definite, so no complex eigenvalues appear (scipy's
// sqrtm on the non-symmetric Σ1Σ2, as pytorch-fid uses, can return tiny imaginary parts).
import { EigenvalueDecomposition, Matrix } from 'ml-matrix'

export interface Gaussian {
  /** Feature dimension. */
  dim: number
  /** Samples the moments were estimated from. */
  count: number
  mean: Float64Array
  /** Row-major dim x dim, unbiased (divides by count - 1). */
  covariance: Float64Array
}

function checkRows(features: Float32Array | Float64Array, dim: number): number {
  if (!Number.isInteger(dim) || dim < 1)
    throw new RangeError(`feature dimension must be positive, got ${dim}`)
  if (features.length % dim !== 0)
    throw new RangeError(`${features.length} values are not rows of ${dim} features`)
  return features.length / dim
}

/**
 * Mean and covariance of the rows of `features` (count x dim). `weights` (one per row, >= 0)
 * gives a weighted estimate, e.g. every class counting equally whatever its size; the unbiased
 * correction then uses the effective sample size (Σw)² / Σw².
 */
export function gaussianOf(
  features: Float32Array | Float64Array,
  dim: number,
  weights?: readonly number[],
): Gaussian {
  const count = checkRows(features, dim)
  if (count < 2) throw new RangeError(`a covariance needs at least 2 samples, got ${count}`)
  if (weights !== undefined && weights.length !== count)
    throw new RangeError(`${weights.length} weights for ${count} rows`)
  const w = (row: number) => (weights === undefined ? 1 : (weights[row] as number))
  let total = 0
  let totalSquared = 0
  for (let row = 0; row < count; row++) {
    const x = w(row)
    if (!(Number.isFinite(x) && x >= 0)) throw new RangeError(`weight ${row} must be finite and >= 0`)
    total += x
    totalSquared += x * x
  }
  if (!(total > 0)) throw new RangeError('weights sum to zero')
  const mean = new Float64Array(dim)
  for (let row = 0; row < count; row++) {
    const x = w(row) / total
    for (let j = 0; j < dim; j++) mean[j] = (mean[j] as number) + x * (features[row * dim + j] as number)
  }
  const covariance = new Float64Array(dim * dim)
  const centred = new Float64Array(dim)
  for (let row = 0; row < count; row++) {
    const x = w(row)
    if (x === 0) continue
    for (let j = 0; j < dim; j++) centred[j] = (features[row * dim + j] as number) - (mean[j] as number)
    for (let a = 0; a < dim; a++) {
      const ca = x * (centred[a] as number)
      for (let b = a; b < dim; b++)
        covariance[a * dim + b] = (covariance[a * dim + b] as number) + ca * (centred[b] as number)
    }
  }
  // Unbiased: Σw - Σw²/Σw (= n - 1 for unit weights).
  const denominator = total - totalSquared / total
  if (!(denominator > 0)) throw new RangeError('weights leave fewer than 2 effective samples')
  for (let a = 0; a < dim; a++)
    for (let b = a; b < dim; b++) {
      const value = (covariance[a * dim + b] as number) / denominator
      covariance[a * dim + b] = value
      covariance[b * dim + a] = value
    }
  for (let i = 0; i < features.length; i++)
    if (!Number.isFinite(features[i] as number)) throw new RangeError(`feature ${i} is not finite`)
  return { dim, count, mean, covariance }
}

function toMatrix(values: Float64Array, dim: number): Matrix {
  const m = new Matrix(dim, dim)
  for (let a = 0; a < dim; a++) for (let b = 0; b < dim; b++) m.set(a, b, values[a * dim + b] as number)
  return m
}

/** (M + Mᵀ)/2: removes the rounding asymmetry before a symmetric eigendecomposition. */
function symmetrize(m: Matrix): Matrix {
  const n = m.rows
  const out = new Matrix(n, n)
  for (let a = 0; a < n; a++) for (let b = 0; b < n; b++) out.set(a, b, (m.get(a, b) + m.get(b, a)) / 2)
  return out
}

/** Eigenvalues and eigenvectors (columns) of a symmetric matrix. */
export function symmetricEigen(m: Matrix): { values: number[]; vectors: Matrix } {
  const decomposition = new EigenvalueDecomposition(symmetrize(m), { assumeSymmetric: true })
  return { values: decomposition.realEigenvalues, vectors: decomposition.eigenvectorMatrix }
}

/** The PSD square root of a symmetric PSD matrix (negative eigenvalues from rounding clamp to 0). */
export function sqrtPsd(m: Matrix): Matrix {
  const { values, vectors } = symmetricEigen(m)
  const n = m.rows
  const scaled = new Matrix(n, n)
  for (let a = 0; a < n; a++)
    for (let k = 0; k < n; k++)
      scaled.set(a, k, vectors.get(a, k) * Math.sqrt(Math.max(0, values[k] as number)))
  return scaled.mmul(vectors.transpose())
}

/** Tr((Σ1 Σ2)^½) for symmetric PSD Σ1, Σ2. */
export function traceSqrtProduct(a: Matrix, b: Matrix): number {
  const rootA = sqrtPsd(a)
  const { values } = symmetricEigen(rootA.mmul(b).mmul(rootA))
  let trace = 0
  for (const value of values) trace += Math.sqrt(Math.max(0, value))
  return trace
}

/**
 * Fréchet distance between two Gaussians: |μ1 − μ2|² + Tr(Σ1 + Σ2 − 2 (Σ1 Σ2)^½). Zero for equal
 * moments, symmetric, non-negative (clamped at 0 against rounding).
 */
export function frechetDistance(x: Gaussian, y: Gaussian): number {
  if (x.dim !== y.dim) throw new RangeError(`feature dimensions differ: ${x.dim} vs ${y.dim}`)
  const dim = x.dim
  let meanTerm = 0
  for (let j = 0; j < dim; j++) {
    const d = (x.mean[j] as number) - (y.mean[j] as number)
    meanTerm += d * d
  }
  let traces = 0
  for (let j = 0; j < dim; j++)
    traces += (x.covariance[j * dim + j] as number) + (y.covariance[j * dim + j] as number)
  const cross = traceSqrtProduct(toMatrix(x.covariance, dim), toMatrix(y.covariance, dim))
  return Math.max(0, meanTerm + traces - 2 * cross)
}

function squaredDistances(
  a: Float32Array,
  aCount: number,
  b: Float32Array,
  bCount: number,
  dim: number,
): Float64Array {
  const out = new Float64Array(aCount * bCount)
  for (let i = 0; i < aCount; i++)
    for (let j = 0; j < bCount; j++) {
      let sum = 0
      for (let k = 0; k < dim; k++) {
        const d = (a[i * dim + k] as number) - (b[j * dim + k] as number)
        sum += d * d
      }
      out[i * bCount + j] = sum
    }
  return out
}

/** Squared distance of each row to its k-th nearest other row (the radius of its k-NN ball). */
function kthNeighbourRadii(features: Float32Array, count: number, dim: number, k: number): Float64Array {
  const distances = squaredDistances(features, count, features, count, dim)
  const radii = new Float64Array(count)
  const row = new Float64Array(count - 1)
  for (let i = 0; i < count; i++) {
    let n = 0
    for (let j = 0; j < count; j++) if (j !== i) row[n++] = distances[i * count + j] as number
    row.sort()
    radii[i] = row[k - 1] as number
  }
  return radii
}

/** Share of rows of `queries` inside at least one k-NN ball of the `support` rows. */
function coverage(
  queries: Float32Array,
  queryCount: number,
  support: Float32Array,
  supportCount: number,
  radii: Float64Array,
  dim: number,
): number {
  const distances = squaredDistances(queries, queryCount, support, supportCount, dim)
  let inside = 0
  for (let i = 0; i < queryCount; i++) {
    for (let j = 0; j < supportCount; j++)
      if ((distances[i * supportCount + j] as number) <= (radii[j] as number)) {
        inside++
        break
      }
  }
  return inside / queryCount
}

/**
 * Improved precision and recall (Kynkäänniemi et al. 2019): precision is the share of generated
 * samples inside the real manifold (the union of each real sample's k-NN ball), recall the share
 * of real samples inside the generated manifold. k = 3 as in the paper.
 */
export function precisionRecall(
  real: Float32Array,
  generated: Float32Array,
  dim: number,
  k = 3,
): { precision: number; recall: number } {
  const realCount = checkRows(real, dim)
  const generatedCount = checkRows(generated, dim)
  if (realCount <= k || generatedCount <= k)
    throw new RangeError(`precision/recall with k=${k} needs more than ${k} samples on each side`)
  const realRadii = kthNeighbourRadii(real, realCount, dim, k)
  const generatedRadii = kthNeighbourRadii(generated, generatedCount, dim, k)
  return {
    precision: coverage(generated, generatedCount, real, realCount, realRadii, dim),
    recall: coverage(real, realCount, generated, generatedCount, generatedRadii, dim),
  }
}
