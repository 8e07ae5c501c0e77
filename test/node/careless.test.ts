// The mistakes a careless newcomer makes, against a real two-process cooperative (a publisher and
// a trainer that finished their rounds), real files and real stores: each mistake gives one line
// with its code and a non-zero exit code, and leaves nothing behind (the files it was pointed at
// are byte-identical, no store is created). The same run proves `coop sample` on a cooperative
// checkpoint and that `coop start` on a machine without a GPU prints no WebGPU driver noise.
import { execFile } from 'node:child_process'
import { cp, mkdir, mkdtemp, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises'
import { createServer, type Server } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { listCheckpointDirs } from '../../node/round/layout.ts'
import {
  bootstrapAddr,
  COOP_MAIN,
  createCluster,
  exitsWithin,
  NODE,
  startNode,
  stopAll,
  type Cluster,
  type NodeProcess,
} from './cluster-helpers/cluster.ts'

interface Run {
  code: number
  stdout: string
  stderr: string
}

function coop(args: string[], timeoutMs = 120_000): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      NODE,
      [COOP_MAIN, ...args],
      { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024, env: { ...process.env, COOP_LOG_LEVEL: 'warn' } },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === 'number' ? error.code : 1
        resolve({ code, stdout, stderr })
      },
    )
  })
}

/** Every file under `dir` with its size and modification time: equal snapshots mean nothing was touched. */
async function tree(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {}
  const walk = async (folder: string): Promise<void> => {
    for (const entry of await readdir(folder, { withFileTypes: true })) {
      const path = join(folder, entry.name)
      if (entry.isDirectory()) await walk(path)
      else {
        const info = await stat(path)
        out[path] = `${info.size}:${info.mtimeMs}`
      }
    }
  }
  await walk(dir)
  return out
}

async function exists(path: string): Promise<boolean> {
  return await stat(path).then(
    () => true,
    () => false,
  )
}

