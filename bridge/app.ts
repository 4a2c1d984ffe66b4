import net from 'node:net'
import { fileURLToPath } from 'node:url'
import type { Logger } from 'pino'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { createBroker, type Broker, type BrokerOptions } from '../broker/broker.ts'
import { createBridge, type Bridge, type BridgeOptions } from './bridge.ts'
import { createHttpServer, type HttpServer } from './http.ts'
import { createLimitLog } from './limit-log.ts'
import { createMetrics } from './metrics.ts'
import type { OriginCheckOptions } from './origin.ts'
import type { HealthReport } from '../protocol/index.ts'

export interface PulseboardOptions extends BrokerOptions, BridgeOptions, OriginCheckOptions {
  /** MQTT over TCP. 0 picks a free port. @default 1883 */
  mqttPort?: number
  /** HTTP: dashboard, API, socket.io and MQTT over WebSocket. 0 picks a free port. @default 5000 */
  port?: number
  /** Address to listen on; devices on the LAN must reach it. @default all interfaces */
  host?: string
  /** Built dashboard. @default dashboard/dist of this package */
  dashboardDir?: string
  /** socket.io connections at once, on / and /live together. @default 500 */
  maxSockets?: number
  logger?: Logger
}

export const pulseboardDefaults = {
  mqttPort: 1883,
  port: 5000,
  maxSockets: 500,
  dashboardDir: fileURLToPath(new URL('../dashboard/dist', import.meta.url)),
}

/** Items in one page of `/api/devices` or `/api/topics`: the default, and the most a client may ask for. */
export const PAGE = { default: 500, max: 1000 }

/** A listener that could not start because its port is taken. */
export class PortInUseError extends Error {
  constructor(
    readonly listener: 'mqtt' | 'http',
    readonly port: number,
  ) {
    super(`port ${port} (${listener}) is already in use`)
    this.name = 'PortInUseError'
  }
}

export interface Pulseboard {
  readonly broker: Broker
  readonly bridge: Bridge
  readonly http: HttpServer
  /** Starts both listeners; resolves with the ports actually bound. */
  listen(): Promise<{ mqttPort: number; port: number }>
  /** Logs and counts an error nothing else caught (the CLI's process-level handler calls it). */
  uncaught(err: unknown, origin: string): void
  /** Stops accepting, then closes in reverse order of creation. */
  close(): Promise<void>
}

const pageQuery = {
  type: 'object',
  properties: {
    limit: { type: 'integer', minimum: 1, maximum: PAGE.max, default: PAGE.default },
    cursor: { type: 'string', maxLength: 65535 },
  },
} as const

export async function createPulseboard(opts: PulseboardOptions = {}): Promise<Pulseboard> {
  const startedAt = Date.now()
  const logger = opts.logger
  const limitLog = createLimitLog(logger)
  const onLimit = limitLog.report
  const broker = await createBroker({ ...opts, onLimit })
  const http = await createHttpServer({
    broker,
    dashboardDir: opts.dashboardDir ?? pulseboardDefaults.dashboardDir,
    maxSockets: opts.maxSockets ?? pulseboardDefaults.maxSockets,
    ...(opts.allowOrigins && { allowOrigins: opts.allowOrigins }),
    ...(opts.publicUrl && { publicUrl: opts.publicUrl }),
    ...(logger && { logger }),
    onLimit,
  })
  const bridge = createBridge(broker, http.io, { ...opts, onLimit })
  let uncaughtErrors = 0
  const metrics = createMetrics(broker, bridge, limitLog.hits, () => uncaughtErrors)
  const { fastify } = http
  const { registry } = bridge

  let mqttPort = opts.mqttPort ?? pulseboardDefaults.mqttPort
  fastify.get('/api/health', async () => ({
    status: 'ok',
    uptime: (Date.now() - startedAt) / 1000,
    mqtt: {
      port: mqttPort,
      clients: broker.stats.clients,
      messagesIn: broker.stats.messagesIn,
      messagesOut: broker.stats.messagesOut,
    },
    sockets: { chat: bridge.chat.sockets.size, live: bridge.live.sockets.size },
    bridge: { ...bridge.stats, ...bridge.fanout.stats },
    usage: { ...broker.persistence.usage, ...registry.usage },
    limits: limitLog.hits,
  } satisfies HealthReport))
  fastify.get('/metrics', async (_req, reply) => reply.type(metrics.contentType).send(await metrics.metrics()))

  type Paged = FastifyRequest<{ Querystring: { limit: number; cursor?: string } }>
  /** Sends one page; `Link: <…>; rel="next"` (RFC 8288) says where the next one is, so bodies stay plain arrays. */
  function sendPage<T>(req: Paged, reply: FastifyReply, items: T[], key: (item: T) => string): T[] {
    const { limit } = req.query
    const last = items[limit - 1]
    if (items.length > limit && last !== undefined) {
      const next = `${req.url.split('?')[0]}?limit=${limit}&cursor=${encodeURIComponent(key(last))}`
      void reply.header('link', `<${next}>; rel="next"`)
    }
    return items.slice(0, limit)
  }

  const unknownDevice = (reply: FastifyReply, id: string) => reply.code(404).send({ error: `no device ${JSON.stringify(id)} is known` })
  fastify.get('/api/devices', { schema: { querystring: pageQuery } }, async (req: Paged, reply) =>
    sendPage(req, reply, registry.page(req.query.limit + 1, req.query.cursor), (d) => d.id),
  )
  fastify.get('/api/devices/:id', async (req: FastifyRequest<{ Params: { id: string } }>, reply) => {
    const device = registry.get(req.params.id)
    return device ?? unknownDevice(reply, req.params.id)
  })
  fastify.get(
    '/api/devices/:id/history',
    async (req: FastifyRequest<{ Params: { id: string }; Querystring: { metrics?: string; since?: string } }>, reply) => {
      const metrics = req.query.metrics?.split(',').filter(Boolean)
      const since = Number(req.query.since ?? '')
      const history = registry.history(req.params.id, metrics, Number.isFinite(since) && since > 0 ? since : undefined)
      return history ?? unknownDevice(reply, req.params.id)
    },
  )
  fastify.get('/api/topics', { schema: { querystring: pageQuery } }, async (req: Paged, reply) =>
    sendPage(req, reply, registry.topics(req.query.limit + 1, req.query.cursor), (t) => t.topic),
  )

  async function listen(): Promise<{ mqttPort: number; port: number }> {
    await fastify.ready()
    mqttPort = await listenOn(broker.tcpServer, 'mqtt', mqttPort, opts.host)
    const port = await listenOn(http.server, 'http', opts.port ?? pulseboardDefaults.port, opts.host)
    return { mqttPort, port }
  }

  function uncaught(err: unknown, origin: string): void {
    uncaughtErrors++
    logger?.error({ err, origin }, 'uncaught error; the server carries on, but please report this with the stack above')
  }

  async function close(): Promise<void> {
    await http.close()
    await bridge.close()
    await broker.close()
    limitLog.close()
  }

  return { broker, bridge, http, listen, uncaught, close }
}

function listenOn(server: net.Server, listener: 'mqtt' | 'http', port: number, host?: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => {
      reject(err.code === 'EADDRINUSE' ? new PortInUseError(listener, port) : err)
    }
    server.once('error', onError)
    server.listen(port, host, () => {
      server.off('error', onError)
      resolve((server.address() as net.AddressInfo).port)
    })
  })
}
