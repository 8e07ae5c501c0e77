// Where the WebGPU tests find SwiftShader, the CPU Vulkan driver from Debian's chromium-common
// (.ci/swiftshader.sh extracts it into .cache/swiftshader; a system chromium has it too).
import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
const ICD_PATHS = [
  join(ROOT, '.cache', 'swiftshader', 'usr', 'lib', 'chromium', 'vk_swiftshader_icd.json'),
  '/usr/lib/chromium/vk_swiftshader_icd.json',
]

/** Points Vulkan at SwiftShader only (so Dawn sees no other adapter); throws how to install it if absent. */
export function useSwiftShader(): string {
  const icd = ICD_PATHS.find((path) => existsSync(path))
  if (icd === undefined)
    throw new Error(`SwiftShader not found (looked in ${ICD_PATHS.join(', ')}): run .ci/swiftshader.sh`)
  process.env.VK_ICD_FILENAMES = icd
  return icd
}
