// Configurations: the named ones load and validate; files, `extends` and overrides merge the
// same way; unknown keys and wrong types are errors that name the key path.
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { CONFIG_NAMES, ConfigError, loadConfig } from '../../configs/index.ts'

function expectConfigError(run: () => unknown, code: string, path: string): void {
  try {
    run()
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError)
    expect((error as ConfigError).code).toBe(code)
    expect((error as ConfigError).path).toBe(path)
    expect((error as ConfigError).message).toContain(path)
    return
  }
  throw new Error('expected a ConfigError')
}

describe('loadConfig', () => {
  it('loads every named configuration with the documented image sizes', () => {
    expect([...CONFIG_NAMES].sort()).toEqual(['emoji32', 'gpu256', 'tiny'])
    expect(loadConfig('tiny').image.size).toBe(16)
    const emoji = loadConfig('emoji32')
    expect(emoji.image.size).toBe(32)
    expect(emoji.classes).toContain('smileys-emotion')
    expect(loadConfig('gpu256').image.size).toBe(256)
  })

  it('returns a fresh object each time, so a caller cannot corrupt the presets', () => {
    const a = loadConfig('tiny')
    a.unet.channels.push(999)
    expect(loadConfig('tiny').unet.channels).not.toContain(999)
  })

  it('applies nested and dotted overrides and validates the result', () => {
    const config = loadConfig('tiny', { 'unet.lr': 5e-4, autoencoder: { steps: 7 } })
    expect(config.unet.lr).toBe(5e-4)
    expect(config.autoencoder.steps).toBe(7)
    expect(config.unet.batchSize).toBe(loadConfig('tiny').unet.batchSize)
  })

  it('rejects unknown keys, naming the full key path', () => {
    expectConfigError(
      () => loadConfig('tiny', { 'unet.learningRate': 1e-3 }),
      'UNKNOWN_KEY',
      'unet.learningRate',
    )
    expectConfigError(() => loadConfig('tiny', { epochs: 3 }), 'UNKNOWN_KEY', 'epochs')
    expectConfigError(
      () => loadConfig('tiny', { diffusion: { sampler: 'ddpm' } }),
      'UNKNOWN_KEY',
      'diffusion.sampler',
    )
  })

  it('rejects wrong types and out-of-range values, naming the key path', () => {
    expectConfigError(() => loadConfig('tiny', { 'unet.lr': '0.001' }), 'WRONG_TYPE', 'unet.lr')
    expectConfigError(() => loadConfig('tiny', { 'unet.attention': 1 }), 'WRONG_TYPE', 'unet.attention')
    expectConfigError(
      () => loadConfig('tiny', { 'autoencoder.batchSize': 2.5 }),
      'WRONG_TYPE',
      'autoencoder.batchSize',
    )
    expectConfigError(
      () => loadConfig('tiny', { 'diffusion.schedule': 'sigmoid' }),
      'INVALID_VALUE',
      'diffusion.schedule',
    )
    expectConfigError(
      () => loadConfig('tiny', { 'unet.channels': [16, 30] }),
      'INVALID_VALUE',
      'unet.channels.1',
    )
    expectConfigError(() => loadConfig('tiny', { 'image.size': 18 }), 'INVALID_VALUE', 'image.size')
  })

  it('loads a JSON file that extends a named configuration, and checks it the same way', () => {
    const dir = mkdtempSync(join(tmpdir(), 'coop-config-'))
    const good = join(dir, 'small.json')
    writeFileSync(good, JSON.stringify({ extends: 'tiny', name: 'small', unet: { steps: 12 } }))
    const config = loadConfig(good)
    expect(config.name).toBe('small')
    expect(config.unet.steps).toBe(12)
    expect(config.image.size).toBe(16)
    const child = join(dir, 'child.json')
    writeFileSync(child, JSON.stringify({ extends: './small.json', autoencoder: { steps: 3 } }))
    expect(loadConfig(child).unet.steps).toBe(12)
    const typo = join(dir, 'typo.json')
    writeFileSync(typo, JSON.stringify({ extends: 'tiny', unet: { chanels: [8] } }))
    expectConfigError(() => loadConfig(typo), 'UNKNOWN_KEY', 'unet.chanels')
    const broken = join(dir, 'broken.json')
    writeFileSync(broken, '{"extends": "tiny",')
    expectConfigError(() => loadConfig(broken), 'INVALID_JSON', '')
  })

  it('says which names exist when the name is unknown', () => {
    expect(() => loadConfig('huge')).toThrow(/tiny, emoji32, gpu256/)
    expectConfigError(() => loadConfig('huge'), 'NOT_FOUND', '')
    expectConfigError(() => loadConfig('./missing.json'), 'NOT_FOUND', '')
  })
})
