/**
 * A fleet of simulated IoT devices, each its own MQTT connection, speaking a mix of firmware
 * formats. A library: the CLI (`pulseboard simulate`) creates it, starts it and prints status().
 */
import { EventEmitter } from 'node:events'
import net from 'node:net'
import type { MqttClient } from 'mqtt'
import { z } from 'zod'
import { SimulatedDevice } from './device.ts'
import { FORMAT_NAMES, MAX_INTERVAL_MS, MIN_INTERVAL_MS, formatFor, type Command, type FormatName } from './formats.ts'
import { deviceSeed, modelFor, profileFor, seedFrom, type SensorKind } from './models.ts'
import { RateMeter } from './rate.ts'

export type { RequestAnswer } from './device.ts'
export type { Command, FormatName } from './formats.ts'
export type { SensorKind } from './models.ts'

export interface FleetOptions {
  /**
   * Broker URL (mqtt, mqtts, ws, wss), or several of one cluster: each device connects to the
   * first and, whenever its connection drops, reconnects to the next in turn (mqtt.js `servers`),
   * so it fails over when its node dies. Several must share scheme, path and credentials, which
   * mqtt.js takes from the first. @default "mqtt://127.0.0.1:1883"
   */
  url?: string | readonly string[]
  /** @default 5 */
  devices?: number
  /** Publish interval per device in ms. @default 1000 */
  intervalMs?: number
  /** Firmware every device speaks; `mixed` cycles generic, tasmota, esphome, homie. @default "mixed" */
  format?: FormatName | 'mixed'
  /**
   * Device id prefix, so two fleets don't collide. Lower-case letters, digits and hyphens
   * (Homie ids allow nothing else). Device ids are `<prefix>-<format>-<n>`, n from 1. @default "sim"
   */
  prefix?: string
  /** MQTT keepalive in seconds; the broker announces a silent device offline after 1.5× this. @default 10 */
  keepalive?: number
  /** How long start() waits for the next device to connect before it gives up and rejects. @default 5000 */
  connectTimeoutMs?: number
  /** Seed of the sensor models; the same seed gives the same readings at the same time. @default derived from prefix */
  seed?: number
  /**
   * MQTT protocol level: 4 (3.1.1), or 5, where every publish carries properties (contentType,
   * payloadFormatIndicator, the user properties `model` and `firmware`) and a command with a
   * response topic is answered there with its correlation data. @default 4
   */
  protocolVersion?: 4 | 5
}

export interface FleetStatus {
  devices: number
  connected: number
  /** Over a sliding window of about one second. */
  messagesPerSecond: number
  /** Every message published since start, telemetry and announcements alike. */
  published: number
}

/** A device of the fleet, for display and diagnostics. */
export interface FleetDevice {
  readonly id: string
  readonly format: FormatName
  readonly sensors: readonly SensorKind[]
  readonly relay: boolean
  readonly intervalMs: number
  readonly connected: boolean
  /** The device's own MQTT connection (null before start()). */
  readonly client: MqttClient | null
}

export type FleetEvents = {
  /** A device connected (again) and announced itself online. */
  connect: [deviceId: string]
  /** A device lost its connection; mqtt.js reconnects it. */
  disconnect: [deviceId: string]
  /** A device applied a command. */
  command: [deviceId: string, command: Command]
  /** A device's connection failed after start(); not named `error` so an unhandled one never throws. */
  deviceError: [deviceId: string, error: Error]
}

export interface Fleet extends EventEmitter<FleetEvents> {
  /** The broker URLs, joined by commas. */
  readonly url: string
  readonly urls: readonly string[]
  readonly devices: readonly FleetDevice[]
  /**
   * Connects every device; resolves once all are connected. Rejects with a one-line error naming
   * the URL on the first connection error, or when no device has connected for `connectTimeoutMs`,
   * and closes the fleet.
   */
  start(): Promise<void>
  status(): FleetStatus
  /** Publishes offline for every device, then disconnects each cleanly. Idempotent. */
  close(): Promise<void>
}

const defaults = {
  url: 'mqtt://127.0.0.1:1883',
  devices: 5,
  intervalMs: 1000,
  format: 'mixed',
  prefix: 'sim',
  keepalive: 10,
  connectTimeoutMs: 5000,
  protocolVersion: 4,
} satisfies FleetOptions

