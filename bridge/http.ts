import http from 'node:http'
import fs from 'node:fs'
import path from 'node:path'
import { WebSocketServer, createWebSocketStream } from 'ws'
import { Server } from 'socket.io'
import sirv from 'sirv'
import type { Broker } from '../broker/broker.ts'

/** Path of MQTT over WebSocket on the HTTP port. */
export const MQTT_WS_PATH = '/mqtt'

export interface HttpServerOptions {
  broker: Broker
  /** Built dashboard files; a short page explains how to build them when missing. */
  dashboardDir: string
}

/** What a GET route answers: JSON unless `contentType` says otherwise. */
export interface RouteReply {
  status?: number
  body: unknown
  contentType?: string
}

/** Answers a GET; `params` holds the `:name` parts of the route's path. */
export type RouteHandler = (params: Record<string, string>, query: URLSearchParams) => RouteReply | Promise<RouteReply>

export interface HttpServer {
  readonly server: http.Server
  readonly io: Server
  /** Adds a GET route such as `/api/devices/:id`. */
  get(path: string, handler: RouteHandler): void
  close(): Promise<void>
}

export function createHttpServer(opts: HttpServerOptions): HttpServer {
  const { broker } = opts
  const dashboard = fs.existsSync(path.join(opts.dashboardDir, 'index.html'))
    ? sirv(opts.dashboardDir, { single: true, etag: true, gzip: false })
    : null

  const routes: { pattern: RegExp; handler: RouteHandler }[] = []

  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost')
    for (const { pattern, handler } of routes) {
      const match = pattern.exec(url.pathname)
      if (!match) continue
      if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, { status: 405, body: { error: 'use GET' } })
      const params = decodeParams(match.groups)
      if (!params) return send(res, { status: 400, body: { error: `malformed percent-encoding in ${url.pathname}` } })
      Promise.resolve()
        .then(() => handler(params, url.searchParams))
        .then(
          (reply) => send(res, reply),
          (err: Error) => send(res, { status: 500, body: { error: err.message } }),
        )
      return
    }
    if (url.pathname.startsWith('/api/')) return send(res, { status: 404, body: { error: `no such endpoint: ${url.pathname}` } })
    if (dashboard) return dashboard(req, res, () => send(res, { status: 404, body: { error: 'not found' } }))
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' })
    res.end(UNBUILT_PAGE)
  })

  const io = new Server(server, {
    serveClient: false,
    // a socket message carries at most one MQTT payload, maybe as base64, plus its envelope
    maxHttpBufferSize: Math.ceil(broker.maxPacketSize * 1.4) + 4096,
    // we answer upgrades on other paths ourselves (MQTT over WebSocket)
    destroyUpgrade: false,
  })

  const wss = new WebSocketServer({ noServer: true, maxPayload: broker.maxPacketSize + 16 })
  server.on('upgrade', (req, socket, head) => {
    const pathname = new URL(req.url ?? '/', 'http://localhost').pathname
    if (pathname === MQTT_WS_PATH) {
      wss.handleUpgrade(req, socket, head, (ws) => {
        const stream = createWebSocketStream(ws)
        // errors end the MQTT session; aedes reports them, the stream must not throw
        stream.on('error', () => stream.destroy())
        broker.handle(stream, req)
      })
      return
    }
    if (pathname.startsWith('/socket.io/')) return // engine.io's own upgrade listener takes it
    socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n')
  })
  server.on('connection', (socket) => socket.setNoDelay(true))

  async function close(): Promise<void> {
    for (const ws of wss.clients) ws.terminate()
    wss.close()
    await new Promise<void>((resolve) => {
      io.close(() => resolve())
      server.closeAllConnections()
    })
  }

  function get(path: string, handler: RouteHandler): void {
    const source = path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&').replace(/:(\w+)/g, '(?<$1>[^/]+)')
    routes.push({ pattern: new RegExp(`^${source}$`), handler })
  }

  return { server, io, get, close }
}

function send(res: http.ServerResponse, reply: RouteReply): void {
  const json = reply.contentType === undefined
  res.writeHead(reply.status ?? 200, {
    'content-type': reply.contentType ?? 'application/json; charset=utf-8',
    'cache-control': 'no-store',
  })
  res.end(json ? JSON.stringify(reply.body) : String(reply.body))
}

const UNBUILT_PAGE = `<!doctype html><meta charset="utf-8"><title>Pulseboard</title>
<body style="font:16px system-ui;max-width:40em;margin:4em auto">
<h1>Pulseboard is running</h1>
<p>The dashboard has not been built. Run <code>npm run build</code>, then reload this page.</p>
<p>The MQTT broker and the socket.io bridge work without it; see <a href="/api/health">/api/health</a>.</p>`

/** URL-decoded `:name` parts, or null when one is not valid percent-encoding. */
function decodeParams(groups: Record<string, string> | undefined): Record<string, string> | null {
  const params: Record<string, string> = {}
  try {
    for (const [name, value] of Object.entries(groups ?? {})) params[name] = decodeURIComponent(value)
  } catch {
    return null
  }
  return params
}
