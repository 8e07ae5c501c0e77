// `coop start`: runs one peer of a cooperative until its rounds are done or it is told to stop.
// stdout: on a terminal, one summary line per round under a live line (node/monitor/node-view.ts);
// stderr: logs (human lines on a terminal, pino JSON in a pipe or with --log json). The node writes <store>/addrs.json
// once it listens (peerId, multiaddrs, pid), which tests and `coop demo` read to bootstrap others.
import { parseArgs } from 'node:util'
import type { CoopPeer } from '../../peer.ts'
import { componentLogger, requestedLogFormat } from '../../log.ts'
import { screen } from '../../console/screen.ts'
import { createNodeView } from '../../monitor/node-view.ts'
import { createQuorumWatch } from '../../monitor/quorum-watch.ts'
import { createRejectionNotices } from '../../monitor/rejection-notices.ts'
import { DEFAULT_LINGER_SECONDS } from '../../round/constants.ts'
import type { Command } from '../command.ts'
import { UsageError } from '../command.ts'
import { threadsFlag } from '../args.ts'
import { errorCode } from '../../../protocol/coded-error.ts'
import { rm } from 'node:fs/promises'
import { createPeerWatch } from '../../p2p/peer-watch.ts'
import { type Collector, createCollector } from '../../monitor/collector.ts'
import { createNodeMetrics, type NodeMetrics } from '../../monitor/metrics.ts'
import { parseHttpAddress, startStatusServer } from '../../monitor/server.ts'
import { StartError } from '../../start/errors.ts'
import { preflight } from '../../start/preflight.ts'
import { ensureFolder } from '../../store/dirs.ts'
import { backendFlag, REQUESTED_BACKENDS } from '../args.ts'

const usage = `Usage: coop start --charter <file> --store <dir> --data <dir> --consent <manifest.json>... [options]

Runs a peer of the cooperative: trains on the consented images under --data, exchanges
contributions and checkpoints with the other peers, and (with --publisher) closes rounds.
Stops after the charter's last round (or --rounds), or cleanly on SIGINT/SIGTERM.

Files it writes under --store: db/ (LevelDB), blobs/, checkpoints/<phase>-r<NNNNNN>/,
checkpoints/latest.json, addrs.json, snapshots/status.json; drop a revocation or manifest
JSON into <store>/inbox/ to publish it to the cooperative.

Options:
  --charter <file>        the signed charter (coop charter create)
  --store <dir>           this node's store (created if missing)
  --data <dir>            this node's images (<dir>/<class>/*.png)
  --consent <file>        a consent manifest naming this node as custodian (repeatable)
  --key <file>            node key (default <store>/node.key, created on first start)
  --listen <multiaddr>    listen address (repeatable; default /ip4/127.0.0.1/tcp/0)
  --bootstrap <multiaddr> a peer to dial, with /p2p/<peerId> (repeatable)
  --publisher             close rounds and sign checkpoints (this node must be a charter publisher)
  --no-train              do not train (a publisher that only aggregates)
  --rounds <n>            stop after global round n (default: all the charter's rounds)
  --backend <name>        ${REQUESTED_BACKENDS.join('|')} (default auto)
  --threads <n>           wasm: threads per training step, data-parallel (default min(2, cores))
  --mdns                  discover peers on the LAN by multicast DNS
  --linger <seconds>      keep serving after the last round (default ${DEFAULT_LINGER_SECONDS}; 0 exits at once)
  --stay                  keep running after the last round until signalled
  --autoencoder <dir>     the component autoencoder checkpoint the charter pins (needed on the
                          publisher; other peers fetch it by digest)
  --http [host:]port      serve a status page (/), its data (/status.json) and Prometheus
                          metrics (/metrics); host defaults to 127.0.0.1 (off by default)`

function wholeNumber(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(Number(value)))
    throw new UsageError(`--${flag} must be a whole number, got '${value}'`)
  return Number(value)
}

