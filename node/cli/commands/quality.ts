// `coop quality`: the in-domain quality metric's classifier (trainer/quality/). `train` remakes
// the committed weights from the fixed recipe; `info` prints what the committed weights are.
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { backendFlag, parseCommandArgs, wholeNumberFlag } from '../args.ts'
import type { Command } from '../command.ts'
import { UsageError } from '../command.ts'
import { componentLogger } from '../../log.ts'
import { TWEMOJI_CLASSES } from '../../../configs/presets.ts'

const usage = `Usage: coop quality train [--write | --out <file>] [--steps N] [--backend wasm]
       coop quality info

train   retrains the quality classifier from its fixed recipe (seed, steps, learning rate and
        augmentation in trainer/quality/constants.ts) on the training side of the Twemoji split,
        and reports its accuracy on the held-out side. --write replaces the committed weights
        (trainer/quality/classifier.safetensors and its digest); --out writes them elsewhere.
        1,500 steps at ~0.7 CPU-s each on one wasm core: ~18 CPU-minutes.
info    prints the committed classifier's card: classes, recipe, test accuracy.`

function percent(value: number): string {
  return `${(value * 100).toFixed(1)}%`
}

export const command: Command = {
  summary: 'train or describe the classifier behind the sample-quality metric',
  usage,
  async run(argv) {
    const { values, positionals } = parseCommandArgs(
      argv,
      {
        write: { type: 'boolean' },
        out: { type: 'string' },
        steps: { type: 'string' },
        backend: { type: 'string' },
      },
      { allowPositionals: true },
    )
    const [action] = positionals
    if (positionals.length !== 1 || (action !== 'train' && action !== 'info'))
      throw new UsageError('expected `coop quality train` or `coop quality info`')
    const { loadCommittedClassifier, classifierWeightsPath } =
      await import('../../../trainer/quality/weights.ts')
    if (action === 'info') {
      const { card, digest } = await loadCommittedClassifier()
      process.stdout.write(
        `${classifierWeightsPath()} (${digest})\nclasses: ${card.classes.join(', ')}\n` +
          `trained by \`${card.command}\` on ${card.backend}: ${card.trainImages} training images, recipe ${JSON.stringify(card.recipe)}\n` +
          `held-out accuracy ${percent(card.testAccuracy)} (class-balanced ${percent(card.testBalancedAccuracy)}) on ${card.testImages} images\n`,
      )
      for (const [name, value] of Object.entries(card.perClassTestAccuracy))
        process.stdout.write(`  ${name}: ${percent(value)}\n`)
      return 0
    }
    if (values.write && values.out !== undefined) throw new UsageError('--write and --out exclude each other')
    const steps = wholeNumberFlag('steps', values.steps, { min: 1, max: 1_000_000 })
    const backend = backendFlag(values.backend ?? 'wasm')
    const log = componentLogger('quality')
    const { initBackend } = await import('../../../trainer/backend.ts')
    const { retrainClassifier } = await import('../../../trainer/quality/retrain.ts')
    const choice = await initBackend(backend, log)
    const started = performance.now()
    const result = await retrainClassifier({
      classes: TWEMOJI_CLASSES,
      backend: choice.name,
      ...(steps === undefined ? {} : { steps }),
      log,
    })
    const seconds = (performance.now() - started) / 1000
    process.stdout.write(
      `trained in ${seconds.toFixed(0)} s: held-out accuracy ${percent(result.test.accuracy)} (class-balanced ${percent(result.test.balancedAccuracy)}) on ${result.test.count} images\n`,
    )
    for (const [name, value] of Object.entries(result.test.perClass))
      process.stdout.write(`  ${name}: ${percent(value)}\n`)
    if (values.write) {
      await writeFile(classifierWeightsPath(), result.bytes)
      await writeFile(
        join(classifierWeightsPath(), '..', 'digest.ts'),
        `// The sha256 of the committed classifier weights (classifier.safetensors), checked on every load.\n// \`coop quality train --write\` rewrites both files together.\nexport const CLASSIFIER_WEIGHTS_SHA256 =\n  '${result.digest}'\n`,
      )
      process.stdout.write(`wrote ${classifierWeightsPath()} (${result.digest})\n`)
    } else if (values.out !== undefined) {
      await writeFile(values.out, result.bytes)
      process.stdout.write(`wrote ${values.out} (${result.digest})\n`)
    }
    return 0
  },
}
