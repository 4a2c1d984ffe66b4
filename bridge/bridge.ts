import type { IncomingHttpHeaders } from 'node:http'
import type { Server } from 'socket.io'
import type { Logger } from 'pino'
import {
  ANONYMOUS,
  CodedError,
  CommandRequestSchema,
  DEFAULT_LIVE_FILTERS,
  ErrorCodes,
  LIVE_NAMESPACE,
  LiveViewSchema,
  PublishRequestSchema,
  SubscribeRequestSchema,
  fail,
  filterError,
  topicError,
  REPLY_TOPIC_PREFIX,
  type Ack,
  type AppliedView,
  type DeviceSelection,
  type DeviceState,
  type Envelope,
  type ErrorCode,
  type LiveAuth,
  type LiveView,
  type MessageProperties,
  type Reading,
  type Policy,
  type Principal,
} from '../protocol/index.ts'
import type { OnLimit } from '../protocol/limits.ts'
import type { Registry } from '../devices/registry.ts'
import { Fanout, type ChatNamespace, type ChatSocket, type FanoutOptions, type LiveNamespace, type LiveSocket } from './fanout.ts'
import { decodePayload, encodePayload } from './payload.ts'
import { RECOVERY_WINDOW_MS } from './recovery.ts'
import type { Message, MessageSource } from './source.ts'

export interface BridgeOptions {
  /** MQTT topic that chat text from socket clients is published on. @default "messages" */
  chatTopic?: string
  fanout?: FanoutOptions
  /** How often a device whose only change is new values is sent again; `readings` carry each value sooner. @default 1000 */
  valueUpdateIntervalMs?: number
  /** How long a command sent as an MQTT 5 request waits for the device's answer. @default 5000 */
  commandTimeoutMs?: number
  logger?: Logger
  onLimit?: OnLimit
}

/** What the bridge joins: where messages come from, the socket.io server, the devices and the rules. */
export interface BridgeParts {
  source: MessageSource
  io: Server
  registry: Registry
  policy: Policy
  /**
   * Who a socket is, from its handshake (`auth.token`, or the dashboard's session cookie); a
   * CodedError refuses it (sent as `connect_error` with `data.code`). @default everyone is anonymous
   */
  identify?: (handshake: { auth: LiveAuth; headers: IncomingHttpHeaders; address: string }) => Promise<Principal>
  /** Keeps each message this node received from its publisher, for the message log. */
  record?: (envelope: Envelope) => void
  /**
   * One node of several (`fanout.cluster` set): it takes in the messages published through it,
   * and no other node's; it tells the others of its devices (`shareDevices`) as it tells its own
   * dashboards, and they tell theirs (`Registry.mirror`). Only `/` gets the other nodes' messages.
   */
  cluster?: { shareDevices(devices: DeviceState[]): void }
}

export const bridgeDefaults = { chatTopic: 'messages', valueUpdateIntervalMs: 1000, commandTimeoutMs: 5000 }

export interface BridgeStats {
  /** Messages from socket clients published to MQTT. */
  socketMessagesIn: number
  /** Messages from socket clients refused with an error. */
  socketMessagesRejected: number
}

export interface Bridge {
  readonly stats: BridgeStats
  readonly fanout: Fanout
  /** The registry the bridge feeds. */
  readonly registry: Registry
  /** Feeds one message to the registry only (a retained message read at start, say): no socket sees it. */
  learn(message: Message): void
  readonly chat: ChatNamespace
  readonly live: LiveNamespace
  close(): Promise<void>
}

type AckFn = (ack: Ack<Record<string, unknown>>) => void
const noAck: AckFn = () => {}

/**
 * Joins a MessageSource and socket.io: every message this node takes in goes
 * to the socket clients whose filters match and to the device registry, and every socket
 * message is published through the source (which checks the policy), so it
 * reaches MQTT subscribers and, through the same subscription, socket clients:
 * once, whichever node or broker carried it.
 */