/** Brokers a device cycles through at most. */
export const MAX_URLS = 16

const BrokerUrl = z.string().regex(/^(mqtts?|wss?|tcp|tls|ssl):\/\/[^/]/, 'must be a broker URL such as mqtt://127.0.0.1:1883')

const OptionsSchema = z
  .object({
    url: z.union([
      BrokerUrl,
      z
        // failoverProblem() compares their parts: each must parse
        .array(BrokerUrl.refine((url) => URL.canParse(url), 'must be a broker URL such as mqtt://127.0.0.1:1883'))
        // counted here, not with min() and max(), whose issues a union reports only as "Invalid input"
        .superRefine((urls, ctx) => {
          const problem = failoverProblem(urls)
          if (problem !== null) ctx.addIssue({ code: 'custom', message: problem })
        }),
    ]),
    devices: z.number().int().min(1).max(100_000),
    intervalMs: z.number().int().min(MIN_INTERVAL_MS).max(MAX_INTERVAL_MS),
    format: z.enum([...FORMAT_NAMES, 'mixed']),
    prefix: z
      .string()
      .regex(/^[a-z0-9][a-z0-9-]*$/, 'must be lower-case letters, digits and hyphens, not starting with a hyphen'),
    keepalive: z.number().int().min(0).max(65_535),
    connectTimeoutMs: z.number().int().min(1).max(600_000),
    seed: z.number().int().min(0).max(0xffff_ffff).optional(),
    protocolVersion: z.union([z.literal(4), z.literal(5)]),
  })
  .strict()

type ResolvedOptions = z.output<typeof OptionsSchema>

/**
 * Why mqtt.js cannot cycle through these URLs (or there are none, or too many), or null. Its `servers` carry only host, port and
 * protocol: the path (MQTT over WebSocket), the credentials and the TLS server name are the
 * first URL's for every connection.
 */
function failoverProblem(urls: readonly string[]): string | null {
  if (urls.length === 0) return 'needs at least one broker URL'
  if (urls.length > MAX_URLS) return `at most ${MAX_URLS} broker URLs, got ${urls.length}`
  // a URL that does not parse has its own issue already
  if (!urls.every((u) => URL.canParse(u))) return null
  const parsed = urls.map((u) => new URL(u))
  const first = parsed[0]!
  for (const [i, u] of parsed.entries()) {
    if (u.protocol !== first.protocol) return `every URL must use one scheme (${first.protocol}//), got ${urls[i]}`
    if (u.pathname !== first.pathname) return `every URL must have the same path (${first.pathname}), got ${urls[i]}`
    if (u.username !== first.username || u.password !== first.password) return `every URL must carry the same user name and password (mqtt.js sends the first's), got ${urls[i]}`
  }
  // MQTT over TLS keeps the first host name it verified (tls servername) for every later server;
  // WebSocket builds its TLS from each URL
  const hosts = new Set(parsed.map((u) => u.hostname.replace(/^\[|\]$/g, '')))
  if (/^(mqtts|tls|ssl):$/.test(first.protocol) && hosts.size > 1 && [...hosts].some((h) => net.isIP(h) === 0)) {
    return `MQTT over TLS to several hosts needs one host name or IP addresses only (mqtt.js checks every certificate against the first name), got ${urls.join(', ')}`
  }
  return null
}

/** Validates options once; throws an error naming the offending field. */
export function resolveFleetOptions(opts: FleetOptions = {}): ResolvedOptions {
  // An explicit undefined (an unset CLI flag) means "the default", not "no value".
  const given = Object.fromEntries(Object.entries(opts).filter(([, v]) => v !== undefined))
  const result = OptionsSchema.safeParse({ ...defaults, ...given })
  if (result.success) return result.data
  const problems = result.error.issues.map((issue) =>
    issue.path.length > 0 ? `${issue.path.join('.')}: ${issue.message}` : issue.message,
  )
  throw new Error(`invalid fleet options: ${problems.join('; ')}`)
}

