import type { IncomingMessage } from 'node:http'
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyServerOptions } from 'fastify'
import helmet from '@fastify/helmet'
import { WebSocketServer, createWebSocketStream } from 'ws'
import { Server } from 'socket.io'
import type { Adapter } from 'socket.io-adapter'
import type { Logger } from 'pino'
import type { ZodType } from 'zod'
import { CodedError, ERRORS, LIVE_NAMESPACE, type ErrorCode, type ErrorReply, type Principal } from '../protocol/index.ts'
import { RECOVERY_WINDOW_MS, recoveryAdapter } from '../bridge/recovery.ts'
import type { OnLimit } from '../protocol/limits.ts'
import type { Duplex } from 'node:stream'
import { loadDashboard } from './dashboard.ts'
import { createOriginCheck, type OriginCheckOptions } from './origin.ts'

declare module 'fastify' {
  interface FastifyRequest {
    /** Who is asking: set by the `onRequest` hook, before any route runs. */
    principal: Principal
  }
}

/** Sends `{ error: { code, message } }` with the status the catalogue gives the code. */
export function sendError(reply: FastifyReply, code: ErrorCode, message: string): FastifyReply {
  return reply.code(ERRORS[code].status ?? 500).send({ error: { code, message } } satisfies ErrorReply)
}

/** Path of MQTT over WebSocket on the HTTP port. */
export const MQTT_WS_PATH = '/mqtt'

export interface HttpServerOptions extends OriginCheckOptions {
  /** Largest MQTT packet the broker takes: a socket message carries one payload. */
  maxPacketSize: number
  /** Serves MQTT over WebSocket at `/mqtt`, when there is an embedded broker to serve it. */
  handleMqtt?: (stream: Duplex, req: IncomingMessage) => void
  /** Who a request comes from; the Policy decides what it may see. A CodedError refuses the request. */
  identify: (req: IncomingMessage) => Promise<Principal>
  /** A certificate and key (PEM): HTTPS and WSS instead of HTTP and WS. */
  tls?: { cert: Buffer; key: Buffer }
  /** Built dashboard files; a short page explains how to build them when missing. */
  dashboardDir: string
  /** socket.io connections at once, on every namespace together. */
  maxSockets: number
  /** Bytes of broadcasts kept for `/live` clients that reconnect within a minute. */
  maxRecoveryBytes: number
  /** socket.io's adapter instead of the bounded in-memory one: a cluster's, shared through Redis. */
  adapter?: typeof Adapter
  logger?: Logger
  onLimit?: OnLimit
}

export interface HttpServer {
  /** Routes are added here by the composition root. */
  readonly fastify: FastifyInstance
  readonly server: FastifyInstance['server']
  readonly io: Server
  close(): Promise<void>
}

/**
 * The HTTP port: the dashboard, `/api`, socket.io, and MQTT over WebSocket at
 * `/mqtt`. Every request must name this server in `Host`, and a browser's
 * `Origin` must be this server's or one allowed, so neither another web page
 * nor a DNS-rebinding one can drive the devices.
 */
