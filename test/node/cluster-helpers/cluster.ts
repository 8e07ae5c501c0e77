// A real cooperative for multi-process tests: node keys and rights-holder keys on disk, a
// non-IID Twemoji subset per peer (one category each), signed consent manifests, a charter made
// with `coop charter create`, and `coop start` child processes on loopback TCP whose pino
// stderr lines are parsed so tests can wait for events.
import { spawn, execFile, type ChildProcess } from 'node:child_process'
import { createWriteStream, type WriteStream } from 'node:fs'
import { mkdir, readFile, readdir, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { sha256Digest } from '../../../protocol/digest.ts'
import { generateKey, peerIdString, type Ed25519PrivateKey } from '../../../protocol/keys.ts'
import { createManifest, manifestDigest, type ConsentManifest } from '../../../protocol/manifest.ts'
import { writeKeyFile } from '../../../node/keystore.ts'
import { layoutTwemoji, TWEMOJI_ATTRIBUTION } from '../../../node/cli/commands/data.ts'
import { readAddrs } from '../../../node/round/layout.ts'

export const COOP_MAIN = fileURLToPath(new URL('../../../node/cli/main.ts', import.meta.url))
export const NODE = process.execPath

export interface ClusterPeer {
  name: string
  dir: string
  store: string
  data: string
  nodeKeyPath: string
  nodeKey: Ed25519PrivateKey
  peerId: string
  rightsKey: Ed25519PrivateKey
  consentPath: string
  manifest: ConsentManifest
  manifestId: string
  category: string
  /** sha256 digests of this peer's image files. */
  images: string[]
  publisher: boolean
}

export interface Cluster {
  dir: string
  charter: string
  peers: ClusterPeer[]
}

export interface ClusterOptions {
  dir: string
  peers: number
  /** Index of the publisher (also a trainer). */
  publisher?: number
  imagesPerPeer?: number
  config?: string
  /** Extra `coop charter create` flags (rounds, quorum, ...). */
  charterArgs?: string[]
}

/** Categories handed out one per peer: non-IID by construction. */
const CATEGORIES = [
  'smileys-emotion',
  'animals-nature',
  'food-drink',
  'flags',
  'objects',
  'travel-places',
  'symbols',
  'activities',
  'people-body',
]

export function runCoop(
  args: string[],
  timeoutMs = 120_000,
): Promise<{ stdout: string; stderr: string; code: number }> {
  return new Promise((resolve) => {
    execFile(
      NODE,
      [COOP_MAIN, ...args],
      { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024, env: { ...process.env, COOP_LOG_LEVEL: 'warn' } },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === 'number' ? error.code : 1
        resolve({ stdout, stderr, code })
      },
    )
  })
}

async function imageDigests(dir: string): Promise<string[]> {
  const out: string[] = []
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) out.push(...(await imageDigests(path)))
    else if (entry.name.endsWith('.png')) out.push(sha256Digest(new Uint8Array(await readFile(path))))
  }
  return out.sort()
}

export async function createCluster(options: ClusterOptions): Promise<Cluster> {
  const publisherIndex = options.publisher ?? 0
  const peers: ClusterPeer[] = []
  for (let i = 0; i < options.peers; i++) {
    const name = `peer-${i + 1}`
    const dir = join(options.dir, name)
    const data = join(dir, 'data')
    await mkdir(dir, { recursive: true })
    const nodeKey = generateKey()
    const nodeKeyPath = join(dir, 'node.key')
    await writeKeyFile(nodeKeyPath, nodeKey)
    const peerId = peerIdString(nodeKey.publicKey)
    const rightsKey = generateKey()
    const category = CATEGORIES[i % CATEGORIES.length] as string
    await layoutTwemoji({ out: data, perCategory: options.imagesPerPeer ?? 16, categories: [category] })
    const files: { digest: string; byteLength: number }[] = []
    for (const file of await readdir(join(data, category))) {
      const bytes = new Uint8Array(await readFile(join(data, category, file)))
      files.push({ digest: sha256Digest(bytes), byteLength: bytes.byteLength })
    }
    const manifest = createManifest({
      issuerKey: rightsKey,
      custodian: peerId,
      license: 'CC-BY-4.0',
      attribution: {
        name: `Rights holder of ${name}`,
        uri: 'https://creativecommons.org/licenses/by/4.0/',
        text: TWEMOJI_ATTRIBUTION,
      },
      scope: { commercialUse: false, weightRedistribution: true },
      items: files.map((f) => ({ digest: f.digest, mediaType: 'image/png', byteLength: f.byteLength })),
      validFrom: new Date(Date.now() - 60_000),
    })
    const consentPath = join(dir, 'consent.json')
    await writeFile(consentPath, JSON.stringify(manifest))
    peers.push({
      name,
      dir,
      store: join(dir, 'store'),
      data,
      nodeKeyPath,
      nodeKey,
      peerId,
      rightsKey,
      consentPath,
      manifest,
      manifestId: manifestDigest(manifest),
      category,
      images: await imageDigests(data),
      publisher: i === publisherIndex,
    })
  }
  const publisher = peers[publisherIndex] as ClusterPeer
  const charter = join(options.dir, 'charter.json')
  const result = await runCoop([
    'charter',
    'create',
    '--config',
    options.config ?? 'tiny',
    '--publisher',
    publisher.peerId,
    '--key',
    publisher.nodeKeyPath,
    ...(options.charterArgs ?? []),
    '--out',
    charter,
  ])
  if (result.code !== 0) throw new Error(`coop charter create failed: ${result.stderr}`)
  return { dir: options.dir, charter, peers }
}

export interface LogLine {
  msg: string
  level: number
  [key: string]: unknown
}

