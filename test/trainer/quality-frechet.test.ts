// The quality metric's maths (trainer/quality/frechet.ts): moments, the PSD square root, the
// Fréchet distance and precision/recall, against closed forms and properties.
import fc from 'fast-check'
import { EigenvalueDecomposition, Matrix } from 'ml-matrix'
import { describe, expect, it } from 'vitest'
import {
  frechetDistance,
  gaussianOf,
  precisionRecall,
  sqrtPsd,
  traceSqrtProduct,
} from '../../trainer/quality/frechet.ts'
import { Rng } from '../../trainer/rng.ts'

/** A random symmetric positive definite matrix A Aᵀ + εI. */
function randomSpd(dim: number, seed: number): Matrix {
  const rng = new Rng(seed)
  const a = new Matrix(dim, dim)
  for (let i = 0; i < dim; i++) for (let j = 0; j < dim; j++) a.set(i, j, rng.normal())
  const spd = a.mmul(a.transpose())
  for (let i = 0; i < dim; i++) spd.set(i, i, spd.get(i, i) + 1e-3)
  return spd
}

function gaussian(mean: number[], covariance: Matrix) {
  const dim = mean.length
  const flat = new Float64Array(dim * dim)
  for (let i = 0; i < dim; i++) for (let j = 0; j < dim; j++) flat[i * dim + j] = covariance.get(i, j)
  return { dim, count: 100, mean: Float64Array.from(mean), covariance: flat }
}

function maxAbs(a: Matrix, b: Matrix): number {
  let max = 0
  for (let i = 0; i < a.rows; i++)
    for (let j = 0; j < a.columns; j++) max = Math.max(max, Math.abs(a.get(i, j) - b.get(i, j)))
  return max
}

