// Prints, after vitest's own summary:
// - the slowest test files (import plus tests plus hooks, in seconds), so a CI log says where the
//   suite's time goes without a rerun;
// - one plain closing line, `tests: N passed, N failed, N skipped`, so CI logs carry a count that
//   any reader (human or script) can parse.
import type { Reporter, TestModule } from 'vitest/node'

const SLOWEST_SHOWN = 15

export default class SummaryReporter implements Reporter {
  onTestRunEnd(testModules: ReadonlyArray<TestModule>): void {
    let passed = 0
    let failed = 0
    let skipped = 0
    const durations: { file: string; seconds: number }[] = []
    for (const testModule of testModules) {
      for (const test of testModule.children.allTests()) {
        const state = test.result().state
        if (state === 'passed') passed++
        else if (state === 'failed') failed++
        else skipped++
      }
      // A file that failed to load has no tests but is a failure all the same.
      if (testModule.state() === 'failed' && testModule.children.size === 0) failed++
      const d = testModule.diagnostic()
      durations.push({ file: testModule.moduleId, seconds: (d.collectDuration + d.duration) / 1000 })
    }
    const root = process.cwd() + '/'
    const slowest = durations.sort((a, b) => b.seconds - a.seconds).slice(0, SLOWEST_SHOWN)
    const total = durations.reduce((sum, d) => sum + d.seconds, 0)
    process.stdout.write(
      `\nslowest test files (import + tests + hooks; ${Math.round(total)} s in all files):\n`,
    )
    for (const d of slowest)
      process.stdout.write(`${d.seconds.toFixed(1).padStart(8)} s  ${d.file.replace(root, '')}\n`)
    process.stdout.write(`\ntests: ${passed} passed, ${failed} failed, ${skipped} skipped\n`)
  }
}