describe('careless-user mistakes against a real cooperative', () => {
  let dir: string
  let cluster: Cluster
  let nodes: NodeProcess[] = []
  let otherCharter: string
  let busyPort: Server
  let port: number
  let readOnly: string | undefined

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'coop-careless-'))
    cluster = await createCluster({
      dir,
      peers: 2,
      imagesPerPeer: 8,
      charterArgs: ['--ae-rounds', '1', '--unet-rounds', '1', '--inner-steps', '2', '--quorum', '2'],
    })
    const publisher = startNode(cluster, cluster.peers[0]!, { extra: ['--linger', '2'] })
    const addr = await bootstrapAddr(cluster.peers[0]!)
    nodes = [
      publisher,
      startNode(cluster, cluster.peers[1]!, { bootstrap: [addr], extra: ['--linger', '2'] }),
    ]
    const exits = await exitsWithin(nodes, 200_000)
    expect(exits.map((e) => e.code)).toEqual([0, 0])
    // A second cooperative's charter, signed by the same publisher key.
    otherCharter = join(dir, 'other-charter.json')
    const made = await coop([
      'charter',
      'create',
      '--config',
      'tiny',
      '--publisher',
      cluster.peers[0]!.peerId,
      '--key',
      cluster.peers[0]!.nodeKeyPath,
      '--unet-rounds',
      '5',
      '--out',
      otherCharter,
    ])
    expect(made.code, made.stderr).toBe(0)
    busyPort = createServer()
    await new Promise<void>((resolve) => busyPort.listen(0, '127.0.0.1', resolve))
    port = (busyPort.address() as { port: number }).port
    // A read-only file system (tmpfs mounted ro; CI runs as root, as this workplace does).
    const mountPoint = join(dir, 'readonly')
    await mkdir(mountPoint)
    const mounted = await new Promise<boolean>((resolve) =>
      execFile('mount', ['-t', 'tmpfs', '-o', 'ro,size=1m', 'tmpfs', mountPoint], (error) =>
        resolve(error === null),
      ),
    )
    readOnly = mounted ? mountPoint : undefined
  }, 300_000)

  afterAll(async () => {
    await stopAll(nodes.filter((n) => n.running))
    busyPort?.close()
    if (readOnly !== undefined)
      await new Promise((resolve) => execFile('umount', [readOnly as string], resolve))
    await rm(dir, { recursive: true, force: true })
  })

  const startArgs = (peerIndex: number, overrides: Record<string, string | undefined> = {}): string[] => {
    const peer = cluster.peers[peerIndex]!
    const flags: Record<string, string | undefined> = {
      '--charter': cluster.charter,
      '--store': join(dir, `new-store-${Math.random().toString(36).slice(2)}`),
      '--data': peer.data,
      '--consent': peer.consentPath,
      '--key': peer.nodeKeyPath,
      '--backend': 'cpu',
      ...overrides,
    }
    return [
      'start',
      ...Object.entries(flags).flatMap(([flag, value]) => (value === undefined ? [] : [flag, value])),
    ]
  }

  interface Mistake {
    what: string
    args: () => string[]
    code: string
    exit: number
    /** Paths that must be byte-identical afterwards (files or folders). */
    untouched?: () => string[]
    /** Paths that must not exist afterwards (the store a failed start would have created). */
    absent?: (args: string[]) => string[]
    /** Extra checks on the output. */
    also?: (run: Run) => void
  }

  const storeOf = (args: string[]): string => args[args.indexOf('--store') + 1] as string

  const mistakes: Mistake[] = [
    {
      what: "start with another coop's charter on an existing store",
      args: () =>
        startArgs(0, { '--charter': otherCharter, '--store': cluster.peers[0]!.store, '--publisher': '' }),
      code: 'STORE_OTHER_COOP',
      exit: 1,
      untouched: () => [cluster.peers[0]!.store],
    },
    {
      what: 'trace on a store path that does not exist',
      args: () => ['trace', '--store', join(dir, 'no-such-store'), '--image', cluster.peers[0]!.consentPath],
      code: 'NO_STORE',
      exit: 1,
    },
    {
      what: 'status on a mistyped store path',
      args: () => ['status', '--store', `${cluster.peers[0]!.store}x`],
      code: 'NO_STORE',
      exit: 1,
    },
    {
      what: 'status on the data folder instead of the store',
      args: () => ['status', '--store', cluster.peers[0]!.data],
      code: 'NOT_A_STORE',
      exit: 1,
    },
    {
      what: 'charter create over an existing charter',
      args: () => [
        'charter',
        'create',
        '--config',
        'tiny',
        '--publisher',
        cluster.peers[0]!.peerId,
        '--key',
        cluster.peers[0]!.nodeKeyPath,
        '--out',
        cluster.charter,
      ],
      code: 'OUTPUT_EXISTS',
      exit: 1,
      untouched: () => [cluster.charter],
    },
    {
      what: 'consent create over an existing manifest',
      args: () => [
        'consent',
        'create',
        cluster.peers[0]!.data,
        '--key',
        cluster.peers[0]!.nodeKeyPath,
        '--license',
        'CC-BY-4.0',
        '--attribution-name',
        'Ada',
        '--custodian',
        cluster.peers[0]!.peerId,
        '--out',
        cluster.peers[0]!.consentPath,
      ],
      code: 'OUTPUT_EXISTS',
      exit: 1,
      untouched: () => [cluster.peers[0]!.consentPath],
    },
    {
      what: 'data twemoji into a consented image folder',
      args: () => ['data', 'twemoji', '--out', cluster.peers[0]!.data],
      code: 'OUTPUT_EXISTS',
      exit: 1,
      untouched: () => [cluster.peers[0]!.data],
    },
    {
      what: 'keys show on a consent manifest',
      args: () => ['keys', 'show', cluster.peers[0]!.consentPath],
      code: 'KEY_FILE_INVALID',
      exit: 1,
      also: (run) => {
        expect(run.stderr).toContain('is a consent manifest, not a key file')
        expect(run.stderr).not.toContain('chmod')
      },
    },
    {
      what: "start with the rights holder's key as the node key",
      args: () => startArgs(0, { '--key': join(dir, 'rights.key') }),
      code: 'RIGHTS_KEY_AS_NODE_KEY',
      exit: 1,
      absent: (args) => [storeOf(args)],
    },
    {
      what: "start with another peer's consent manifest",
      args: () =>
        startArgs(0, { '--consent': cluster.peers[1]!.consentPath, '--data': cluster.peers[1]!.data }),
      code: 'FOREIGN_CUSTODIAN',
      exit: 1,
      absent: (args) => [storeOf(args)],
    },
    {
      what: 'start --publisher on a node the charter does not name',
      args: () => startArgs(1, { '--publisher': '' }),
      code: 'NOT_A_PUBLISHER',
      exit: 1,
      absent: (args) => [storeOf(args)],
    },
    {
      what: 'start with a consent manifest signed for another folder',
      args: () => startArgs(0, { '--data': cluster.peers[1]!.data }),
      code: 'CONSENT_DATA_MISMATCH',
      exit: 1,
      absent: (args) => [storeOf(args)],
    },
    {
      what: "start with consented images in a class folder the charter's model does not have",
      args: () => startArgs(0, { '--data': join(dir, 'renamed-class') }),
      code: 'UNKNOWN_CLASS',
      exit: 1,
      absent: (args) => [storeOf(args)],
      also: (run) => expect(run.stderr).toContain("class folder 'dinosaurs'"),
    },
    {
      what: 'start with the consent manifest as the charter',
      args: () => startArgs(0, { '--charter': cluster.peers[0]!.consentPath }),
      code: 'WRONG_FILE_KIND',
      exit: 1,
      absent: (args) => [storeOf(args)],
    },
    {
      what: 'start listening on a port in use',
      args: () => startArgs(0, { '--listen': `/ip4/127.0.0.1/tcp/${port}` }),
      code: 'PORT_IN_USE',
      exit: 1,
      absent: (args) => [storeOf(args)],
    },
    {
      what: 'start with the store under /proc',
      args: () => startArgs(0, { '--store': `/proc/coop-careless-${process.pid}` }),
      code: 'NOT_WRITABLE',
      exit: 1,
      absent: (args) => [storeOf(args)],
    },
    {
      what: 'start with the store on a read-only file system',
      args: () => startArgs(0, { '--store': join(readOnly ?? '/proc/no-readonly-mount', 'store') }),
      code: 'NOT_WRITABLE',
      exit: 1,
      also: (run) => expect(run.stderr).toContain('read-only file system (EROFS)'),
    },
    {
      what: 'sample over an existing file',
      args: () => ['sample', '--checkpoint', join(dir, 'no-matter'), '--out', cluster.charter],
      code: 'OUTPUT_EXISTS',
      exit: 1,
      untouched: () => [cluster.charter],
    },
    {
      what: 'trace --image given a manifest',
      args: () => ['trace', '--store', cluster.peers[0]!.store, '--image', cluster.peers[0]!.consentPath],
      code: 'WRONG_FILE_KIND',
      exit: 1,
    },
  ]

  beforeAll(async () => {
    // A rights-holder key file: the one that signed peer 1's manifest.
    const { writeKeyFile } = await import('../../node/keystore.ts')
    await writeKeyFile(join(dir, 'rights.key'), cluster.peers[0]!.rightsKey)
    // Peer 1's consented images, their class folder renamed to one the model does not have.
    await cp(cluster.peers[0]!.data, join(dir, 'renamed-class'), { recursive: true })
    const [classDir] = (await readdir(join(dir, 'renamed-class'), { withFileTypes: true })).filter((e) =>
      e.isDirectory(),
    )
    await rename(join(dir, 'renamed-class', classDir!.name), join(dir, 'renamed-class', 'dinosaurs'))
  })

  // Side by side: each mistake only reads what others watch (no command here opens a store's
  // database, and every start is refused before it writes), and each watches its own paths.
  it.concurrent.each(mistakes)(
    '$what: one line with $code, exit $exit, nothing left behind',
    async (mistake) => {
      const args = mistake.args().filter((a) => a !== '')
      const watched = mistake.untouched?.() ?? []
      const before = await Promise.all(
        watched.map(async (p) => ((await stat(p)).isDirectory() ? tree(p) : readFile(p, 'utf8'))),
      )
      const run = await coop(args)
      const lines = run.stderr.split('\n').filter((l) => l.trim().length > 0)
      expect(run.code, run.stderr).toBe(mistake.exit)
      expect(lines, run.stderr).toHaveLength(1)
      expect(lines[0]).toMatch(new RegExp(`^coop \\w+: ${mistake.code}: `))
      expect(run.stderr).not.toMatch(/\n\s+at /)
      const after = await Promise.all(
        watched.map(async (p) => ((await stat(p)).isDirectory() ? tree(p) : readFile(p, 'utf8'))),
      )
      expect(after).toEqual(before)
      for (const path of mistake.absent?.(args) ?? []) expect(await exists(path), path).toBe(false)
      mistake.also?.(run)
    },
  )

  it('status shows the right coop after the refused start', async () => {
    const run = await coop(['status', '--store', cluster.peers[0]!.store, '--json'])
    expect(run.code).toBe(0)
    const { coop: coopId } = JSON.parse(run.stdout) as { coop: string }
    const charter = JSON.parse(
      await readFile(join(cluster.peers[0]!.store, 'charter.json'), 'utf8'),
    ) as object
    expect(charter).toEqual(JSON.parse(await readFile(cluster.charter, 'utf8')))
    const { verifyCharter } = await import('../../protocol/charter.ts')
    expect(coopId).toBe(verifyCharter(await readFile(cluster.charter)).coopId)
  })

  it('--bootstrap without /p2p is a usage error (exit 2) naming what is missing', async () => {
    const run = await coop(startArgs(1, { '--bootstrap': '/ip4/127.0.0.1/tcp/4001' }))
    expect(run.code).toBe(2)
    expect(run.stderr).toContain('has no /p2p/<PeerId>')
  })

  it('checkpoint verify says VALID only for what it checked, with exit 3 for a partial check', async () => {
    const store = cluster.peers[1]!.store
    const dirs = await listCheckpointDirs(store)
    const last = dirs.at(-1) as string
    const alone = join(dir, 'lone-checkpoint')
    await cp(last, alone, { recursive: true })
    // Four independent runs that only read, side by side.
    const [unpinned, partial, full, required] = await Promise.all([
      // The folder's own charter.json is never trusted alone.
      coop(['checkpoint', 'verify', alone]),
      coop(['checkpoint', 'verify', alone, '--charter', cluster.charter]),
      coop(['checkpoint', 'verify', last, '--store', store]),
      coop(['checkpoint', 'verify', alone, '--charter', cluster.charter, '--require-recompute']),
    ])
    expect(unpinned.code, unpinned.stdout).toBe(1)
    expect(unpinned.stdout).toContain('INVALID CHARTER_REQUIRED')
    expect(partial.code, partial.stdout).toBe(3)
    expect(partial.stdout).toContain('VALID (signature, digests; recomputation not checked: pass --store')
    expect(full.code, full.stdout).toBe(0)
    expect(full.stdout).toContain('VALID (signature, digests, recomputation)')
    expect(required.code).toBe(1)
    expect(required.stdout).toContain('INVALID RECOMPUTE_UNAVAILABLE')
  })

  it('coop start printed no WebGPU driver noise on this GPU-less machine', async () => {
    for (const peer of cluster.peers) {
      const log = await readFile(join(peer.dir, 'node.log'), 'utf8')
      expect(log).not.toMatch(/XDG_RUNTIME_DIR|Vulkan|PhysicalDeviceVk/)
    }
  })

  describe('coop sample on a cooperative checkpoint', () => {
    it("draws a grid from the trainer's last U-Net checkpoint, finding the autoencoder beside it", async () => {
      const store = cluster.peers[1]!.store
      const unet = (await listCheckpointDirs(store)).filter((d) => d.includes('unet-r')).at(-1) as string
      const out = join(dir, 'grid.png')
      // Few DDIM steps: what is checked is where the autoencoder comes from, not the picture's quality.
      const run = await coop([
        'sample',
        '--checkpoint',
        unet,
        '--out',
        out,
        '--n',
        '4',
        '--steps',
        '4',
        '--backend',
        'cpu',
      ])
      expect(run.code, run.stderr).toBe(0)
      expect(run.stdout).toContain('provenance and digests verified')
      const png = await readFile(out)
      expect(png.subarray(1, 4).toString('latin1')).toBe('PNG')
      // The same checkpoint copied alone needs --store (or --autoencoder) to find its autoencoder.
      const alone = join(dir, 'alone', 'unet')
      await cp(unet, alone, { recursive: true })
      // Both only read: side by side.
      const [missing, viaStore] = await Promise.all([
        coop(['sample', '--checkpoint', alone, '--out', join(dir, 'g2.png'), '--backend', 'cpu']),
        coop([
          'sample',
          '--checkpoint',
          alone,
          '--store',
          store,
          '--out',
          join(dir, 'g3.png'),
          '--n',
          '4',
          '--steps',
          '4',
          '--backend',
          'cpu',
        ]),
      ])
      expect(missing.code).toBe(1)
      expect(missing.stderr).toMatch(/^coop sample: AUTOENCODER_NOT_FOUND: /)
      expect(await exists(join(dir, 'g2.png'))).toBe(false)
      expect(viaStore.code, viaStore.stderr).toBe(0)
      // Same weights, same seed: the same picture, wherever the autoencoder was found.
      expect(await readFile(join(dir, 'g3.png'))).toEqual(png)
    })

    it('refuses an autoencoder that is not the one the provenance names, and a tampered model', async () => {
      const store = cluster.peers[1]!.store
      const dirs = await listCheckpointDirs(store)
      const unet = dirs.filter((d) => d.includes('unet-r')).at(-1) as string
      const genesisAe = dirs.find((d) => d.endsWith('autoencoder-r000000')) as string
      const tampered = join(dir, 'tampered', 'unet')
      await cp(unet, tampered, { recursive: true })
      const model = await readFile(join(tampered, 'model.safetensors'))
      model[model.length - 1] = model[model.length - 1]! ^ 1
      await writeFile(join(tampered, 'model.safetensors'), model)
      // Two independent refusals, side by side.
      const [wrong, bad] = await Promise.all([
        coop(['sample', '--checkpoint', unet, '--autoencoder', genesisAe, '--out', join(dir, 'w.png')]),
        coop(['sample', '--checkpoint', tampered, '--store', store, '--out', join(dir, 't.png')]),
      ])
      expect(wrong.code).toBe(1)
      expect(wrong.stderr).toMatch(/^coop sample: AUTOENCODER_MISMATCH: /)
      expect(bad.code).toBe(1)
      expect(bad.stderr).toMatch(/^coop sample: FILE_DIGEST_MISMATCH: /)
    })
  })
})