/** When the device at `index` first publishes: spread evenly over one interval. */
export function staggerMs(index: number, devices: number, intervalMs: number): number {
  return Math.floor((index * intervalMs) / devices)
}

/** One line, whatever the error: Node's AggregateError (IPv6 and IPv4 both refused) has no message. */
function describe(error: unknown): string {
  if (error instanceof AggregateError && error.message === '') {
    const inner = error.errors.map((e: unknown) => (e instanceof Error ? e.message : String(e)))
    return [...new Set(inner)].join('; ') || 'connection failed'
  }
  if (!(error instanceof Error)) return String(error)
  const code = 'code' in error && typeof error.code === 'string' ? error.code : undefined
  const text = error.message || code || error.name
  return text.replace(/\s+/g, ' ').trim()
}

class SimulatorFleet extends EventEmitter<FleetEvents> implements Fleet {
  readonly url: string
  readonly urls: readonly string[]
  readonly devices: readonly SimulatedDevice[]
  readonly #options: ResolvedOptions
  readonly #rate = new RateMeter()
  #published = 0
  #started: Promise<void> | null = null
  #closed: Promise<void> | null = null

  constructor(options: ResolvedOptions) {
    super()
    this.#options = options
    this.urls = typeof options.url === 'string' ? [options.url] : [...options.url]
    this.url = this.urls.join(',')
    const fleetSeed = options.seed ?? seedFrom(options.prefix)
    const devices: SimulatedDevice[] = []
    for (let index = 0; index < options.devices; index++) {
      const format = formatFor(index, options.format)
      const id = `${options.prefix}-${format}-${index + 1}`
      const device = new SimulatedDevice(
        {
          id,
          format,
          sensors: profileFor(index),
          seed: deviceSeed(fleetSeed, index),
          urls: this.urls,
          keepalive: options.keepalive,
          connectTimeoutMs: options.connectTimeoutMs,
          intervalMs: options.intervalMs,
          startDelayMs: staggerMs(index, options.devices, options.intervalMs),
          protocolVersion: options.protocolVersion,
          model: modelFor(index),
        },
        {
          published: (count) => {
            this.#published += count
            this.#rate.record(count)
          },
          connected: () => this.emit('connect', id),
          disconnected: () => this.emit('disconnect', id),
          command: (command) => this.emit('command', id, command),
          error: (error) => this.emit('deviceError', id, error),
        },
      )
      devices.push(device)
    }
    this.devices = devices
  }

  start(): Promise<void> {
    if (this.#closed !== null) return Promise.reject(new Error(`fleet for ${this.url} is closed`))
    this.#started ??= this.#connectAll()
    return this.#started
  }

  async #connectAll(): Promise<void> {
    const { connectTimeoutMs } = this.#options
    let timer: NodeJS.Timeout | undefined
    let arm = (): void => {}
    // The deadline restarts whenever a device connects: a large fleet may take longer than
    // connectTimeoutMs to connect, but an unreachable broker never makes any progress.
    const deadline = new Promise<never>((_, reject) => {
      arm = () => {
        clearTimeout(timer)
        timer = setTimeout(() => {
          const count = `${this.devices.filter((d) => d.connected).length}/${this.devices.length} devices connected`
          reject(new Error(`no connection within ${connectTimeoutMs} ms (${count})`))
        }, connectTimeoutMs)
      }
    })
    arm()
    this.on('connect', arm)
    try {
      await Promise.race([Promise.all(this.devices.map((d) => d.start())), deadline])
    } catch (error) {
      await this.close()
      throw new Error(`cannot connect to ${this.url}: ${describe(error)}`, { cause: error })
    } finally {
      clearTimeout(timer)
      this.off('connect', arm)
    }
  }

  status(): FleetStatus {
    return {
      devices: this.devices.length,
      connected: this.devices.filter((d) => d.connected).length,
      messagesPerSecond: Math.round(this.#rate.perSecond() * 10) / 10,
      published: this.#published,
    }
  }

  close(): Promise<void> {
    this.#closed ??= Promise.all(this.devices.map((d) => d.close())).then(() => undefined)
    return this.#closed
  }
}

export function createFleet(opts: FleetOptions = {}): Fleet {
  return new SimulatorFleet(resolveFleetOptions(opts))
}
