import type { Server } from 'socket.io'
import type { Logger } from 'pino'
import type { AedesPublishPacket, Client } from 'aedes'
import {
  CommandRequestSchema,
  DEFAULT_LIVE_FILTERS,
  ErrorCodes,
  LIVE_NAMESPACE,
  PublishRequestSchema,
  SubscribeRequestSchema,
  fail,
  filterError,
  topicError,
  type Ack,
  type Envelope,
  type LiveAuth,
} from '../protocol/index.ts'
import type { OnLimit } from '../protocol/limits.ts'
import type { Broker } from '../broker/broker.ts'
import { Fanout, type ChatNamespace, type FanoutOptions, type LiveNamespace, type LiveSocket } from './fanout.ts'
import { decodePayload, encodePayload } from './payload.ts'
import { Registry, type RegistryOptions } from './registry.ts'

export interface BridgeOptions {
  /** MQTT topic that chat text from socket clients is published on. @default "messages" */
  chatTopic?: string
  fanout?: FanoutOptions
  registry?: RegistryOptions
  logger?: Logger
  onLimit?: OnLimit
}

export const bridgeDefaults = { chatTopic: 'messages' }

export interface BridgeStats {
  /** Messages from socket clients published to MQTT. */
  socketMessagesIn: number
  /** Messages from socket clients refused with an error. */
  socketMessagesRejected: number
}

export interface Bridge {
  readonly stats: BridgeStats
  readonly fanout: Fanout
  readonly registry: Registry
  readonly chat: ChatNamespace
  readonly live: LiveNamespace
  close(): Promise<void>
}

type AckFn = (ack: Ack<Record<string, unknown>>) => void
const noAck: AckFn = () => {}

/**
 * Joins the broker and socket.io: every MQTT publish goes to socket clients,
 * and every socket message is published to MQTT and shown to socket clients.
 */