export async function createHttpServer(opts: HttpServerOptions): Promise<HttpServer> {
  const check = createOriginCheck(opts)
  const fastify = Fastify({
    ...(opts.tls && { https: { cert: opts.tls.cert, key: opts.tls.key } }),
    ...(opts.logger ? { loggerInstance: opts.logger as FastifyBaseLogger } : { logger: false }),
    // a line per request would drown what matters; failures are logged by the error handler
    logController: new LogController({ disableRequestLogging: true }),
    // clients that never finish a request must not hold a connection forever
    requestTimeout: 30_000,
    // no route takes a body yet; the smallest sane bound until one does
    bodyLimit: 64 * 1024,
    // Route schemas are zod schemas, checked with zod: the same validator as the rest of the wire
    // contract, and neither ajv nor fast-json-stringify is loaded (a fifth of the start-up time).
    schemaController: {
      compilersFactory: {
        // fastify types these as ajv's; at run time it calls them with { schema, httpPart } and reads { value, error }
        buildValidator: (() => zodValidator) as unknown as NonNullable<NonNullable<FastifyServerOptions['schemaController']>['compilersFactory']>['buildValidator'],
        buildSerializer: () => () => (data: unknown) => JSON.stringify(data),
      },
    },
    frameworkErrors(err, req, res) {
      const reply = res as FastifyReply
      const pathname = req.url.split('?')[0]
      if (err.code === 'FST_ERR_BAD_URL') return sendError(reply, 'E_INVALID_REQUEST', `malformed percent-encoding in ${pathname}`)
      return sendError(reply, 'E_INVALID_REQUEST', err.message)
    },
  })

  await fastify.register(helmet, {
    // HSTS only makes sense over TLS; behind a TLS proxy, the proxy sets it
    hsts: opts.tls ? { maxAge: 15_552_000 } : false,
    contentSecurityPolicy: {
      useDefaults: false,
      directives: {
        defaultSrc: ["'self'"],
        scriptSrc: ["'self'"],
        // Svelte sets element styles through the CSSOM, which CSP does not govern; no inline <style> is needed
        styleSrc: ["'self'"],
        imgSrc: ["'self'", 'data:'],
        fontSrc: ["'self'"],
        // 'self' covers ws:// and wss:// to this origin (CSP level 3)
        connectSrc: ["'self'"],
        objectSrc: ["'none'"],
        baseUri: ["'self'"],
        formAction: ["'self'"],
        frameAncestors: ["'none'"],
      },
    },
  })

  fastify.decorateRequest('principal', null as unknown as Principal)
  // Where the Policy plugs in: every route after this knows who asks.
  fastify.addHook('onRequest', async (req, reply) => {
    const refused = check(req.raw)
    if (refused) return sendError(reply, refused.code, refused.message)
    try {
      req.principal = await opts.identify(req.raw)
    } catch (err) {
      if (err instanceof CodedError) return sendError(reply, err.code, err.message)
      throw err
    }
  })

  fastify.setErrorHandler((err: Error & { statusCode?: number; validation?: unknown; validationContext?: string }, req, reply) => {
    // a schema refused a parameter: say which, as "querystring/limit must be <= 1000"
    if (err.validation) return sendError(reply, 'E_INVALID_REQUEST', err.message)
    if (err.statusCode && err.statusCode < 500) return sendError(reply, 'E_INVALID_REQUEST', err.message)
    req.log.error({ err, url: req.url }, 'request failed')
    return sendError(reply, 'E_INTERNAL', 'internal error; the server log has the details')
  })

  const dashboard = loadDashboard(opts.dashboardDir)
  fastify.setNotFoundHandler((req, reply) => {
    const pathname = req.url.split('?')[0]!
    if (pathname.startsWith('/api/')) return sendError(reply, 'E_NOT_FOUND', `no such endpoint: ${pathname}`)
    if (pathname === MQTT_WS_PATH) {
      void reply.header('upgrade', 'websocket')
      return sendError(reply, 'E_UPGRADE_REQUIRED', `${MQTT_WS_PATH} is MQTT over WebSocket: point an MQTT client at ws://${req.headers.host ?? '<host>'}${MQTT_WS_PATH}`)
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') return sendError(reply, 'E_METHOD_NOT_ALLOWED', 'use GET')
    if (!dashboard) return reply.type('text/html; charset=utf-8').send(UNBUILT_PAGE)
    // the dashboard routes in the fragment (#/devices/x); any other path is the app too
    const file = dashboard.get(pathname) ?? dashboard.get('/index.html')!
    void reply.header('etag', file.etag).header('cache-control', file.immutable ? 'public, max-age=31536000, immutable' : 'no-cache')
    if (req.headers['if-none-match'] === file.etag) return reply.code(304).send()
    return reply.type(file.type).send(file.body)
  })

  const io = new Server(fastify.server, {
    serveClient: false,
    // A /live client away for up to a minute is sent what it missed, from a bounded buffer
    // (bridge/recovery.ts). The handshake middlewares run again: a recovered socket is
    // authenticated anew, never handed the principal of the session it restores.
    connectionStateRecovery: { maxDisconnectionDuration: RECOVERY_WINDOW_MS, skipMiddlewares: false },
    adapter: opts.adapter ?? recoveryAdapter(LIVE_NAMESPACE, opts.maxRecoveryBytes, opts.onLimit ?? (() => {})),
    // a socket message carries at most one MQTT payload, maybe as base64, plus its envelope
    maxHttpBufferSize: Math.ceil(opts.maxPacketSize * 1.4) + 4096,
    // we answer upgrades on other paths ourselves (MQTT over WebSocket)
    destroyUpgrade: false,
    allowRequest(req, callback) {
      const refused = check(req)
      if (refused) return callback(refused.message, false)
      if (io.engine.clientsCount >= opts.maxSockets) {
        // engine.io answers a refusal with HTTP 403 and this message; socket.io clients see a transport error
        opts.onLimit?.('sockets', { sockets: io.engine.clientsCount })
        return callback(`this server takes at most ${opts.maxSockets} socket.io connections (--max-sockets)`, false)
      }
      callback(null, true)
    },
  })

  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: opts.maxPacketSize + 16,
    // MQTT over WebSocket is the same broker a web page could drive: same rules as socket.io
    verifyClient: ({ req }, done) => {
      const refused = check(req)
      if (refused) done(false, refused.status, refused.message)
      else done(true)
    },
  })
  fastify.server.on('upgrade', (req: IncomingMessage, socket, head) => {
    const pathname = new URL(req.url ?? '/', 'http://localhost').pathname
    const { handleMqtt } = opts
    if (pathname === MQTT_WS_PATH && handleMqtt) {
      wss.handleUpgrade(req, socket, head, (ws) => {
        const stream = createWebSocketStream(ws)
        // errors end the MQTT session; the broker reports them, the stream must not throw
        stream.on('error', () => stream.destroy())
        handleMqtt(stream, req)
      })
      return
    }
    if (pathname.startsWith('/socket.io/')) return // engine.io's own upgrade listener takes it
    socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n')
  })
  fastify.server.on('connection', (socket) => socket.setNoDelay(true))

  async function close(): Promise<void> {
    for (const ws of wss.clients) ws.terminate()
    wss.close()
    await new Promise<void>((resolve) => io.close(() => resolve()))
    fastify.server.closeAllConnections()
    await fastify.close()
  }

  return { fastify, server: fastify.server, io, close }
}

/** A fastify validator compiler for zod schemas: the parsed value, or an error that names the field. */
function zodValidator({ schema, httpPart }: { schema: unknown; httpPart?: string }) {
  return (data: unknown) => {
    const result = (schema as ZodType).safeParse(data)
    if (result.success) return { value: result.data }
    const issue = result.error.issues[0]
    return { error: new Error(`${httpPart ?? 'request'}/${issue?.path.join('/') ?? ''}: ${issue?.message ?? 'invalid'}`) }
  }
}

const UNBUILT_PAGE = `<!doctype html><meta charset="utf-8"><title>Pulseboard</title>
<h1>Pulseboard is running</h1>
<p>The dashboard has not been built. Run <code>npm run build</code>, then reload this page.</p>
<p>The MQTT broker and the socket.io bridge work without it; see <a href="/api/health">/api/health</a>.</p>`
