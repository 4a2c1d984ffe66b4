import net from 'node:net'
import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import { Aedes, type AedesPublishPacket, type Client } from 'aedes'
import type { Logger } from 'pino'
import { PacketSizeGuard } from './packet-size.ts'

export interface BrokerOptions {
  /** Largest MQTT packet accepted, in bytes; bigger ones close the connection. @default 262144 */
  maxPacketSize?: number
  /** Where the broker reports client errors. @default a silent logger */
  logger?: Logger
}

export const brokerDefaults = {
  maxPacketSize: 256 * 1024,
} satisfies Required<Omit<BrokerOptions, 'logger'>>

/** Counters read by `/api/health` and `/metrics`. */
export interface BrokerStats {
  readonly clients: number
  /** PUBLISH packets received from MQTT clients. */
  messagesIn: number
  /** PUBLISH packets delivered to MQTT subscribers. */
  messagesOut: number
  /** Connections closed for sending a packet over `maxPacketSize`. */
  oversizePackets: number
  /** Connections closed for a protocol error (garbage, malformed packets). */
  clientErrors: number
}

export interface Broker {
  readonly aedes: Aedes
  readonly stats: BrokerStats
  readonly maxPacketSize: number
  /** MQTT over TCP; not yet listening. */
  readonly tcpServer: net.Server
  /** Serve one MQTT connection: a TCP socket or a WebSocket stream. */
  handle(stream: Duplex, req?: IncomingMessage): void
  close(): Promise<void>
}

export async function createBroker(opts: BrokerOptions = {}): Promise<Broker> {
  const maxPacketSize = opts.maxPacketSize ?? brokerDefaults.maxPacketSize
  const log = opts.logger
  let messagesOut = 0

  const aedes = await Aedes.createBroker({
    // Called once per delivery to an MQTT subscriber, which makes it the cheapest place to count them.
    authorizeForward(_client: Client, packet: AedesPublishPacket) {
      messagesOut++
      return packet
    },
  })

  const stats: BrokerStats = {
    get clients() {
      return aedes.connectedClients
    },
    messagesIn: 0,
    get messagesOut() {
      return messagesOut
    },
    oversizePackets: 0,
    clientErrors: 0,
  }

  aedes.on('publish', (_packet, client) => {
    if (client) stats.messagesIn++
  })
  const onClientError = (client: Client, err: Error) => {
    stats.clientErrors++
    log?.debug({ clientId: client.id, err: err.message }, 'mqtt client error; connection closed')
  }
  aedes.on('clientError', onClientError)
  aedes.on('connectionError', onClientError)

  function handle(stream: Duplex, req?: IncomingMessage): void {
    const client = aedes.handle(stream, req)
    const guard = new PacketSizeGuard(maxPacketSize)
    // aedes pulls with read(); a 'data' listener then sees each chunk as it is read, before it is parsed.
    stream.on('data', (chunk: Buffer) => {
      const size = guard.push(chunk)
      if (size === null) return
      stats.oversizePackets++
      log?.warn(
        { clientId: client.id, size, maxPacketSize },
        `mqtt client sent a ${size}-byte packet, over the ${maxPacketSize}-byte limit (--max-packet-size); connection closed`,
      )
      stream.destroy()
    })
  }

  const tcpServer = net.createServer((socket) => {
    // Nagle's algorithm holds small publishes back by up to 40 ms; telemetry wants them now.
    socket.setNoDelay(true)
    handle(socket)
  })

  async function close(): Promise<void> {
    const closed = new Promise<void>((resolve) => tcpServer.close(() => resolve()))
    await new Promise<void>((resolve) => aedes.close(() => resolve()))
    if (tcpServer.listening) await closed
  }

  return { aedes, stats, maxPacketSize, tcpServer, handle, close }
}
