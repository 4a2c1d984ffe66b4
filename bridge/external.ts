import { randomBytes } from 'node:crypto'
import os from 'node:os'
import mqtt, { type IClientOptions, type IClientPublishOptions, type IPublishPacket, type MqttClient } from 'mqtt'
import type { Logger } from 'pino'
import { CodedError } from '../protocol/errors.ts'
import { REPLY_TOPIC_PREFIX, topicMatches } from '../protocol/topics.ts'
import type { Policy, Principal } from '../protocol/access.ts'
import type { MessageProperties } from '../protocol/envelope.ts'
import type { BrokerStatus } from '../protocol/health.ts'
import type { Message, MessageSource, MessageSourceLimits, OutgoingMessage, PresenceEvent } from './source.ts'

export interface ExternalBrokerOptions {
  /** `mqtt://`, `mqtts://`, `ws://` or `wss://`, with the port. */
  url: string
  username?: string
  password?: string
  /** CA certificates (PEM) the broker's certificate must chain to, for a private CA. */
  ca?: Buffer
  /**
   * Pulseboard's client id. Given, the session is persistent (an hour): the broker queues QoS 1
   * and 2 messages while Pulseboard is away. @default pulseboard-<host name>-<random>, a clean session
   */
  clientId?: string
  /** What Pulseboard subscribes to. @default ["#"] */
  filters?: string[]
  /**
   * Several Pulseboards on this broker: each also subscribes to `$share/<share>/<filter>`, and
   * stores only what the broker hands it there, so each message is stored once; each still shows
   * everything. Needs MQTT 5 (subscription identifiers tell the two copies apart).
   */
  share?: string
  /** How long the first connection may take before start fails. @default 10000 */
  connectTimeoutMs?: number
  logger?: Logger
}

export const externalDefaults = { filters: ['#'], connectTimeoutMs: 10_000 }

/** The first connection failed: the broker refused it, or cannot be reached. The message is one line for people. */
export class BrokerConnectError extends Error {
  override name = 'BrokerConnectError'
}

/** A MessageSource that can be closed: the connection to an external broker. */
export interface ExternalSource extends MessageSource {
  close(): Promise<void>
}

/** Back-off between reconnection attempts: 1 s, doubling, at most 30 s, each with some jitter. */
const BACKOFF_FIRST_MS = 1000
const BACKOFF_MAX_MS = 30_000
/** A socket client's publish is recognised when the broker sends it back within this long. */
const ECHO_WINDOW_MS = 30_000
/** Bounds what waits: socket publishes not yet seen back, and commands waiting for an answer. */
const MAX_ECHOES = 10_000
const MAX_REQUESTS = 1000
/** How long a session given `clientId` lasts on the broker while Pulseboard is away. */
const SESSION_EXPIRY_S = 3600

/** Subscription identifiers: the copy to show, and the copy to store from the shared subscription. */
const SHOWN = 1
const SHARED = 2

/** CONNACK codes that mean "not this protocol version" (3.1.1's 1, MQTT 5's 0x84). */
const WRONG_VERSION = new Set([1, 0x84])
/** CONNACK codes of a refused login, for the one-line error. */
const LOGIN_REFUSED: Record<number, string> = {
  4: 'bad user name or password',
  5: 'not authorized',
  0x86: 'bad user name or password',
  0x87: 'not authorized',
  0x8c: 'bad authentication method',
}
const NOT_AUTHORIZED = new Set([5, 0x87])

/**
 * An external MQTT broker (Mosquitto, EMQX, HiveMQ) as a MessageSource: one mqtt.js client,
 * MQTT 5 when the broker speaks it and 3.1.1 otherwise. Resolves once connected; rejects with a
 * BrokerConnectError when the broker refuses or cannot be reached. Afterwards a lost connection is
 * retried with back-off, and resubscribed, for as long as Pulseboard runs.
 */
