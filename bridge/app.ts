import net from 'node:net'
import { fileURLToPath } from 'node:url'
import type { Logger } from 'pino'
import { createBroker, type Broker, type BrokerOptions } from '../broker/broker.ts'
import { createBridge, type Bridge, type BridgeOptions } from './bridge.ts'
import { createHttpServer, type HttpServer } from './http.ts'
import { createMetrics } from './metrics.ts'
import type { HealthReport } from '../protocol/index.ts'

export interface PulseboardOptions extends BrokerOptions, BridgeOptions {
  /** MQTT over TCP. 0 picks a free port. @default 1883 */
  mqttPort?: number
  /** HTTP: dashboard, API, socket.io and MQTT over WebSocket. 0 picks a free port. @default 5000 */
  port?: number
  /** Address to listen on; devices on the LAN must reach it. @default all interfaces */
  host?: string
  /** Built dashboard. @default dashboard/dist of this package */
  dashboardDir?: string
  logger?: Logger
}

export const pulseboardDefaults = {
  mqttPort: 1883,
  port: 5000,
  dashboardDir: fileURLToPath(new URL('../dashboard/dist', import.meta.url)),
}

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
  /** Stops accepting, then closes in reverse order of creation. */
  close(): Promise<void>
}

export async function createPulseboard(opts: PulseboardOptions = {}): Promise<Pulseboard> {
  const startedAt = Date.now()
  const broker = await createBroker(opts)
  const http = createHttpServer({ broker, dashboardDir: opts.dashboardDir ?? pulseboardDefaults.dashboardDir })
  const bridge = createBridge(broker, http.io, opts)
  const metrics = createMetrics(broker, bridge)

  let mqttPort = opts.mqttPort ?? pulseboardDefaults.mqttPort
  http.get('/api/health', () => ({
    body: {
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
    } satisfies HealthReport,
  }))
  http.get('/metrics', async () => ({ body: await metrics.metrics(), contentType: metrics.contentType }))

  const { registry } = bridge
  const unknownDevice = (id: string) => ({ status: 404, body: { error: `no device ${JSON.stringify(id)} is known` } })
  http.get('/api/devices', () => ({ body: registry.list() }))
  http.get('/api/devices/:id', ({ id }) => {
    const device = registry.get(id!)
    return device ? { body: device } : unknownDevice(id!)
  })
  http.get('/api/devices/:id/history', ({ id }, query) => {
    const metrics = query.get('metrics')?.split(',').filter(Boolean)
    const since = Number(query.get('since') ?? '')
    const history = registry.history(id!, metrics, Number.isFinite(since) && since > 0 ? since : undefined)
    return history ? { body: history } : unknownDevice(id!)
  })
  http.get('/api/topics', () => ({ body: registry.topics() }))

  async function listen(): Promise<{ mqttPort: number; port: number }> {
    mqttPort = await listenOn(broker.tcpServer, 'mqtt', mqttPort, opts.host)
    const port = await listenOn(http.server, 'http', opts.port ?? pulseboardDefaults.port, opts.host)
    return { mqttPort, port }
  }

  async function close(): Promise<void> {
    await http.close()
    await bridge.close()
    await broker.close()
  }

  return { broker, bridge, http, listen, close }
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