export function createBridge(broker: Broker, io: Server, opts: BridgeOptions = {}): Bridge {
  const chatTopic = opts.chatTopic ?? bridgeDefaults.chatTopic
  const log = opts.logger
  const chat: ChatNamespace = io.of('/')
  const live: LiveNamespace = io.of(LIVE_NAMESPACE)
  const onLimit = opts.onLimit ?? (() => {})
  const fanout = new Fanout(chat, live, { onLimit, ...opts.fanout })
  const registry = new Registry({ onLimit, ...opts.registry })
  const { maxPacketSize, maxTopicLength } = broker.limits
  registry.on('update', (changed, readings) => fanout.sendDeviceUpdate(changed, readings))
  const stats: BridgeStats = { socketMessagesIn: 0, socketMessagesRejected: 0 }

  function onPublish(packet: AedesPublishPacket, client: Client | null): void {
    // Publishes without a client are the bridge's own, already delivered when they were made,
    // or the broker's $SYS reports. Sending the former again would loop.
    if (!client && !packet.topic.startsWith('$')) return
    const envelope: Envelope = {
      topic: packet.topic,
      ...encodePayload(packet.payload),
      ts: Date.now(),
      source: 'mqtt',
      qos: packet.qos,
      retain: packet.retain,
    }
    if (client) envelope.clientId = client.id
    fanout.send(envelope)
    // chat is people talking, not a device reporting
    if (client && packet.topic !== chatTopic) registry.ingest(envelope)
  }
  broker.aedes.on('publish', onPublish)

  function onClientReady(client: Client): void {
    log?.info({ clientId: client.id }, 'mqtt client connected')
    // aedes keeps the CONNECT packet's will on the client; its types leave it out
    const will = (client as Client & { will?: { topic: string; payload: Buffer | string } | null }).will
    registry.clientConnected(client.id, will ? { topic: will.topic, payload: encodePayload(will.payload).payload } : undefined)
  }
  function onClientDisconnect(client: Client): void {
    log?.info({ clientId: client.id }, 'mqtt client disconnected')
    registry.clientDisconnected(client.id)
  }
  const onTakeover = (clientId: string) => registry.clientTakenOver(clientId)
  broker.aedes.on('clientReady', onClientReady)
  broker.aedes.on('clientDisconnect', onClientDisconnect)
  broker.on('takeover', onTakeover)

  /** Publishes one socket client's message to MQTT and shows it to every socket client. */
  function publish(
    socketId: string,
    msg: { topic: string; payload: Buffer; text: string; qos: 0 | 1 | 2; retain: boolean; encoding?: 'base64' },
    ack: AckFn,
  ): void {
    // fixed header (≤5) + topic length (2) + topic + packet id (2) must fit [MQTT-2.2.3]
    const size = 9 + Buffer.byteLength(msg.topic) + msg.payload.length
    if (size > maxPacketSize) {
      return reject(ack, ErrorCodes.E_PAYLOAD_TOO_LARGE, `message is ${size} bytes; the limit is ${maxPacketSize}`)
    }
    stats.socketMessagesIn++
    const envelope: Envelope = {
      topic: msg.topic,
      payload: msg.text,
      ts: Date.now(),
      source: 'socket',
      clientId: socketId,
      qos: msg.qos,
      retain: msg.retain,
    }
    if (msg.encoding) envelope.encoding = msg.encoding
    fanout.send(envelope)
    if (msg.topic !== chatTopic) registry.ingest(envelope)
    broker.aedes.publish(
      { cmd: 'publish', topic: msg.topic, payload: msg.payload, qos: msg.qos, retain: msg.retain, dup: false },
      (err) => {
        if (!err) return ack({ ok: true })
        log?.warn({ topic: msg.topic, err: err.message }, 'publish from socket client failed')
        ack(fail(ErrorCodes.E_PUBLISH_FAILED, err.message))
      },
    )
  }

  function publishChat(socketId: string, text: string, ack: AckFn): void {
    publish(socketId, { topic: chatTopic, payload: Buffer.from(text), text, qos: 0, retain: false }, ack)
  }

  function reject(ack: AckFn, code: Parameters<typeof fail>[0], message: string): void {
    stats.socketMessagesRejected++
    log?.debug({ code }, message)
    ack(fail(code, message))
  }

  chat.on('connection', (socket) => {
    log?.info({ socketId: socket.id }, 'socket client connected to /')
    socket.on('disconnect', (reason) => log?.info({ socketId: socket.id, reason }, 'socket client disconnected from /'))
    fanout.addChatClient(socket)
    socket.on('message', (text: unknown, ack: unknown) => {
      const reply = ackOf(ack)
      if (typeof text !== 'string') {
        return reject(reply, ErrorCodes.E_INVALID_MESSAGE, `message on / must be a string, got ${describe(text)}`)
      }
      publishChat(socket.id, text, reply)
    })
  })

  // Filters in the handshake apply before the first message, and again on every reconnect.
  live.use((socket, next) => {
    const { filters, devices } = socket.handshake.auth as LiveAuth
    const parsed = filters === undefined ? [...DEFAULT_LIVE_FILTERS] : parseFilters(filters, maxTopicLength)
    if (typeof parsed === 'string') return next(new Error(`${ErrorCodes.E_INVALID_FILTER}: ${parsed}`))
    socket.data.filters = parsed
    socket.data.devices = devices !== false
    next()
  })

  live.on('connection', (socket: LiveSocket) => {
    log?.info({ socketId: socket.id }, `socket client connected to ${LIVE_NAMESPACE}`)
    socket.on('disconnect', (reason) => log?.info({ socketId: socket.id, reason }, `socket client disconnected from ${LIVE_NAMESPACE}`))
    fanout.addLiveClient(socket)
    if (socket.data.devices) socket.emit('devices', registry.list())

    socket.on('message', (message: unknown, ack: unknown) => {
      const reply = ackOf(ack)
      if (typeof message === 'string') return publishChat(socket.id, message, reply)
      const parsed = PublishRequestSchema.safeParse(message)
      if (!parsed.success) {
        return reject(
          reply,
          ErrorCodes.E_INVALID_MESSAGE,
          `message must be a string or { topic, payload, qos?, retain?, encoding? }: ${parsed.error.issues[0]?.message ?? 'invalid'}`,
        )
      }
      const { topic, payload, qos, retain, encoding } = parsed.data
      const problem = topicError(topic) ?? lengthError(topic, maxTopicLength)
      if (problem) return reject(reply, ErrorCodes.E_INVALID_TOPIC, `invalid topic: ${problem}`)
      const bytes = decodePayload(payload, encoding)
      publish(socket.id, { topic, payload: bytes, text: payload, qos, retain, ...(encoding && { encoding }) }, reply)
    })

    socket.on('command', (request: unknown, ack: unknown) => {
      const reply = ackOf(ack)
      const parsed = CommandRequestSchema.safeParse(request)
      if (!parsed.success) {
        return reject(reply, ErrorCodes.E_INVALID_MESSAGE, 'command takes { device, name, value }')
      }
      const { device, name, value } = parsed.data
      const command = registry.command(device, name, value)
      if (!command) return reject(reply, ErrorCodes.E_UNKNOWN_DEVICE, `no device ${JSON.stringify(device)} is known`)
      if ('error' in command) return reject(reply, command.error, command.message)
      const { topic, payload } = command
      publish(socket.id, { topic, payload: Buffer.from(payload), text: payload, qos: 1, retain: false }, (result) =>
        reply(result.ok ? { ok: true, topic, payload } : result),
      )
    })

    socket.on('subscribe', (request: unknown, ack: unknown) => {
      const reply = ackOf(ack)
      const filters = parseFilters(request, maxTopicLength)
      if (typeof filters === 'string') return reject(reply, ErrorCodes.E_INVALID_FILTER, filters)
      reply({ ok: true, filters: fanout.setFilters(socket, filters) })
    })
  })

  async function close(): Promise<void> {
    broker.aedes.off('publish', onPublish)
    broker.aedes.off('clientReady', onClientReady)
    broker.aedes.off('clientDisconnect', onClientDisconnect)
    broker.off('takeover', onTakeover)
    fanout.close()
    registry.close()
  }

  return { stats, fanout, registry, chat, live, close }
}

function ackOf(ack: unknown): AckFn {
  return typeof ack === 'function' ? (ack as AckFn) : noAck
}

function describe(value: unknown): string {
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'an array'
  return typeof value === 'object' ? 'an object' : typeof value
}

function lengthError(topic: string, max: number): string | null {
  return Buffer.byteLength(topic) > max ? `longer than ${max} bytes (--max-topic-length)` : null
}

/** Valid MQTT filters from a `subscribe` request or handshake, or why not. */
function parseFilters(request: unknown, maxLength: number): string[] | string {
  const parsed = SubscribeRequestSchema.safeParse(request)
  if (!parsed.success) return 'filters must be a topic filter or an array of 1 to 256 filters'
  const filters = typeof parsed.data === 'string' ? [parsed.data] : parsed.data
  for (const filter of filters) {
    const problem = filterError(filter) ?? lengthError(filter, maxLength)
    if (problem) return `invalid filter ${JSON.stringify(filter)}: ${problem}`
  }
  return filters
}