/**
 * libp2p reports a taken port as UnsupportedListenAddressesError (or the socket's EADDRINUSE):
 * one StartError line instead of a stack. Undefined for any other error.
 */
function listenError(err: unknown, listen: string[]): StartError | undefined {
  const name = err instanceof Error ? err.name : ''
  const code = errorCode(err)
  if (code === 'EADDRINUSE' || (err instanceof Error && /EADDRINUSE/.test(err.message)))
    return new StartError(
      'PORT_IN_USE',
      `--listen ${listen.join(' ')}: the port is in use by another process`,
      { cause: err },
    )
  if (name === 'UnsupportedListenAddressesError' || code === 'ERR_NO_VALID_ADDRESSES')
    return new StartError(
      'LISTEN_FAILED',
      `cannot listen on ${listen.join(' ')} (in use, or not an address of this machine)`,
      { cause: err },
    )
  return undefined
}

export const command: Command = {
  summary: 'run a peer of a cooperative (train, contribute, verify, publish)',
  usage,
  async run(argv) {
    const { values } = parseArgs({
      args: argv,
      strict: true,
      options: {
        charter: { type: 'string' },
        store: { type: 'string' },
        data: { type: 'string' },
        consent: { type: 'string', multiple: true },
        key: { type: 'string' },
        listen: { type: 'string', multiple: true },
        bootstrap: { type: 'string', multiple: true },
        publisher: { type: 'boolean' },
        'no-train': { type: 'boolean' },
        rounds: { type: 'string' },
        backend: { type: 'string' },
        threads: { type: 'string' },
        mdns: { type: 'boolean' },
        linger: { type: 'string' },
        stay: { type: 'boolean' },
        autoencoder: { type: 'string' },
        http: { type: 'string' },
      },
    })
    for (const flag of ['charter', 'store', 'data'] as const)
      if (values[flag] === undefined) throw new UsageError(`--${flag} is required`)
    const train = values['no-train'] !== true
    if (train && (values.consent ?? []).length === 0)
      throw new UsageError('at least one --consent manifest is required to train (or --no-train)')
    const backend = backendFlag(values.backend)
    const threads = threadsFlag(values.threads)
    const rounds = wholeNumber('rounds', values.rounds)
    if (rounds === 0) throw new UsageError('--rounds must be at least 1')
    const linger = wholeNumber('linger', values.linger) ?? DEFAULT_LINGER_SECONDS
    const log = componentLogger('start')
    const listen = values.listen ?? ['/ip4/127.0.0.1/tcp/0']
    const bootstrap = values.bootstrap ?? []
    const consent = values.consent ?? []
    // Everything given must fit together before anything is written (node/start/preflight.ts).
    const checked = await preflight({
      charter: values.charter as string,
      store: values.store as string,
      data: values.data as string,
      consent,
      ...(values.key === undefined ? {} : { key: values.key }),
      listen,
      bootstrap,
      publisher: values.publisher === true,
      train,
    })
    // Loaded only once the arguments fit: a mistaken start answers without loading libp2p and the trainer.
    const { startPeer } = await import('../../peer.ts')
    const http = values.http === undefined ? undefined : parseHttpAddress(values.http)
    // Bound before the store is created: a taken --http port leaves nothing behind.
    let monitor: { metrics?: NodeMetrics; collector?: Collector } = {}
    const server =
      http === undefined
        ? undefined
        : await startStatusServer(http, {
            registry: () => monitor.metrics?.registry,
            view: () => monitor.collector?.view(),
            log: componentLogger('http'),
          })
    const { created } = await ensureFolder(values.store as string)

    let peer: CoopPeer
    try {
      peer = await startPeer({
        charter: values.charter as string,
        store: values.store as string,
        data: values.data as string,
        consent,
        ...(values.key === undefined ? {} : { key: values.key }),
        listen,
        bootstrap,
        publisher: values.publisher === true,
        ...(rounds === undefined ? {} : { rounds }),
        backend,
        ...(threads === undefined ? {} : { threads }),
        mdns: values.mdns === true,
        train,
        ...(values.autoencoder === undefined ? {} : { autoencoder: values.autoencoder }),
        log,
      })
    } catch (err) {
      // A store this start created holds nothing worth keeping: remove it, so a retry starts clean.
      // An existing store keeps what it had (a retry reuses it: nothing here is half-written).
      if (!checked.storeExisted && created !== undefined) await rm(created, { recursive: true, force: true })
      await server?.stop()
      throw listenError(err, listen) ?? err
    }
    const watch = createPeerWatch(
      { publishers: peer.charter.publishers, self: peer.peerId },
      { libp2p: peer.host.libp2p, log: componentLogger('peers') },
    )
    watch.start()
    if (server !== undefined) {
      const metrics = createNodeMetrics({ coop: peer.coopId, peer: peer.peerId })
      monitor = { metrics, collector: createCollector(peer, metrics.sink) }
      monitor.collector?.start()
    }

    // The live line is for a person at a terminal: not in a pipe, nor when they asked for JSON
    // (with stderr in a file, the terminal still shows the round lines and the live line).
    const live = process.stdout.isTTY === true && requestedLogFormat() !== 'json'
    const view = createNodeView(
      peer,
      {
        publisher: values.publisher === true,
        train,
        ...(live ? { terminal: { out: process.stdout, err: process.stderr } } : {}),
      },
      { screen, log },
    )
    view.start()
    const notices = createRejectionNotices(
      {},
      {
        events: peer.engine.events,
        validationStats: () => peer.host.validationStats(),
        log: componentLogger('round'),
      },
    )
    notices.start()
    const quorum =
      values.publisher === true
        ? createQuorumWatch(
            {
              quorum: peer.charter.rounds.quorum,
              deadlineSeconds: peer.charter.rounds.deadlineSeconds,
              selfTrains: train,
              self: peer.peerId,
            },
            {
              events: peer.engine.events,
              connectedPeers: () => peer.host.connectedPeers(),
              running: () => peer.engine.statusSnapshot().state === 'running',
              log: componentLogger('round'),
            },
          )
        : undefined
    quorum?.start()

    let signalled = 0
    const stopped = new Promise<number>((resolve) => {
      const onSignal = (signal: NodeJS.Signals): void => {
        signalled += 1
        if (signalled > 1) {
          // A second signal means "now": the store's synced writes keep what was acknowledged.
          process.exit(130)
        }
        log.info({ signal }, 'stopping')
        resolve(0)
      }
      process.on('SIGINT', onSignal)
      process.on('SIGTERM', onSignal)
    })
    // The linger is for serving slower peers after the last round; a signal ends it, and its
    // timer must not keep the process alive once the node has stopped (it did: 10 s after every
    // Ctrl-C and every demo run, since the engine's `finished` also resolves when it stops).
    let ending = false
    let endLinger: (() => void) | undefined
    let lingerTimer: NodeJS.Timeout | undefined
    const finished = peer.finished.then(async () => {
      if (values.stay === true) return await new Promise<number>(() => undefined)
      if (ending) return 0
      await new Promise<void>((resolve) => {
        endLinger = resolve
        lingerTimer = setTimeout(resolve, linger * 1000)
      })
      return 0
    })
    let code = 0
    try {
      code = await Promise.race([stopped, finished])
    } catch (err) {
      log.error({ err, code: errorCode(err) }, 'node failed')
      code = 1
    } finally {
      ending = true
      clearTimeout(lingerTimer)
      endLinger?.()
      // The last live line first: it tells how the run ended, before the engine stops.
      view.stop({ stopped: signalled > 0 || code !== 0 })
      quorum?.stop()
      notices.stop()
      watch.stop()
      monitor.collector?.stop()
      await peer.stop()
      await server?.stop()
    }
    return code
  },
}