export function createBridge(parts: BridgeParts, opts: BridgeOptions = {}): Bridge {
  const { source, io, registry, policy } = parts
  const identify = parts.identify ?? (async () => ANONYMOUS)
  const chatTopic = opts.chatTopic ?? bridgeDefaults.chatTopic
  const valueUpdateIntervalMs = opts.valueUpdateIntervalMs ?? bridgeDefaults.valueUpdateIntervalMs
  const commandTimeoutMs = opts.commandTimeoutMs ?? bridgeDefaults.commandTimeoutMs
  const log = opts.logger
  const onLimit = opts.onLimit ?? (() => {})
  const chat: ChatNamespace = io.of('/')
  const live: LiveNamespace = io.of(LIVE_NAMESPACE)
  const fanout = new Fanout(chat, live, { onLimit, recoveryWindowMs: RECOVERY_WINDOW_MS, ...opts.fanout })
  const stats: BridgeStats = { socketMessagesIn: 0, socketMessagesRejected: 0 }
  const { maxPacketSize, maxTopicLength } = source.limits

  function onMessage(message: Message): void {
    // what a device said before, sent again because we subscribed: the registry's, not news
    if (message.replay) return learn(message)
    const envelope = toEnvelope(message)
    if (message.storeOnly) {
      if (isDeviceTopic(envelope.topic)) registry.ingest(envelope, { live: false })
    } else {
      fanout.send(envelope, message.local)
      learnFrom(envelope, message.local)
    }
    if (message.local && !message.topic.startsWith('$')) parts.record?.(envelope)
  }

  function learnFrom(envelope: Envelope, local: boolean): void {
    if (isDeviceTopic(envelope.topic)) registry.ingest(envelope, { local })
  }
  // chat is people talking, answers to commands are Pulseboard's, and `$` topics are the broker's
  const isDeviceTopic = (topic: string) => topic !== chatTopic && !topic.startsWith('$') && !topic.startsWith(REPLY_TOPIC_PREFIX)
  const unsubscribe = [source.subscribe('#', onMessage), source.subscribe('$SYS/#', onMessage)]
  // `/` (the seed's protocol, without filters) carries every message of every node. In a cluster
  // a node hears the others' only while it has `/` clients, and for them alone: its registry and
  // `/live` have the other nodes' devices and messages from those nodes.
  let everyNode: (() => void) | null = null
  const fromOtherNodes = (message: Message) => {
    if (!message.local) fanout.send(toEnvelope(message), false)
  }
  // an external broker's outage is shown, not hidden: every dashboard hears of it at once
  const stopStatus = source.onStatus((status) => live.emit('broker', status))
  const stopPresence = source.onPresence((event) => {
    if (event.type === 'connect') {
      registry.clientConnected(event.clientId, event.will && { topic: event.will.topic, payload: encodePayload(event.will.payload).payload })
    } else if (event.type === 'disconnect') registry.clientDisconnected(event.clientId)
    else registry.clientTakenOver(event.clientId)
  })

  // A device whose only change is new values goes at most once a `valueUpdateIntervalMs`: a dashboard
  // repaints a card per update, and `readings` carry each value within 100 ms anyway. Each device has
  // its own phase in the interval (from its id), so a hundred devices come a few at a time all
  // through the second, not all in one frame that repaints a hundred cards at once.
  const heldValues = new Map<string, DeviceState>()
  /** Device id → the interval (counted from its phase) in which its state last went. */
  const sentIn = new Map<string, number>()
  const intervalOf = (id: string, now: number) => Math.floor((now + phaseOf(id, valueUpdateIntervalMs)) / valueUpdateIntervalMs)
  /** How often held values are looked at: a tenth of the interval, as the registry batches. */
  const valueTickMs = Math.max(10, valueUpdateIntervalMs / 10)
  let valueTimer: NodeJS.Timeout | null = null
  function onUpdate(changed: DeviceState[], readings: Reading[], valuesOnly: DeviceState[], _stored: Reading[], mirrored: DeviceState[]): void {
    const now = Date.now()
    const send = [...changed]
    for (const d of changed) {
      heldValues.delete(d.id)
      sentIn.set(d.id, intervalOf(d.id, now))
    }
    for (const d of valuesOnly) heldValues.set(d.id, d)
    for (const [id, d] of heldValues) {
      const interval = intervalOf(id, now)
      if (sentIn.get(id) === interval) continue
      send.push(d)
      heldValues.delete(id)
      sentIn.set(id, interval)
    }
    // the other nodes hear of this node's devices when its dashboards do: a change at once, values once an interval
    if (send.length > 0) parts.cluster?.shareDevices(send)
    // another node's state of a device replaces what was held of it here; that node bounds how often it comes
    for (const d of mirrored) heldValues.delete(d.id)
    fanout.sendDeviceUpdate(mirrored.length > 0 ? [...send, ...mirrored] : send, readings)
    if (heldValues.size > 0) valueTimer ??= setTimeout(flushValues, valueTickMs)
  }
  function flushValues(): void {
    valueTimer = null
    onUpdate([], [], [], [], [])
  }
  registry.on('update', onUpdate)
  const onForget = (id: string) => {
    heldValues.delete(id)
    sentIn.delete(id)
    fanout.sendForget(id)
  }
  registry.on('forget', onForget)
  // Device events of every device go to the `devices` room as one broadcast, joined only by principals who
  // may read every topic (seesEveryDevice); one whose rules are narrower names the devices it may see.
  const seesEveryDevice = (p: Principal) => policy.canSubscribe(p, '#')

  /** Publishes one socket client's message through the source; the subscription shows it to socket clients. */
  function publish(
    socket: { id: string; data: { principal: Principal } },
    msg: { topic: string; payload: Buffer; qos: 0 | 1 | 2; retain: boolean; properties?: MessageProperties },
    ack: AckFn,
  ): void {
    // fixed header (≤5) + topic length (2) + topic + packet id (2) must fit [MQTT-2.2.3]
    const size = 9 + Buffer.byteLength(msg.topic) + msg.payload.length
    if (size > maxPacketSize) {
      return reject(ack, ErrorCodes.E_PAYLOAD_TOO_LARGE, `message is ${size} bytes; the limit is ${maxPacketSize}`)
    }
    source.publish({ ...msg, socketId: socket.id }, socket.data.principal).then(
      () => {
        stats.socketMessagesIn++
        ack({ ok: true })
      },
      (err: Error) => {
        const code: ErrorCode = err instanceof CodedError ? err.code : 'E_PUBLISH_FAILED'
        log?.warn({ topic: msg.topic, err: err.message }, 'publish from socket client refused')
        reject(ack, code, err.message)
      },
    )
  }

  function publishChat(socket: { id: string; data: { principal: Principal } }, text: string, ack: AckFn): void {
    publish(socket, { topic: chatTopic, payload: Buffer.from(text), qos: 0, retain: false }, ack)
  }

  function reject(ack: AckFn, code: ErrorCode, message: string): void {
    stats.socketMessagesRejected++
    log?.debug({ code }, message)
    ack(fail(code, message))
  }

  /** Who connects; a refusal reaches the client as `connect_error` with `data.code`. */
  async function authenticate(socket: {
    handshake: { auth: LiveAuth; headers: IncomingHttpHeaders; address: string }
    data: { principal: Principal }
  }): Promise<CodedError | null> {
    try {
      socket.data.principal = await identify(socket.handshake)
      return null
    } catch (err) {
      return err instanceof CodedError ? err : new CodedError('E_INTERNAL', (err as Error).message)
    }
  }

  /** The first of `filters` this principal may not read, as a refusal. */
  function unreadable(principal: Principal, filters: readonly string[]): CodedError | null {
    const denied = filters.find((f) => !policy.canSubscribe(principal, f))
    return denied === undefined ? null : new CodedError('E_NOT_AUTHORIZED', `${principal.name} may not read ${denied}`)
  }

  chat.use((socket, next) => {
    // `/` carries every message (the seed's protocol has no filters): only for those who may read them all
    void authenticate(socket).then((refused) => next(handshakeError(refused ?? unreadable(socket.data.principal, ['#']))))
  })

  chat.on('connection', (socket: ChatSocket) => {
    log?.info({ socketId: socket.id }, 'socket client connected to /')
    if (parts.cluster) everyNode ??= source.subscribe('#', fromOtherNodes, 'cluster')
    socket.on('disconnect', (reason) => {
      log?.info({ socketId: socket.id, reason }, 'socket client disconnected from /')
      // the namespace let go of it already
      if (chat.sockets.size > 0) return
      everyNode?.()
      everyNode = null
    })
    fanout.addChatClient(socket)
    socket.on('message', (text: unknown, ack: unknown) => {
      const reply = ackOf(ack)
      if (typeof text !== 'string') {
        return reject(reply, ErrorCodes.E_INVALID_MESSAGE, `message on / must be a string, got ${describe(text)}`)
      }
      publishChat(socket, text, reply)
    })
  })

  /**
   * A view as this principal may have it: defaults filled in, filters checked, and devices it may
   * not see left out (as device events have always been: for one who may not see every device,
   * "every device" is none). A CodedError says why not.
   */
  function applyView(principal: Principal, request: unknown): AppliedView | CodedError {
    const parsed = LiveViewSchema.safeParse(request ?? {})
    if (!parsed.success) {
      const issue = parsed.error.issues[0]
      return new CodedError('E_INVALID_MESSAGE', `view must be { filters?, devices?, readings? }: ${issue ? `${issue.path.join('.') || 'view'}: ${issue.message}` : 'invalid'}`)
    }
    const view = parsed.data as LiveView
    const filters = view.filters === undefined ? [...DEFAULT_LIVE_FILTERS] : parseFilters(view.filters, maxTopicLength, true)
    if (typeof filters === 'string') return new CodedError('E_INVALID_FILTER', filters)
    const denied = unreadable(principal, filters)
    if (denied) return denied
    const devices = view.devices ?? true
    const allowed = (selection: DeviceSelection): DeviceSelection => {
      // device events are one broadcast to the clients of every device: those who may see them all
      if (typeof selection === 'boolean') return selection && seesEveryDevice(principal)
      const ids = [...new Set(selection)].filter((id) => policy.canSeeDevice(principal, id)).sort()
      return ids.length > 0 ? ids : false
    }
    return { filters, devices: allowed(devices), readings: allowed(view.readings ?? devices) }
  }

  /** The `devices` snapshot of a view: every device it names that the server knows. */
  function snapshot(principal: Principal, devices: DeviceSelection): DeviceState[] {
    if (devices === true) return registry.list().filter((d) => policy.canSeeDevice(principal, d.id))
    if (devices === false) return []
    return devices.map((id) => registry.get(id)).filter((d): d is DeviceState => d !== undefined)
  }

  // The view in the handshake applies before the first message, and again on every reconnect.
  live.use(async (socket, next) => {
    const refused = await authenticate(socket)
    if (refused) return next(handshakeError(refused))
    const auth = socket.handshake.auth as LiveAuth
    // `filters` and `devices` at the top level are the shape before `view`, still read until 0.3
    const requested = auth.view ?? { ...(auth.filters !== undefined && { filters: auth.filters }), ...(auth.devices !== undefined && { devices: auth.devices }) }
    const view = applyView(socket.data.principal, requested)
    if (view instanceof CodedError) return next(handshakeError(view))
    Object.assign(socket.data, view)
    next()
  })

  live.on('connection', (socket: LiveSocket) => {
    log?.info({ socketId: socket.id }, `socket client connected to ${LIVE_NAMESPACE}`)
    socket.on('disconnect', (reason) => log?.info({ socketId: socket.id, reason }, `socket client disconnected from ${LIVE_NAMESPACE}`))
    fanout.addLiveClient(socket)
    const { principal } = socket.data
    socket.emit('broker', source.status())
    if (socket.data.devices) socket.emit('devices', snapshot(principal, socket.data.devices))

    socket.on('message', (message: unknown, ack: unknown) => {
      const reply = ackOf(ack)
      if (typeof message === 'string') return publishChat(socket, message, reply)
      const parsed = PublishRequestSchema.safeParse(message)
      if (!parsed.success) {
        return reject(
          reply,
          ErrorCodes.E_INVALID_MESSAGE,
          `message must be a string or { topic, payload, qos?, retain?, encoding? }: ${parsed.error.issues[0]?.message ?? 'invalid'}`,
        )
      }
      const { topic, payload, qos, retain, encoding, properties } = parsed.data
      const problem = topicError(topic) ?? lengthError(topic, maxTopicLength) ?? (properties?.responseTopic !== undefined ? topicError(properties.responseTopic) : null)
      if (problem) return reject(reply, ErrorCodes.E_INVALID_TOPIC, `invalid topic: ${problem}`)
      publish(socket, { topic, payload: decodePayload(payload, encoding), qos, retain, ...(properties && { properties }) }, reply)
    })

    socket.on('command', (request: unknown, ack: unknown) => {
      const reply = ackOf(ack)
      const parsed = CommandRequestSchema.safeParse(request)
      if (!parsed.success) {
        return reject(reply, ErrorCodes.E_INVALID_MESSAGE, 'command takes { device, name, value }')
      }
      const { device, name, value } = parsed.data
      const command = policy.canSeeDevice(principal, device) ? registry.command(device, name, value) : undefined
      if (!command) return reject(reply, ErrorCodes.E_UNKNOWN_DEVICE, `no device ${JSON.stringify(device)} is known`)
      if ('error' in command) return reject(reply, command.error, command.message)
      if (!policy.canCommand(principal, device)) {
        return reject(reply, ErrorCodes.E_NOT_AUTHORIZED, `${principal.name} may not send commands to ${device}`)
      }
      const { topic, payload } = command
      // an MQTT 5 device answers a request: the acknowledgement waits for what it said
      if (registry.get(device)?.mqtt5 && source.request) {
        const outgoing = { topic, payload: Buffer.from(payload), qos: 1 as const, retain: false, socketId: socket.id }
        return void source.request(outgoing, principal, commandTimeoutMs).then(
          (answer: Message) => {
            stats.socketMessagesIn++
            const { topic: replyTopic, payload: replyPayload, encoding, properties, ts } = toEnvelope(answer)
            reply({ ok: true, topic, payload, reply: { topic: replyTopic, payload: replyPayload, ts, ...(encoding && { encoding }), ...(properties && { properties }) } })
          },
          (err: Error) => reject(reply, err instanceof CodedError ? err.code : 'E_PUBLISH_FAILED', `${device}: ${err.message}`),
        )
      }
      publish(socket, { topic, payload: Buffer.from(payload), qos: 1, retain: false }, (result) =>
        reply(result.ok ? { ok: true, topic, payload } : result),
      )
    })

    socket.on('subscribe', (request: unknown, ack: unknown) => {
      const reply = ackOf(ack)
      const filters = parseFilters(request, maxTopicLength)
      if (typeof filters === 'string') return reject(reply, ErrorCodes.E_INVALID_FILTER, filters)
      const denied = unreadable(socket.data.principal, filters)
      if (denied) return reject(reply, ErrorCodes.E_NOT_AUTHORIZED, denied.message)
      reply({ ok: true, filters: fanout.setFilters(socket, filters) })
    })

    socket.on('view', (request: unknown, ack: unknown) => {
      const reply = ackOf(ack)
      const view = applyView(principal, request)
      if (view instanceof CodedError) return reject(reply, view.code, view.message)
      const before = socket.data.devices
      const applied = fanout.setView(socket, view)
      reply({ ok: true, view: applied })
      // after the ack, so the client knows which view the snapshot is of
      if (applied.devices && JSON.stringify(applied.devices) !== JSON.stringify(before)) socket.emit('devices', snapshot(principal, applied.devices))
    })
  })

  async function close(): Promise<void> {
    for (const stop of unsubscribe) stop()
    everyNode?.()
    stopPresence()
    stopStatus()
    registry.off('update', onUpdate)
    registry.off('forget', onForget)
    if (valueTimer) clearTimeout(valueTimer)
    fanout.close()
  }

  // a retained message read at start tells what a device announced, not that it spoke now
  function learn(message: Message): void {
    const envelope = toEnvelope(message)
    if (isDeviceTopic(envelope.topic)) registry.ingest(envelope, { replay: true })
  }
  return { stats, fanout, registry, learn, chat, live, close }
}