export async function externalSource(opts: ExternalBrokerOptions, policy: Policy, limits: MessageSourceLimits): Promise<ExternalSource> {
  const url = redact(opts.url)
  const log = opts.logger
  const clientId = opts.clientId ?? `pulseboard-${os.hostname()}-${randomBytes(3).toString('hex')}`
  const filters = opts.filters ?? externalDefaults.filters
  // answers to commands sent as MQTT 5 requests come here
  const replyTopic = REPLY_TOPIC_PREFIX + clientId.replace(/[+#/]/g, '_')
  const persistent = opts.clientId !== undefined

  const handlers = new Set<{ filter: string; handler: (m: Message) => void }>()
  const presenceHandlers = new Set<(e: PresenceEvent) => void>()
  const statusHandlers = new Set<(s: BrokerStatus) => void>()
  const stats = { messagesIn: 0, messagesOut: 0 }
  /** Socket publishes not yet seen back, by topic: the broker's copy is theirs, not a device's. */
  const echoes = new Map<string, { payload: Buffer; socketId: string; at: number }[]>()
  let echoCount = 0
  const requests = new Map<string, { resolve: (m: Message) => void; timer: NodeJS.Timeout }>()

  let protocolVersion: 4 | 5 = 5
  let status: BrokerStatus = { mode: 'external', url, connected: false, protocolVersion, since: Date.now() }
  let closing = false
  let attempt = 0
  let retryTimer: NodeJS.Timeout | null = null
  let subscribed = false

  function setStatus(next: Omit<BrokerStatus, 'mode' | 'url' | 'since' | 'protocolVersion'>): void {
    const changed = next.connected !== status.connected
    status = { mode: 'external', url, protocolVersion, since: changed ? Date.now() : status.since, ...next }
    if (changed || next.error !== undefined) for (const h of statusHandlers) h(status)
  }

  const options = (): IClientOptions => ({
    protocolVersion,
    clientId,
    ...(opts.username !== undefined && { username: opts.username }),
    ...(opts.password !== undefined && { password: opts.password }),
    ...(opts.ca && { ca: opts.ca }),
    rejectUnauthorized: true,
    clean: !persistent,
    // reconnection is ours, with back-off and a log line; mqtt.js' would retry at a fixed period
    reconnectPeriod: 0,
    connectTimeout: opts.connectTimeoutMs ?? externalDefaults.connectTimeoutMs,
    keepalive: 30,
    resubscribe: false,
    ...(protocolVersion === 5 && {
      properties: {
        // the broker drops what we could not take, rather than closing us for it
        maximumPacketSize: limits.maxPacketSize,
        ...(persistent && { sessionExpiryInterval: SESSION_EXPIRY_S }),
        requestProblemInformation: true,
      },
    }),
  })

  /** Connects once: resolves with the client when the broker accepts, rejects with why not. */
  function connectOnce(): Promise<MqttClient> {
    return new Promise((resolve, reject) => {
      const client = mqtt.connect(opts.url, options())
      const fail = (err: Error & { code?: number | string }) => {
        client.removeAllListeners()
        client.on('error', () => {})
        client.end(true)
        reject(err)
      }
      const closed = () => fail(Object.assign(new Error('the connection closed before the broker answered'), { code: 'ECONNRESET' }))
      client.once('connect', () => {
        client.off('error', fail)
        client.off('close', closed)
        resolve(client)
      })
      client.once('error', fail)
      client.once('close', closed)
    })
  }

  /** The first connection: MQTT 5, then 3.1.1 if the broker does not speak 5. */
  async function connectFirst(): Promise<MqttClient> {
    try {
      return await connectOnce()
    } catch (err) {
      const code = (err as { code?: unknown }).code
      if (typeof code !== 'number' || !WRONG_VERSION.has(code)) throw err
      log?.info({ broker: url }, `${url} does not speak MQTT 5; using MQTT 3.1.1 (no properties, commands without answers)`)
      protocolVersion = 4
      return connectOnce()
    }
  }

  let client: MqttClient
  try {
    client = await connectFirst()
  } catch (err) {
    throw new BrokerConnectError(diagnose(err as Error & { code?: number | string }, url, opts.username !== undefined).line)
  }
  log?.info({ broker: url, protocolVersion, clientId }, `connected to ${url} (MQTT ${protocolVersion === 5 ? '5' : '3.1.1'}) as ${clientId}`)
  setStatus({ connected: true })
  if (opts.share !== undefined && client.options.protocolVersion === 4) {
    log?.error({ broker: url }, `--broker-share needs MQTT 5, and ${url} speaks 3.1.1: this node stores every message it sees, as every other node on the broker does`)
  }
  watch(client)

  function watch(c: MqttClient): void {
    c.on('message', (topic, payload, packet) => onMessage(topic, payload, packet))
    c.on('error', (err) => {
      // a refused reconnection (a changed password) is the status until the next attempt
      setStatus({ connected: false, error: diagnose(err as Error & { code?: number | string }, url, opts.username !== undefined).cause })
    })
    c.on('close', () => {
      subscribed = false
      if (closing) return
      const wasConnected = status.connected
      setStatus({ connected: false, error: status.error ?? 'the connection was lost' })
      const delay = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** attempt) * (0.8 + Math.random() * 0.4)
      attempt++
      if (wasConnected || attempt === 1) {
        log?.warn({ broker: url, error: status.error }, `lost the broker ${url}${status.error ? ` (${status.error})` : ''}; reconnecting with back-off (1 s, doubling to 30 s)`)
      } else {
        log?.debug({ broker: url, attempt, delayMs: Math.round(delay) }, 'reconnecting to the broker')
      }
      retryTimer = setTimeout(() => {
        retryTimer = null
        if (!closing) c.reconnect()
      }, delay)
      retryTimer.unref()
    })
    c.on('connect', () => {
      if (attempt > 0) {
        const outage = Math.round((Date.now() - status.since) / 1000)
        log?.info({ broker: url, outageS: outage }, `reconnected to ${url} after ${outage} s; resubscribed to ${filters.join(', ')}`)
      }
      attempt = 0
      setStatus({ connected: true })
      subscribeAll()
    })
  }

  /** Subscribes on the broker, once someone listens here: retained messages sent in answer must reach them. */
  function subscribeAll(): void {
    if (subscribed || handlers.size === 0 || !client.connected) return
    subscribed = true
    const wanted = [...filters, '$SYS/#', ...(filters.some((f) => topicMatches(f, replyTopic)) ? [] : [replyTopic])]
    const refused = (err: Error | null, granted: { topic: string; qos: number }[] | undefined) => {
      if (err) return log?.error({ broker: url, err }, `${url} refused the subscriptions: ${err.message}`)
      for (const g of granted ?? []) {
        // `$SYS` is optional: many brokers keep it from ordinary users
        if (g.qos >= 0x80 && g.topic !== '$SYS/#') {
          log?.error({ broker: url, filter: g.topic, reasonCode: g.qos }, `${url} refused the subscription to ${g.topic}; check its ACL for ${opts.username ?? 'anonymous clients'}, or --broker-filters`)
        }
      }
    }
    client.subscribe(wanted, { qos: 1, ...(sharing() && { properties: { subscriptionIdentifier: SHOWN } }) }, refused)
    if (sharing()) {
      client.subscribe(
        filters.map((f) => `$share/${opts.share}/${f}`),
        { qos: 1, properties: { subscriptionIdentifier: SHARED } },
        refused,
      )
    }
  }

  function onMessage(topic: string, payload: Buffer, packet: IPublishPacket): void {
    stats.messagesIn++
    const ids = packet.properties?.subscriptionIdentifier
    const viaShare = sharing() && (Array.isArray(ids) ? ids.includes(SHARED) : ids === SHARED)
    if (viaShare) return storeCopy(topic, payload, packet)
    const properties = fromPacket(packet.properties)
    const socketId = takeEcho(topic, payload)
    const message: Message = {
      topic,
      payload,
      qos: packet.qos,
      // a broker sets retain only on what it sends because of a new subscription [MQTT-3.3.1-9]
      retain: packet.retain,
      ts: Date.now(),
      from: socketId === undefined ? { kind: 'mqtt' } : { kind: 'socket', socketId },
      // with several nodes on the broker, each stores what its shared subscription brings
      local: !sharing(),
      ...(properties && { properties }),
      ...(packet.retain && { replay: true }),
    }
    if (topic === replyTopic && properties?.correlationData !== undefined) {
      const pending = requests.get(properties.correlationData)
      if (pending) {
        requests.delete(properties.correlationData)
        clearTimeout(pending.timer)
        pending.resolve(message)
      }
    }
    if (topic.startsWith('$SYS/brokers/')) clientEvent(topic, payload)
    for (const { filter, handler } of handlers) if (topicMatches(filter, topic)) handler(message)
  }

  function sharing(): boolean {
    return opts.share !== undefined && protocolVersion === 5
  }

  /** The copy the shared subscription brought: this node stores it; its other copy was shown. */
  function storeCopy(topic: string, payload: Buffer, packet: IPublishPacket): void {
    // Mosquitto 2.0 sends retained messages to shared subscribers too, which MQTT 5 forbids [MQTT-3.8.4-5]:
    // they were stored when first published
    if (packet.retain) return
    const properties = fromPacket(packet.properties)
    const message: Message = {
      topic,
      payload,
      qos: packet.qos,
      retain: false,
      ts: Date.now(),
      from: { kind: 'mqtt' },
      local: true,
      storeOnly: true,
      ...(properties && { properties }),
    }
    for (const { filter, handler } of handlers) if (topicMatches(filter, topic)) handler(message)
  }

  /** EMQX's client events: `$SYS/brokers/<node>/clients/<client id>/connected|disconnected`. */
  function clientEvent(topic: string, payload: Buffer): void {
    const levels = topic.split('/')
    const event = levels.at(-1)
    if (levels[3] !== 'clients' || (event !== 'connected' && event !== 'disconnected')) return
    let id = levels.slice(4, -1).join('/')
    try {
      const body = JSON.parse(payload.toString()) as { clientid?: unknown }
      if (typeof body.clientid === 'string') id = body.clientid
    } catch {
      // the topic names the client too
    }
    if (id === '' || id === clientId) return
    const e: PresenceEvent = event === 'connected' ? { type: 'connect', clientId: id } : { type: 'disconnect', clientId: id }
    for (const h of presenceHandlers) h(e)
  }

  function expectEcho(topic: string, payload: Buffer, socketId: string): void {
    if (!filters.some((f) => topicMatches(f, topic))) return
    if (echoCount >= MAX_ECHOES) pruneEchoes(Date.now(), true)
    const list = echoes.get(topic) ?? []
    list.push({ payload, socketId, at: Date.now() })
    echoes.set(topic, list)
    echoCount++
  }

  function takeEcho(topic: string, payload: Buffer): string | undefined {
    const list = echoes.get(topic)
    if (!list) return undefined
    const now = Date.now()
    const i = list.findIndex((e) => now - e.at <= ECHO_WINDOW_MS && e.payload.equals(payload))
    if (i < 0) return undefined
    const [echo] = list.splice(i, 1)
    echoCount--
    if (list.length === 0) echoes.delete(topic)
    return echo!.socketId
  }

  /** Drops echoes that never came back (a broker ACL dropped them); with `all`, the oldest half too. */
  function pruneEchoes(now: number, all: boolean): void {
    for (const [topic, list] of echoes) {
      const kept = list.filter((e) => now - e.at <= ECHO_WINDOW_MS)
      echoCount -= list.length - kept.length
      if (kept.length === 0) echoes.delete(topic)
      else echoes.set(topic, kept)
    }
    if (all && echoCount >= MAX_ECHOES / 2) {
      echoes.clear()
      echoCount = 0
    }
  }
  const pruneTimer = setInterval(() => pruneEchoes(Date.now(), false), ECHO_WINDOW_MS)
  pruneTimer.unref()

  function check(message: OutgoingMessage, principal: Principal): void {
    if (!policy.canPublish(principal, message.topic)) {
      throw new CodedError('E_NOT_AUTHORIZED', `${principal.name} may not publish to ${message.topic}`)
    }
    if (!client.connected) throw new CodedError('E_BROKER_UNAVAILABLE', `the broker ${url} is not connected; Pulseboard is reconnecting`)
    if (message.properties && protocolVersion === 4) {
      throw new CodedError('E_MQTT5_REQUIRED', `${url} speaks MQTT 3.1.1, which has no message properties`)
    }
  }

  async function send(message: OutgoingMessage, properties: MessageProperties | undefined): Promise<void> {
    const publishOptions: IClientPublishOptions = { qos: message.qos, retain: message.retain, ...(properties && { properties: toPacket(properties) }) }
    expectEcho(message.topic, message.payload, message.socketId)
    try {
      await client.publishAsync(message.topic, message.payload, publishOptions)
      stats.messagesOut++
    } catch (err) {
      takeEcho(message.topic, message.payload)
      const code = (err as { code?: unknown }).code
      if (code === 0x87) throw new CodedError('E_NOT_AUTHORIZED', `${url} does not let Pulseboard publish to ${message.topic}`)
      throw new CodedError('E_PUBLISH_FAILED', `${url}: ${(err as Error).message}`)
    }
  }

  const source: ExternalSource = {
    description: `${url} (MQTT ${protocolVersion === 5 ? '5' : '3.1.1'})`,
    limits,
    stats,

    // whatever the scope: every node on this broker subscribes to it, and gets every node's messages
    subscribe(filter, handler) {
      const entry = { filter, handler }
      handlers.add(entry)
      subscribeAll()
      return () => handlers.delete(entry)
    },

    async publish(message, principal) {
      check(message, principal)
      await send(message, message.properties)
    },

    ...(protocolVersion === 5 && {
      async request(message: OutgoingMessage, principal: Principal, timeoutMs: number): Promise<Message> {
        check(message, principal)
        if (requests.size >= MAX_REQUESTS) throw new CodedError('E_LIMIT_REACHED', `${MAX_REQUESTS} commands are waiting for an answer already`)
        const correlationData = randomBytes(12).toString('base64')
        const answer = new Promise<Message>((resolve, reject) => {
          const timer = setTimeout(() => {
            requests.delete(correlationData)
            reject(new CodedError('E_DEVICE_TIMEOUT', `no answer on ${replyTopic} within ${timeoutMs / 1000} s`))
          }, timeoutMs)
          requests.set(correlationData, { resolve, timer })
        })
        try {
          await send(message, { ...message.properties, responseTopic: replyTopic, correlationData })
        } catch (err) {
          clearTimeout(requests.get(correlationData)?.timer)
          requests.delete(correlationData)
          throw err
        }
        return answer
      },
    }),

    onPresence(handler) {
      presenceHandlers.add(handler)
      return () => presenceHandlers.delete(handler)
    },

    // retained messages come as replays when Pulseboard subscribes
    async *retained() {},

    status: () => status,
    onStatus(handler) {
      statusHandlers.add(handler)
      return () => statusHandlers.delete(handler)
    },

    async close() {
      closing = true
      if (retryTimer) clearTimeout(retryTimer)
      clearInterval(pruneTimer)
      for (const [, r] of requests) clearTimeout(r.timer)
      requests.clear()
      await client.endAsync()
    },
  }
  return source
}

/**
 * Why a connection failed: `cause` for the status (the dashboard, /api/health), and `line`, one
 * line for people that also names the flag that fixes it. `loggedIn`: a user name was given.
 */
function diagnose(err: Error & { code?: number | string }, url: string, loggedIn: boolean): { cause: string; line: string } {
  const code = err.code
  const reach = (cause: string, fix: string) => ({ cause, line: `cannot reach ${url}: ${cause}; ${fix}` })
  if (typeof code === 'number' && LOGIN_REFUSED[code]) {
    // Mosquitto answers a wrong user name or password with "not authorized" (5, 0x87), never with 4 or 0x86
    const cause = loggedIn && NOT_AUTHORIZED.has(code) ? 'bad user name or password, or the user is not authorized' : LOGIN_REFUSED[code]
    return { cause: `login refused: ${cause}`, line: `${url} refused the login: ${cause}; check --broker-username and --broker-password` }
  }
  if (typeof code === 'number') return { cause: `refused: ${err.message} (code ${code})`, line: `${url} refused the connection: ${err.message} (code ${code}); check --broker` }
  switch (code) {
    case 'ECONNREFUSED':
      return reach('connection refused', 'is the broker running, and is --broker right?')
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return reach('no such host', 'fix --broker')
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return reach('no route to the host', 'check the network or --broker')
    case 'DEPTH_ZERO_SELF_SIGNED_CERT':
    case 'SELF_SIGNED_CERT_IN_CHAIN':
    case 'UNABLE_TO_VERIFY_LEAF_SIGNATURE':
    case 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY':
      return { cause: `its TLS certificate is not trusted (${err.message})`, line: `${url}: its TLS certificate is not trusted (${err.message}); give its CA with --broker-ca` }
    case 'ERR_TLS_CERT_ALTNAME_INVALID':
      return { cause: `its TLS certificate is for another name (${err.message})`, line: `${url}: its TLS certificate is for another name (${err.message}); connect by a name it has` }
  }
  if (/timeout/i.test(err.message)) return reach('no answer in time', 'is --broker right, and the port open?')
  return { cause: err.message, line: `cannot connect to ${url}: ${err.message}; check --broker` }
}

/** The URL as logs and the dashboard show it: never a password. */
export function redact(text: string): string {
  try {
    const u = new URL(text)
    u.username = ''
    u.password = ''
    return u.toString().replace(/\/$/, '')
  } catch {
    return text
  }
}

type PacketProperties = NonNullable<IPublishPacket['properties']>

/** mqtt.js' properties as the envelope carries them: correlation data as base64, nothing when empty. */
function fromPacket(p: PacketProperties | undefined): MessageProperties | undefined {
  if (!p) return undefined
  const out: MessageProperties = {}
  if (p.userProperties && Object.keys(p.userProperties).length > 0) out.userProperties = p.userProperties
  if (p.contentType !== undefined) out.contentType = p.contentType
  if (p.payloadFormatIndicator !== undefined) out.payloadFormatIndicator = p.payloadFormatIndicator
  if (p.responseTopic !== undefined) out.responseTopic = p.responseTopic
  if (p.correlationData !== undefined) out.correlationData = Buffer.from(p.correlationData).toString('base64')
  if (p.messageExpiryInterval !== undefined) out.messageExpiryInterval = p.messageExpiryInterval
  return Object.keys(out).length > 0 ? out : undefined
}

function toPacket(p: MessageProperties): PacketProperties {
  return {
    ...(p.userProperties && { userProperties: p.userProperties }),
    ...(p.contentType !== undefined && { contentType: p.contentType }),
    ...(p.payloadFormatIndicator !== undefined && { payloadFormatIndicator: p.payloadFormatIndicator }),
    ...(p.responseTopic !== undefined && { responseTopic: p.responseTopic }),
    ...(p.correlationData !== undefined && { correlationData: Buffer.from(p.correlationData, 'base64') }),
    ...(p.messageExpiryInterval !== undefined && { messageExpiryInterval: p.messageExpiryInterval }),
  }
}