describe('quality maths', () => {
  it('sqrtPsd squares back to the matrix (random SPD matrices up to 40 x 40)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 40 }), fc.integer({ min: 0, max: 2 ** 31 - 1 }), (dim, seed) => {
        const a = randomSpd(dim, seed)
        const root = sqrtPsd(a)
        const scale = Math.max(1, ...a.to1DArray().map(Math.abs))
        expect(maxAbs(root.mmul(root), a) / scale).toBeLessThan(1e-9)
        expect(maxAbs(root, root.transpose())).toBeLessThan(1e-9 * scale)
      }),
      { numRuns: 40 },
    )
  })

  it('the Fréchet distance of diagonal Gaussians is the closed form |μ1-μ2|² + Σ(√a-√b)²', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.tuple(
            fc.double({ min: -5, max: 5, noNaN: true }),
            fc.double({ min: -5, max: 5, noNaN: true }),
            fc.double({ min: 1e-3, max: 10, noNaN: true }),
            fc.double({ min: 1e-3, max: 10, noNaN: true }),
          ),
          { minLength: 1, maxLength: 20 },
        ),
        (rows) => {
          const dim = rows.length
          const a = Matrix.zeros(dim, dim)
          const b = Matrix.zeros(dim, dim)
          let expected = 0
          rows.forEach(([m1, m2, v1, v2], i) => {
            a.set(i, i, v1)
            b.set(i, i, v2)
            expected += (m1 - m2) ** 2 + (Math.sqrt(v1) - Math.sqrt(v2)) ** 2
          })
          const fd = frechetDistance(
            gaussian(
              rows.map((r) => r[0]),
              a,
            ),
            gaussian(
              rows.map((r) => r[1]),
              b,
            ),
          )
          expect(fd).toBeCloseTo(expected, 8)
        },
      ),
    )
  })

  it('is zero for equal Gaussians, symmetric, and invariant under a common rotation', () => {
    fc.assert(
      fc.property(fc.integer({ min: 2, max: 24 }), fc.integer({ min: 0, max: 2 ** 31 - 1 }), (dim, seed) => {
        const rng = new Rng(seed + 1)
        const a = randomSpd(dim, seed)
        const b = randomSpd(dim, seed ^ 0x5555)
        const m1 = Array.from({ length: dim }, () => rng.normal())
        const m2 = Array.from({ length: dim }, () => rng.normal())
        const scale = a.trace() + b.trace()
        expect(frechetDistance(gaussian(m1, a), gaussian(m1, a))).toBeLessThan(1e-8 * scale)
        const ab = frechetDistance(gaussian(m1, a), gaussian(m2, b))
        expect(Math.abs(ab - frechetDistance(gaussian(m2, b), gaussian(m1, a)))).toBeLessThan(1e-8 * scale)
        // An orthogonal Q from the eigenvectors of a third SPD matrix: FD(QX, QY) = FD(X, Y).
        const q = new EigenvalueDecomposition(randomSpd(dim, seed ^ 0x1234), { assumeSymmetric: true })
          .eigenvectorMatrix
        const rotate = (m: number[]) => q.mmul(Matrix.columnVector(m)).to1DArray()
        const rotated = frechetDistance(
          gaussian(rotate(m1), q.mmul(a).mmul(q.transpose())),
          gaussian(rotate(m2), q.mmul(b).mmul(q.transpose())),
        )
        expect(Math.abs(rotated - ab)).toBeLessThan(1e-7 * Math.max(1, ab))
      }),
      { numRuns: 30 },
    )
  })

  it('traceSqrtProduct equals the sum of square roots of the eigenvalues of Σ1Σ2 (commuting case)', () => {
    const a = randomSpd(6, 3)
    // A polynomial in A commutes with A: eigenvalues of A·A² are λ³.
    const b = a.mmul(a)
    const lambdas = new EigenvalueDecomposition(a, { assumeSymmetric: true }).realEigenvalues
    const expected = lambdas.reduce((sum, l) => sum + Math.sqrt(l ** 3), 0)
    expect(traceSqrtProduct(a, b)).toBeCloseTo(expected, 6)
  })

  it('gaussianOf: unbiased moments; equal weights change nothing; class-balancing weights balance', () => {
    const rows = new Float32Array([1, 2, 3, 4, 5, 9, -1, 0])
    const g = gaussianOf(rows, 2)
    expect([...g.mean]).toEqual([2, 3.75])
    // x: 1,3,5,-1 (mean 2) -> var (1+1+9+9)/3; y: 2,4,9,0 (mean 3.75) -> cov Σ(dx dy)/3
    expect(g.covariance[0]).toBeCloseTo(20 / 3, 12)
    expect(g.covariance[1]).toBeCloseTo((-1 * -1.75 + 1 * 0.25 + 3 * 5.25 + -3 * -3.75) / 3, 12)
    expect(g.covariance[1]).toBe(g.covariance[2])
    const same = gaussianOf(rows, 2, [2, 2, 2, 2])
    expect([...same.mean]).toEqual([...g.mean])
    same.covariance.forEach((v, i) => expect(v).toBeCloseTo(g.covariance[i] as number, 12))
    // Three rows of class A at 0 and one row of class B at 4: balanced weights put the mean at 2.
    const balanced = gaussianOf(new Float32Array([0, 0, 0, 4]), 1, [1 / 3, 1 / 3, 1 / 3, 1])
    expect(balanced.mean[0]).toBeCloseTo(2, 12)
  })

  it('rejects malformed input', () => {
    expect(() => gaussianOf(new Float32Array(5), 2)).toThrow(RangeError)
    expect(() => gaussianOf(new Float32Array(2), 2)).toThrow(/at least 2/)
    expect(() => gaussianOf(new Float32Array([1, Number.NaN, 2, 3]), 2)).toThrow(/not finite/)
    expect(() => gaussianOf(new Float32Array(4), 2, [0, 0])).toThrow(/zero/)
    expect(() => gaussianOf(new Float32Array(4), 2, [1])).toThrow(/weights/)
    const g = gaussianOf(new Float32Array([0, 1, 2, 3]), 2)
    expect(() => frechetDistance(g, gaussianOf(new Float32Array([0, 1, 2]), 1))).toThrow(/dimensions/)
  })

  it('precision/recall: 1 for the same set, 0 for far-apart sets, and half the samples off the manifold halve precision', () => {
    const rng = new Rng(9)
    const real = Float32Array.from({ length: 60 * 4 }, () => rng.normal())
    expect(precisionRecall(real, real, 4)).toEqual({ precision: 1, recall: 1 })
    const far = real.map((v) => v + 100)
    expect(precisionRecall(real, far, 4)).toEqual({ precision: 0, recall: 0 })
    // Half the samples on the real points, half far away: precision 1/2.
    const mixed = new Float32Array(real.length)
    mixed.set(real.subarray(0, real.length / 2))
    mixed.set(far.subarray(real.length / 2), real.length / 2)
    const pr = precisionRecall(real, mixed, 4)
    expect(pr.precision).toBe(0.5)
    expect(() => precisionRecall(real.subarray(0, 8), real, 4)).toThrow(/more than 3/)
  })
})
