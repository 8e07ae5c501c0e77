// Peak resident memory of a real node process, as the kernel counts it (VmHWM in
// /proc/<pid>/status): sampled until the process exits, so the last value read is its peak.
import { readFile } from 'node:fs/promises'

async function highWaterMiB(pid: number): Promise<number | undefined> {
  try {
    const status = await readFile(`/proc/${pid}/status`, 'utf8')
    const match = /^VmHWM:\s+(\d+)\s+kB$/m.exec(status)
    return match === null ? undefined : Number(match[1]) / 1024
  } catch {
    return undefined
  }
}

/** Starts sampling; `peak()` is the highest VmHWM seen (MiB), `stop()` ends the sampling. */
export function trackPeakRss(pid: number, everyMs = 200): { peak(): number; stop(): void } {
  let peak = 0
  const timer = setInterval(() => {
    void highWaterMiB(pid).then((mib) => {
      if (mib !== undefined && mib > peak) peak = mib
    })
  }, everyMs)
  timer.unref()
  return {
    peak: () => peak,
    stop: () => clearInterval(timer),
  }
}
