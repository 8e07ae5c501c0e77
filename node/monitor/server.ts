// `coop start --http [host:]port`: a small HTTP server for people and monitoring systems, off by
// default and on loopback unless a host is given. GET / is a self-contained status page (no
// external resource: it works offline), GET /status.json what the page shows, GET /metrics the
// Prometheus text format. Nothing else is served and nothing can be changed through it.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { Logger } from 'pino'
import type { Registry } from 'prom-client'
import { UsageError } from '../cli/command.ts'
import { errorCode } from '../../protocol/coded-error.ts'
import { StartError } from '../start/errors.ts'
import type { StatusView } from './collector.ts'
import { statusPageHtml } from './page.ts'

export interface HttpAddress {
  host: string
  port: number
}

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost'])

/** `8080` (loopback), `127.0.0.1:8080`, `[::1]:8080`, `0.0.0.0:8080` (every interface: explicit only). */
export function parseHttpAddress(text: string): HttpAddress {
  const match = /^(?:(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):)?(\d{1,5})$/.exec(text)
  const port = Number(match?.[2])
  if (match === null || !Number.isInteger(port) || port > 65535)
    throw new UsageError(`--http takes [host:]port, e.g. 127.0.0.1:8080, got '${text}'`)
  const host = (match[1] ?? '127.0.0.1').replace(/^\[|\]$/g, '')
  return { host, port }
}

export interface StatusServer {
  readonly url: string
  stop(): Promise<void>
}

export async function startStatusServer(
  address: HttpAddress,
  modules: { registry: () => Registry | undefined; view: () => StatusView | undefined; log: Logger },
): Promise<StatusServer> {
  const page = statusPageHtml()
  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    res.setHeader('X-Content-Type-Options', 'nosniff')
    res.setHeader('Cache-Control', 'no-store')
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET, HEAD' }).end()
      return
    }
    const path = (req.url ?? '/').split('?')[0]
    if (path === '/') {
      // The page's script and style are inline; nothing may be loaded from elsewhere.
      res.writeHead(200, {
        'Content-Type': 'text/html; charset=utf-8',
        'Content-Security-Policy':
          "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:",
      })
      res.end(page)
    } else if (path === '/status.json') {
      const view = modules.view()
      res.writeHead(view === undefined ? 503 : 200, { 'Content-Type': 'application/json' })
      res.end(JSON.stringify(view ?? { state: 'starting' }))
    } else if (path === '/metrics') {
      const registry = modules.registry()
      if (registry === undefined) {
        res.writeHead(503, { 'Content-Type': 'text/plain' }).end('starting\n')
        return
      }
      const text = await registry.metrics()
      res.writeHead(200, { 'Content-Type': registry.contentType }).end(text)
    } else {
      res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found\n')
    }
  }
  const server: Server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      modules.log.warn({ err }, 'status request failed')
      if (!res.headersSent) res.writeHead(500).end()
    })
  })
  // Slow or idle clients cannot hold sockets open for long.
  server.requestTimeout = 10_000
  server.headersTimeout = 5_000
  server.keepAliveTimeout = 5_000
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) => {
      const code = errorCode(err)
      reject(
        code === 'EADDRINUSE'
          ? new StartError(
              'PORT_IN_USE',
              `--http ${address.host}:${address.port}: the port is in use by another process`,
            )
          : new StartError(
              'LISTEN_FAILED',
              `--http ${address.host}:${address.port}: cannot listen (${code ?? String(err)})`,
            ),
      )
    })
    server.listen({ host: address.host, port: address.port }, () => resolve())
  })
  const bound = server.address()
  const port = typeof bound === 'object' && bound !== null ? bound.port : address.port
  const host = address.host.includes(':') ? `[${address.host}]` : address.host
  const url = `http://${host}:${port}/`
  if (!LOOPBACK.has(address.host))
    modules.log.warn({ url }, 'status page reachable from other machines: it shows peer ids and losses')
  modules.log.info({ url }, 'status page listening')
  return {
    url,
    async stop() {
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}
