/**
 * One simulated device: its own MQTT connection, will and birth messages, a publish timer, and
 * the commands its firmware understands. The fleet owns many of these.
 */
import { connect, type IClientPublishOptions, type IPublishPacket, type MqttClient } from 'mqtt'
import { topicError } from '../protocol/topics.ts'
import {
  FORMATS,
  type Command,
  type DeviceContext,
  type FirmwareFormat,
  type FormatName,
  type OutgoingMessage,
} from './formats.ts'
import {
  accumulateEnergy,
  initialEnergy,
  initialRelay,
  rssiAt,
  sample,
  type Sample,
  type SensorKind,
} from './models.ts'

export interface DeviceOptions {
  id: string
  format: FormatName
  sensors: readonly SensorKind[]
  seed: number
  /**
   * Broker URLs: the first at the first connect, and the next in turn at every reconnect, so a
   * device whose broker dies moves to another node of the cluster. They share scheme, path and
   * credentials (the fleet checks).
   */
  urls: readonly string[]
  /** MQTT keepalive, seconds. */
  keepalive: number
  connectTimeoutMs: number
  intervalMs: number
  /** Delay before the first periodic publish, so a fleet does not publish in one tick. */
  startDelayMs: number
  /**
   * MQTT protocol level: 4 is 3.1.1; 5 adds properties to every publish and answers requests
   * (a command with a response topic).
   */
  protocolVersion: 4 | 5
  /** What kind of device it is (`weather-station`, ...), named in its MQTT 5 user properties. */
  model: string
}

/** Properties of an MQTT 5 publish, as mqtt.js takes them. */
type PublishProperties = NonNullable<IClientPublishOptions['properties']>

/** What an MQTT 5 device answers to a request: the command's state after it, or why it did nothing. */
export type RequestAnswer =
  | { ok: true; name: Command['kind']; value: boolean | number }
  | { ok: false; error: string }

/** How a device reports to its fleet (devices never print). */
export interface DeviceHooks {
  published(count: number): void
  connected(): void
  disconnected(): void
  command(command: Command): void
  error(error: Error): void
}

/** How long close() waits for the broker to acknowledge the offline message. */
const OFFLINE_ACK_TIMEOUT_MS = 2_000

export class SimulatedDevice {
  readonly id: string
  readonly format: FormatName
  readonly sensors: readonly SensorKind[]
  readonly #options: DeviceOptions
  readonly #firmware: FirmwareFormat
  readonly #hooks: DeviceHooks
  #client: MqttClient | null = null
  #relay: boolean
  #intervalMs: number
  #energy: number
  #lastPower = 0
  #lastEnergyAt: number
  #previous: Sample | null = null
  readonly #bootAt = Date.now()
  #timer: NodeJS.Timeout | undefined
  #nextTickAt = 0
  #online = false
  #everConnected = false
  #closing: Promise<void> | null = null
  readonly #userProperties: Record<string, string>

  constructor(options: DeviceOptions, hooks: DeviceHooks) {
    this.id = options.id
    this.format = options.format
    this.sensors = options.sensors
    this.#options = options
    this.#firmware = FORMATS[options.format]
    this.#hooks = hooks
    this.#relay = initialRelay(options.sensors)
    this.#intervalMs = options.intervalMs
    this.#energy = initialEnergy(options.seed)
    this.#lastEnergyAt = this.#bootAt
    this.#userProperties = { model: options.model, firmware: options.format }
  }

  /** The device's own MQTT connection, once start() has been called. */
  get client(): MqttClient | null {
    return this.#client
  }

  get relay(): boolean {
    return this.#relay
  }

  get intervalMs(): number {
    return this.#intervalMs
  }

  get connected(): boolean {
    return this.#client?.connected === true
  }