/** Where in an interval of `ms` a device's value updates fall: FNV-1a of its id, the same on every node. */
function phaseOf(id: string, ms: number): number {
  let h = 0x811c9dc5
  for (let i = 0; i < id.length; i++) h = Math.imul(h ^ id.charCodeAt(i), 0x01000193)
  return (h >>> 0) % ms
}

/** A message as `/live` clients see it: the payload as text, or base64 when it is not UTF-8. */
function toEnvelope(message: Message): Envelope {
  const envelope: Envelope = {
    topic: message.topic,
    ...encodePayload(message.payload),
    ts: message.ts,
    source: message.from.kind,
    qos: message.qos,
    retain: message.retain,
    ...(message.properties && { properties: message.properties }),
  }
  const clientId = message.from.kind === 'socket' ? message.from.socketId : message.from.clientId
  if (clientId !== undefined) envelope.clientId = clientId
  return envelope
}

/** A refusal as socket.io sends it: `connect_error` with the message and `data.code`. */
function handshakeError(err: CodedError | null): Error | undefined {
  return err ? Object.assign(new Error(err.message), { data: { code: err.code } }) : undefined
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

/** Valid MQTT filters from a `subscribe` request or a view (where `[]` is none), or why not. */
function parseFilters(request: unknown, maxLength: number, noneAllowed = false): string[] | string {
  if (noneAllowed && Array.isArray(request) && request.length === 0) return []
  const parsed = SubscribeRequestSchema.safeParse(request)
  if (!parsed.success) return `filters must be a topic filter or an array of ${noneAllowed ? 0 : 1} to 256 filters`
  const filters = typeof parsed.data === 'string' ? [parsed.data] : parsed.data
  for (const filter of filters) {
    const problem = filterError(filter) ?? lengthError(filter, maxLength)
    if (problem) return `invalid filter ${JSON.stringify(filter)}: ${problem}`
  }
  return filters
}
