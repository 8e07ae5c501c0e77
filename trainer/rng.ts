// A small seeded PRNG whose whole state is four 32-bit words, so a run can save it in a
// checkpoint and a resumed run draws exactly the numbers the uninterrupted run would have.
// Algorithm: xoshiro128** (Blackman & Vigna), seeded through splitmix32 so that nearby
// seeds give unrelated streams. Math.random is never used for anything that affects training.

export type RngState = [number, number, number, number]

function splitmix32(seed: number): () => number {
  let state = seed >>> 0
  return () => {
    state = (state + 0x9e3779b9) >>> 0
    let z = state
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0
    return (z ^ (z >>> 16)) >>> 0
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0
}

export class Rng {
  private s0: number
  private s1: number
  private s2: number
  private s3: number

  constructor(seed: number | RngState) {
    if (typeof seed === 'number') {
      // Mix both halves of seeds above 2^32 so that any safe integer seed is distinct.
      const high = Math.floor(seed / 2 ** 32) >>> 0
      const next = splitmix32((seed >>> 0) ^ Math.imul(high, 0x27d4eb2d))
      this.s0 = next()
      this.s1 = next()
      this.s2 = next()
      this.s3 = next()
    } else {
      ;[this.s0, this.s1, this.s2, this.s3] = seed.map((w) => w >>> 0) as RngState
    }
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1 // the all-zero state is a fixed point
  }

  state(): RngState {
    return [this.s0, this.s1, this.s2, this.s3]
  }

  /** Uniform 32-bit unsigned integer. */
  nextUint32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5) >>> 0, 7), 9) >>> 0
    const t = (this.s1 << 9) >>> 0
    this.s2 = (this.s2 ^ this.s0) >>> 0
    this.s3 = (this.s3 ^ this.s1) >>> 0
    this.s1 = (this.s1 ^ this.s2) >>> 0
    this.s0 = (this.s0 ^ this.s3) >>> 0
    this.s2 = (this.s2 ^ t) >>> 0
    this.s3 = rotl(this.s3, 11)
    return result
  }

  /** Uniform in [0, 1) with 32 bits of resolution. */
  uniform(): number {
    return this.nextUint32() / 4294967296
  }

  /** Uniform integer in [0, n), unbiased (rejection sampling). */
  int(n: number): number {
    if (!Number.isInteger(n) || n <= 0 || n > 4294967296) throw new RangeError(`Rng.int: bad bound ${n}`)
    const limit = 4294967296 - (4294967296 % n)
    for (;;) {
      const x = this.nextUint32()
      if (x < limit) return x % n
    }
  }

  /** Standard normal (Box-Muller; uses exactly two words per draw). */
  normal(): number {
    const u1 = (this.nextUint32() + 1) / 4294967297 // in (0, 1): log never sees 0
    const u2 = this.nextUint32() / 4294967296
    return Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2)
  }

  /** `n` standard normals as float32; uses both Box-Muller outputs (two words per pair of normals). */
  normals(n: number): Float32Array {
    const out = new Float32Array(n)
    for (let i = 0; i < n; i += 2) {
      const radius = Math.sqrt(-2 * Math.log((this.nextUint32() + 1) / 4294967297))
      const angle = (2 * Math.PI * this.nextUint32()) / 4294967296
      out[i] = radius * Math.cos(angle)
      if (i + 1 < n) out[i + 1] = radius * Math.sin(angle)
    }
    return out
  }

  /** Fisher-Yates shuffle of `0..n-1`. */
  permutation(n: number): number[] {
    const order = Array.from({ length: n }, (_, i) => i)
    for (let i = n - 1; i > 0; i--) {
      const j = this.int(i + 1)
      const tmp = order[i] as number
      order[i] = order[j] as number
      order[j] = tmp
    }
    return order
  }
}