export class NodeProcess {
  readonly peer: ClusterPeer
  readonly child: ChildProcess
  readonly lines: LogLine[] = []
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  readonly #listeners = new Set<() => void>()
  readonly #log: WriteStream
  /** stderr fully read: only then can "it never logged X" be concluded. */
  #drained = false

  constructor(peer: ClusterPeer, args: string[], logFile: string, env: NodeJS.ProcessEnv = {}) {
    this.peer = peer
    this.#log = createWriteStream(logFile, { flags: 'a' })
    this.child = spawn(NODE, [COOP_MAIN, ...args], {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, COOP_LOG_LEVEL: 'info', ...env },
    })
    const reader = createInterface({ input: this.child.stderr as NodeJS.ReadableStream })
    reader.on('line', (line) => {
      this.#log.write(`${line}\n`)
      if (!line.startsWith('{')) return
      try {
        this.lines.push(JSON.parse(line) as LogLine)
      } catch {
        return
      }
      for (const l of [...this.#listeners]) l()
    })
    const closed = new Promise<void>((resolve) =>
      reader.once('close', () => {
        this.#drained = true
        resolve()
      }),
    )
    const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      this.child.once('exit', (code, signal) => resolve({ code, signal })),
    )
    this.exited = Promise.all([exit, closed]).then(([result]) => {
      this.#log.end()
      for (const l of [...this.#listeners]) l()
      return result
    })
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null
  }

  count(msg: string, predicate: (l: LogLine) => boolean = () => true): number {
    return this.lines.filter((l) => l.msg === msg && predicate(l)).length
  }

  /** Waits for a log line with this message (and predicate); fails with the node's last lines on timeout or exit. */
  waitFor(
    msg: string,
    predicate: (l: LogLine) => boolean = () => true,
    timeoutMs = 120_000,
  ): Promise<LogLine> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        const hit = this.lines.find((l) => l.msg === msg && predicate(l))
        if (hit !== undefined) {
          cleanup()
          resolve(hit)
          return true
        }
        if (this.#drained) {
          cleanup()
          reject(new Error(`${this.peer.name} exited before '${msg}':\n${this.tail()}`))
          return true
        }
        return false
      }
      const timer = setTimeout(() => {
        cleanup()
        reject(new Error(`${this.peer.name}: timed out waiting for '${msg}':\n${this.tail()}`))
      }, timeoutMs)
      const cleanup = () => {
        clearTimeout(timer)
        this.#listeners.delete(listener)
      }
      const listener = () => void check()
      this.#listeners.add(listener)
      check()
    })
  }

  tail(n = 15): string {
    return this.lines
      .slice(-n)
      .map(
        (l) =>
          `${l.level} ${l.msg} ${JSON.stringify({ ...l, msg: undefined, level: undefined, time: undefined, pid: undefined, hostname: undefined }).slice(0, 300)}`,
      )
      .join('\n')
  }

  kill(signal: NodeJS.Signals): void {
    if (this.running) this.child.kill(signal)
  }
}

export interface StartOptions {
  bootstrap?: string[]
  rounds?: number
  extra?: string[]
  env?: NodeJS.ProcessEnv
}

export function startNode(cluster: Cluster, peer: ClusterPeer, options: StartOptions = {}): NodeProcess {
  const args = [
    'start',
    '--charter',
    cluster.charter,
    '--store',
    peer.store,
    '--data',
    peer.data,
    '--consent',
    peer.consentPath,
    '--key',
    peer.nodeKeyPath,
    '--backend',
    process.env.COOP_TEST_BACKEND ?? 'auto',
    '--linger',
    '30',
    ...(peer.publisher ? ['--publisher'] : []),
    ...(options.rounds === undefined ? [] : ['--rounds', String(options.rounds)]),
    ...(options.bootstrap ?? []).flatMap((b) => ['--bootstrap', b]),
    ...(options.extra ?? []),
  ]
  return new NodeProcess(peer, args, join(peer.dir, 'node.log'), options.env)
}

/** The node's first listen multiaddr with /p2p/<peerId>, once it has written addrs.json. */
export async function bootstrapAddr(peer: ClusterPeer, timeoutMs = 60_000): Promise<string> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    const addrs = await readAddrs(peer.store).catch(() => undefined)
    if (addrs !== undefined && addrs.addrs.length > 0) {
      const addr = addrs.addrs[0] as string
      return addr.includes('/p2p/') ? addr : `${addr}/p2p/${addrs.peerId}`
    }
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  throw new Error(`${peer.name} never wrote addrs.json`)
}

export async function exists(path: string): Promise<boolean> {
  return await stat(path).then(
    () => true,
    () => false,
  )
}

export async function stopAll(nodes: NodeProcess[]): Promise<void> {
  for (const n of nodes) n.kill('SIGTERM')
  const timer = setTimeout(() => {
    for (const n of nodes) n.kill('SIGKILL')
  }, 15_000)
  await Promise.all(nodes.map((n) => n.exited))
  clearTimeout(timer)
}

/** Waits for the nodes to exit on their own; on timeout, fails with the tails of those still running. */
export async function exitsWithin(
  nodes: NodeProcess[],
  timeoutMs: number,
): Promise<{ code: number | null; signal: NodeJS.Signals | null }[]> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const stuck = nodes.filter((n) => n.running)
      reject(
        new Error(
          `nodes still running after ${timeoutMs} ms:\n${stuck.map((n) => `${n.peer.name}:\n${n.tail()}`).join('\n')}`,
        ),
      )
    }, timeoutMs)
  })
  try {
    return await Promise.race([Promise.all(nodes.map((n) => n.exited)), timeout])
  } finally {
    clearTimeout(timer)
  }
}
