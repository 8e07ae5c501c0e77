// Image resizing for the quality classifier, in plain JavaScript (float32 in, float32 out), so the
// same bytes come out on every backend: real images and samples of any side are brought to the
// classifier's input size by the same function.
//   - integer downscale (side a multiple of the target): box average, as an area resize;
//   - anything else: bilinear with half-pixel centres (align_corners = false).

/** Resizes `count` HWC RGB images of side `from` to side `to`. */
export function resizeImages(pixels: Float32Array, count: number, from: number, to: number): Float32Array {
  if (pixels.length !== count * from * from * 3)
    throw new RangeError(`${pixels.length} values are not ${count} images of ${from}x${from}x3`)
  if (from === to) return pixels
  const out = new Float32Array(count * to * to * 3)
  if (from > to && from % to === 0) {
    const factor = from / to
    const area = factor * factor
    for (let n = 0; n < count; n++)
      for (let y = 0; y < to; y++)
        for (let x = 0; x < to; x++)
          for (let c = 0; c < 3; c++) {
            let sum = 0
            for (let dy = 0; dy < factor; dy++)
              for (let dx = 0; dx < factor; dx++)
                sum += pixels[((n * from + y * factor + dy) * from + x * factor + dx) * 3 + c] as number
            out[((n * to + y) * to + x) * 3 + c] = sum / area
          }
    return out
  }
  const scale = from / to
  const source = (coordinate: number) => {
    const s = Math.min(Math.max((coordinate + 0.5) * scale - 0.5, 0), from - 1)
    const low = Math.floor(s)
    const high = Math.min(low + 1, from - 1)
    return { low, high, t: s - low }
  }
  const axis = Array.from({ length: to }, (_, i) => source(i))
  for (let n = 0; n < count; n++)
    for (let y = 0; y < to; y++) {
      const sy = axis[y] as ReturnType<typeof source>
      for (let x = 0; x < to; x++) {
        const sx = axis[x] as ReturnType<typeof source>
        for (let c = 0; c < 3; c++) {
          const at = (yy: number, xx: number) => pixels[((n * from + yy) * from + xx) * 3 + c] as number
          const top = at(sy.low, sx.low) * (1 - sx.t) + at(sy.low, sx.high) * sx.t
          const bottom = at(sy.high, sx.low) * (1 - sx.t) + at(sy.high, sx.high) * sx.t
          out[((n * to + y) * to + x) * 3 + c] = top * (1 - sy.t) + bottom * sy.t
        }
      }
    }
  return out
}

/** Converts RGB bytes (0..255, as sampling returns them) to floats in [-1, 1]. */
export function bytesToPixels(bytes: Uint8Array): Float32Array {
  const out = new Float32Array(bytes.length)
  for (let i = 0; i < bytes.length; i++) out[i] = (bytes[i] as number) / 127.5 - 1
  return out
}