  /** Connects; resolves on the first CONNACK, rejects on the first error or if closed first. */
  start(): Promise<void> {
    if (this.#client !== null) throw new Error(`device ${this.id} already started`)
    const o = this.#options
    const will = this.#firmware.will(this)
    const v5 = o.protocolVersion === 5
    const failover = o.urls.length > 1
    // the first URL gives what every connection shares (credentials, path); `servers` where each goes
    const client = connect(o.urls[0]!, {
      // Only MQTT 5 names its version: under 3.1.1 the options, and so the packets, are what they always were.
      ...(v5 && { protocolVersion: 5 as const }),
      // mqtt.js connects to the next of these at every reconnect, wrapping around
      ...(failover && { servers: o.urls.map(server) }),
      clientId: o.id,
      keepalive: o.keepalive,
      clean: true,
      connectTimeout: o.connectTimeoutMs,
      // also how long a device waits before it tries the next broker when its own dies
      reconnectPeriod: 1_000,
      // Commands are subscribed again on every connect (see #onConnect).
      resubscribe: false,
      // Stale telemetry is worthless: drop QoS 0 while offline instead of flooding on reconnect.
      queueQoSZero: false,
      will: {
        topic: will.topic,
        payload: Buffer.from(will.payload),
        qos: will.qos,
        retain: will.retain,
        ...(v5 && { properties: this.#properties(will.payload) }),
      },
    })
    this.#client = client
    client.on('connect', () => this.#onConnect())
    client.on('close', () => this.#onClose())
    client.on('message', (topic, payload, packet) => this.#onMessage(topic, payload, packet))
    return new Promise<void>((resolve, reject) => {
      const settle = (error?: Error): void => {
        client.off('connect', onConnect)
        client.off('error', onError)
        client.off('end', onEnd)
        if (error === undefined) resolve()
        else reject(error)
      }
      const onConnect = (): void => settle()
      // With several brokers an unreachable one is tried again later: give up once each has
      // failed. A refused CONNACK (a numeric code) stops mqtt.js from reconnecting at all.
      const failures: Error[] = []
      const onError = (error: Error): void => {
        failures.push(error)
        if (failures.length < o.urls.length && typeof (error as { code?: unknown }).code !== 'number') return
        settle(failures.length === 1 ? error : new AggregateError(failures, '', { cause: error }))
      }
      const onEnd = (): void => settle(new Error('closed before it connected'))
      client.on('connect', onConnect)
      client.on('error', onError)
      client.on('end', onEnd)
      // After the first connect, errors (a refused reconnect, say) are reported, not thrown.
      client.on('error', (error) => {
        if (this.#everConnected) this.#hooks.error(error)
      })
    })
  }

  /** Publishes offline (a DISCONNECT discards the will) and disconnects. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= this.#close()
    return this.#closing
  }

  async #close(): Promise<void> {
    clearTimeout(this.#timer)
    const client = this.#client
    if (client === null) return
    let acknowledged = false
    if (client.connected) {
      const offline = this.#firmware.offline(this)
      this.#hooks.published(1)
      acknowledged = await new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => resolve(false), OFFLINE_ACK_TIMEOUT_MS)
        client.publish(offline.topic, offline.payload, this.#publishOptions(offline), (error) => {
          clearTimeout(timer)
          resolve(error === undefined || error === null)
        })
      })
    }
    // Force only when the broker is not answering; a graceful end waits for in-flight packets.
    await new Promise<void>((resolve) => client.end(!acknowledged, {}, () => resolve()))
    client.removeAllListeners()
    // mqtt.js may still emit an error from the closing stream; never let it throw.
    client.on('error', () => {})
  }

  #onConnect(): void {
    const client = this.#client
    if (client === null || this.#closing !== null) return
    this.#online = true
    const first = !this.#everConnected
    this.#everConnected = true
    client.subscribe(this.#firmware.commandFilters(this), { qos: 1 }, (error) => {
      if (error) this.#hooks.error(error)
    })
    const now = Date.now()
    const s = this.#sample(now)
    this.#publish(this.#firmware.birth(this, s, this.#context(now)))
    this.#previous = s
    if (first) this.#schedule(this.#options.startDelayMs)
    this.#hooks.connected()
  }

  #onClose(): void {
    if (!this.#online) return
    this.#online = false
    this.#hooks.disconnected()
  }

  #onMessage(topic: string, payload: Buffer, packet: IPublishPacket): void {
    const text = payload.toString('utf8')
    const command = this.#firmware.parseCommand(this, topic, text)
    // A request is a message with a response topic (MQTT 5.0, 4.10 Request / Response); 3.1.1 has none.
    const request = this.#options.protocolVersion === 5 ? packet.properties : undefined
    if (command === null) {
      // Like firmware, ignore what it does not understand; but a requester is told, not left waiting.
      if (request?.responseTopic !== undefined) {
        const shown = text.length > 64 ? `${text.slice(0, 64)}...` : text
        this.#answer(packet, { ok: false, error: `unknown command on ${topic}: ${JSON.stringify(shown)}` })
      }
      return
    }
    const now = Date.now()
    if (command.kind === 'relay') {
      // Account the energy drawn at the old power before the relay changes it.
      this.#accumulate(now)
      if (command.value === 'toggle') this.#relay = !this.#relay
      else if (command.value !== 'query') this.#relay = command.value
    } else if (command.ms !== 'query') {
      this.#intervalMs = command.ms
      this.#schedule(command.ms)
    }
    const s = this.#sample(now)
    if (request?.responseTopic !== undefined) {
      const value = command.kind === 'relay' ? this.#relay : this.#intervalMs
      this.#answer(packet, { ok: true, name: command.kind, value })
    }
    this.#publish(this.#firmware.reply(this, command, s, this.#context(now)))
    this.#hooks.command(command)
  }

  /** Publishes `answer` to the request's response topic, with its correlation data, so the requester can match it. */
  #answer(request: IPublishPacket, answer: RequestAnswer): void {
    const client = this.#client
    const topic = request.properties?.responseTopic
    // A response topic is a topic name, wildcards not allowed; one we cannot publish to gets no answer.
    if (client === null || !client.connected || topic === undefined || topicError(topic) !== null) return
    const payload = JSON.stringify(answer)
    const correlationData = request.properties?.correlationData
    const properties: PublishProperties = {
      ...this.#properties(payload),
      ...(correlationData !== undefined && { correlationData }),
    }
    client.publish(topic, payload, { qos: request.qos === 0 ? 0 : 1, retain: false, properties }, (error) => {
      if (error && this.#closing === null) this.#hooks.error(error)
    })
    this.#hooks.published(1)
  }

  /** What an MQTT 5 publish says of itself: the payload's type and which simulated device sent it. */
  #properties(payload: string): PublishProperties {
    return {
      // every payload of a simulated firmware is UTF-8 text
      payloadFormatIndicator: true,
      contentType: isJson(payload) ? 'application/json' : 'text/plain',
      userProperties: this.#userProperties,
    }
  }

  #publishOptions(m: OutgoingMessage): IClientPublishOptions {
    if (this.#options.protocolVersion !== 5) return { qos: m.qos, retain: m.retain }
    return { qos: m.qos, retain: m.retain, properties: this.#properties(m.payload) }
  }

  #schedule(delayMs: number): void {
    clearTimeout(this.#timer)
    this.#nextTickAt = Date.now() + delayMs
    this.#timer = setTimeout(() => this.#tick(), delayMs)
  }

  #tick(): void {
    const now = Date.now()
    if (this.#client?.connected === true) {
      const s = this.#sample(now)
      this.#publish(this.#firmware.telemetry(this, s, this.#previous, this.#context(now)))
      this.#previous = s
    }
    // Keep the cadence (due one interval after the last was due) unless we fell behind a whole one.
    let next = this.#nextTickAt + this.#intervalMs
    if (next <= now) next = now + this.#intervalMs
    this.#schedule(next - now)
  }

  #accumulate(now: number): void {
    this.#energy = accumulateEnergy(this.#energy, this.#lastPower, now - this.#lastEnergyAt)
    this.#lastEnergyAt = now
  }

  #sample(now: number): Sample {
    this.#accumulate(now)
    const s = sample(this.sensors, this.#options.seed, now, { relay: this.#relay, energy: this.#energy })
    this.#lastPower = s.power ?? 0
    return s
  }

  #context(now: number): DeviceContext {
    return { now, uptimeMs: now - this.#bootAt, intervalMs: this.#intervalMs, rssi: rssiAt(this.#options.seed, now) }
  }

  #publish(messages: readonly OutgoingMessage[]): void {
    const client = this.#client
    if (client === null || !client.connected || messages.length === 0) return
    for (const m of messages) {
      client.publish(m.topic, m.payload, this.#publishOptions(m), (error) => {
        if (error && this.#closing === null) this.#hooks.error(error)
      })
    }
    this.#hooks.published(messages.length)
  }
}

/** The port a URL without one means, as mqtt.js takes it. */
const DEFAULT_PORTS: Readonly<Record<string, number>> = { 'mqtt:': 1883, 'tcp:': 1883, 'mqtts:': 8883, 'tls:': 8883, 'ssl:': 8883, 'ws:': 80, 'wss:': 443 }

/** One of mqtt.js `servers`: the scheme is left out, as every URL has the first's (mqtt.js then uses it). */
function server(url: string): { host: string; port: number } {
  const u = new URL(url)
  return { host: u.hostname.replace(/^\[|\]$/g, ''), port: u.port === '' ? (DEFAULT_PORTS[u.protocol] ?? 1883) : Number(u.port) }
}

/** A JSON object or array: what a reader would parse as a document, not a bare number or word. */
function isJson(payload: string): boolean {
  const first = payload.trimStart()[0]
  if (first !== '{' && first !== '[') return false
  try {
    JSON.parse(payload)
    return true
  } catch {
    return false
  }
}
