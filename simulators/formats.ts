/**
 * How each simulated firmware lays out topics and payloads, and how it reads commands.
 * Pure: no I/O, and a command parser never throws on what arrives from the wire (bad input is null).
 * The layouts follow the real firmwares closely enough that the bridge's parsers can be tested
 * against them: Tasmota (tele/stat/cmnd), ESPHome (with Home Assistant discovery) and Homie 4.
 */
import { parseDuration } from './duration.ts'
import type { Sample, SensorKind } from './models.ts'

export const FORMAT_NAMES = ['generic', 'tasmota', 'esphome', 'homie'] as const
export type FormatName = (typeof FORMAT_NAMES)[number]

/** The shortest and longest publish interval a command (or the fleet options) may set. */
export const MIN_INTERVAL_MS = 10
export const MAX_INTERVAL_MS = 86_400_000

export interface OutgoingMessage {
  topic: string
  payload: string
  qos: 0 | 1
  retain: boolean
}

/** A command as the device understands it, whatever the firmware's wire form. */
export type Command =
  | { kind: 'relay'; value: boolean | 'toggle' | 'query' }
  /** `unit` is how the command was given, so a reply can echo it the same way. */
  | { kind: 'interval'; ms: number | 'query'; unit: 'ms' | 's' }

export interface DeviceInfo {
  id: string
  sensors: readonly SensorKind[]
}

/** Device state that is not a sensor reading. */
export interface DeviceContext {
  /** Epoch ms now. */
  now: number
  /** ms since the device booted. */
  uptimeMs: number
  intervalMs: number
  /** Wi-Fi signal quality, %. */
  rssi: number
}

export interface FirmwareFormat {
  readonly name: FormatName
  /** The MQTT will: the broker publishes it when the connection drops without a DISCONNECT. */
  will(dev: DeviceInfo): OutgoingMessage
  /** Published in order on every (re)connect: availability, discovery, initial states. */
  birth(dev: DeviceInfo, sample: Sample, ctx: DeviceContext): OutgoingMessage[]
  /** Published by a clean close, because a DISCONNECT discards the will [MQTT-3.14.4-3]. */
  offline(dev: DeviceInfo): OutgoingMessage
  /**
   * The periodic publish. `previous` is the sample published last time (null right after a
   * connect); firmwares that report binary states only on change compare against it.
   */
  telemetry(dev: DeviceInfo, sample: Sample, previous: Sample | null, ctx: DeviceContext): OutgoingMessage[]
  /** Topic filters the device subscribes to for commands. */
  commandFilters(dev: DeviceInfo): string[]
  parseCommand(dev: DeviceInfo, topic: string, payload: string): Command | null
  /** What the firmware publishes once it has applied `command` (`sample` and `ctx` are after it). */
  reply(dev: DeviceInfo, command: Command, sample: Sample, ctx: DeviceContext): OutgoingMessage[]
}

// ---------------------------------------------------------------------------------------------
// Shared helpers

/** The numeric readings of a sample, in a fixed order, under their lower-case names. */
type NumericKey = 'temperature' | 'humidity' | 'pressure' | 'battery' | 'power' | 'energy'
const NUMERIC_KEYS: readonly NumericKey[] = ['temperature', 'humidity', 'pressure', 'battery', 'power', 'energy']

function numericReadings(sample: Sample): [NumericKey, number][] {
  const out: [NumericKey, number][] = []
  for (const key of NUMERIC_KEYS) {
    const value = sample[key]
    if (value !== undefined) out.push([key, value])
  }
  return out
}

interface Quantity {
  name: string
  unit: string
  deviceClass: string
  stateClass: 'measurement' | 'total_increasing'
}

const QUANTITIES: Readonly<Record<NumericKey, Quantity>> = {
  temperature: { name: 'Temperature', unit: '°C', deviceClass: 'temperature', stateClass: 'measurement' },
  humidity: { name: 'Humidity', unit: '%', deviceClass: 'humidity', stateClass: 'measurement' },
  pressure: { name: 'Pressure', unit: 'hPa', deviceClass: 'pressure', stateClass: 'measurement' },
  battery: { name: 'Battery', unit: '%', deviceClass: 'battery', stateClass: 'measurement' },
  power: { name: 'Power', unit: 'W', deviceClass: 'power', stateClass: 'measurement' },
  energy: { name: 'Energy', unit: 'kWh', deviceClass: 'energy', stateClass: 'total_increasing' },
}

function announce(topic: string, payload: string): OutgoingMessage {
  return { topic, payload, qos: 1, retain: true }
}

function telemetryMessage(topic: string, payload: string, retain = false): OutgoingMessage {
  return { topic, payload, qos: 0, retain }
}

function onOff(value: boolean): 'ON' | 'OFF' {
  return value ? 'ON' : 'OFF'
}

/** ON/OFF/TOGGLE/1/0/true/false in any case; the empty payload asks for the state. */
function parseSwitchWord(text: string): boolean | 'toggle' | 'query' | null {
  switch (text.trim().toUpperCase()) {
    case 'ON':
    case '1':
    case 'TRUE':
      return true
    case 'OFF':
    case '0':
    case 'FALSE':
      return false
    case 'TOGGLE':
    case '2': // Tasmota's POWER 2
      return 'toggle'
    case '':
      return 'query'
    default:
      return null
  }
}

function intervalInRange(ms: number | null): number | null {
  if (ms === null || !Number.isFinite(ms)) return null
  const whole = Math.round(ms)
  return whole >= MIN_INTERVAL_MS && whole <= MAX_INTERVAL_MS ? whole : null
}

/** A plain decimal number only: `Number('')` is 0 and `Number('0x10')` is 16, neither meant. */
function parseDecimal(text: string): number | null {
  const trimmed = text.trim()
  return /^\d+(\.\d+)?$/.test(trimmed) ? Number(trimmed) : null
}

// ---------------------------------------------------------------------------------------------
// generic: devices/<id>/telemetry (JSON numbers), devices/<id>/status, devices/<id>/commands

/** Pulseboard's generic format carries units in an optional `units` object. */
const GENERIC_UNITS = { temperature: '°C', humidity: '%', pressure: 'hPa', battery: '%', power: 'W', energy: 'kWh' }

function genericTelemetry(dev: DeviceInfo, sample: Sample): OutgoingMessage {
  const { temperature, humidity, pressure, battery, motion, power, energy } = sample
  const body = {
    temperature,
    humidity,
    pressure,
    battery,
    // booleans, so a reader knows these are on/off states (a switch), not levels
    motion,
    power,
    energy,
    relay: sample.relay,
    units: GENERIC_UNITS,
  }
  // JSON.stringify drops the undefined members: only the sensors this device has.
  return telemetryMessage(`devices/${dev.id}/telemetry`, JSON.stringify(body))
}

function parseGenericRelayValue(value: unknown): boolean | 'toggle' | null {
  if (typeof value === 'boolean') return value
  if (value === 1) return true
  if (value === 0) return false
  if (typeof value !== 'string') return null
  const word = parseSwitchWord(value)
  return word === 'query' ? null : word
}

export const generic: FirmwareFormat = {
  name: 'generic',
  will: (dev) => announce(`devices/${dev.id}/status`, 'offline'),
  birth: (dev) => [announce(`devices/${dev.id}/status`, 'online')],
  offline: (dev) => announce(`devices/${dev.id}/status`, 'offline'),
  telemetry: (dev, sample) => [genericTelemetry(dev, sample)],
  commandFilters: (dev) => [`devices/${dev.id}/commands`],
  parseCommand(dev, topic, payload) {
    if (topic !== `devices/${dev.id}/commands`) return null
    let body: unknown
    try {
      body = JSON.parse(payload)
    } catch {
      return null
    }
    if (typeof body !== 'object' || body === null || !('name' in body) || !('value' in body)) return null
    const { name, value } = body
    if (name === 'relay') {
      const relay = parseGenericRelayValue(value)
      return relay === null ? null : { kind: 'relay', value: relay }
    }
    if (name === 'interval') {
      const requested = typeof value === 'number' ? value : typeof value === 'string' ? parseDuration(value) : null
      const ms = intervalInRange(requested)
      return ms === null ? null : { kind: 'interval', ms, unit: 'ms' }
    }
    return null
  },
  // The relay state comes back in a telemetry message published at once.
  reply: (dev, command, sample) => (command.kind === 'relay' ? [genericTelemetry(dev, sample)] : []),
}

// ---------------------------------------------------------------------------------------------
// tasmota: tele/<id>/{SENSOR,STATE,LWT}, cmnd/<id>/<Command>, stat/<id>/{RESULT,POWER}

/** Tasmota's `Time`: local time without zone; the simulator's local time is UTC. */
function tasmotaTime(now: number): string {
  return new Date(now).toISOString().slice(0, 19)
}

/** Tasmota's `Uptime`: `<days>T<hh>:<mm>:<ss>`. */
export function tasmotaUptime(ms: number): string {
  const total = Math.max(0, Math.floor(ms / 1000))
  const pad = (n: number) => String(n).padStart(2, '0')
  const days = Math.floor(total / 86_400)
  return `${days}T${pad(Math.floor(total / 3600) % 24)}:${pad(Math.floor(total / 60) % 60)}:${pad(total % 60)}`
}

/** The chip a real device with this sensor set would carry, as Tasmota names it in SENSOR. */
function tasmotaClimateSensor(sensors: readonly SensorKind[]): string {
  if (sensors.includes('pressure')) return 'BME280'
  if (sensors.includes('humidity')) return 'SHT3X'
  return 'DS18B20'
}

function tasmotaSensor(dev: DeviceInfo, sample: Sample, ctx: DeviceContext): OutgoingMessage {
  const body: Record<string, unknown> = { Time: tasmotaTime(ctx.now) }
  const climate: Record<string, number> = {}
  if (sample.temperature !== undefined) climate.Temperature = sample.temperature
  if (sample.humidity !== undefined) climate.Humidity = sample.humidity
  if (sample.pressure !== undefined) climate.Pressure = sample.pressure
  if (Object.keys(climate).length > 0) body[tasmotaClimateSensor(dev.sensors)] = climate
  // A PIR on a switch input reports like a switch.
  if (sample.motion !== undefined) body.Switch1 = onOff(sample.motion)
  if (sample.battery !== undefined) body.Battery = { Percentage: sample.battery }
  if (sample.power !== undefined) {
    body.ENERGY = {
      Power: Math.round(sample.power),
      Total: sample.energy ?? 0,
      Voltage: Math.round(sample.voltage ?? 0),
      Current: sample.current ?? 0,
    }
  }
  if (sample.temperature !== undefined) body.TempUnit = 'C'
  if (sample.pressure !== undefined) body.PressureUnit = 'hPa'
  return telemetryMessage(`tele/${dev.id}/SENSOR`, JSON.stringify(body))
}

function tasmotaState(dev: DeviceInfo, sample: Sample, ctx: DeviceContext): OutgoingMessage {
  const body = {
    Time: tasmotaTime(ctx.now),
    Uptime: tasmotaUptime(ctx.uptimeMs),
    UptimeSec: Math.floor(ctx.uptimeMs / 1000),
    POWER: onOff(sample.relay),
    Wifi: { RSSI: ctx.rssi, Signal: Math.round(ctx.rssi / 2 - 100) },
  }
  return telemetryMessage(`tele/${dev.id}/STATE`, JSON.stringify(body))
}

export const tasmota: FirmwareFormat = {
  name: 'tasmota',
  will: (dev) => announce(`tele/${dev.id}/LWT`, 'Offline'),
  birth: (dev, sample, ctx) => [announce(`tele/${dev.id}/LWT`, 'Online'), tasmotaState(dev, sample, ctx)],
  offline: (dev) => announce(`tele/${dev.id}/LWT`, 'Offline'),
  telemetry: (dev, sample, _previous, ctx) => [tasmotaSensor(dev, sample, ctx), tasmotaState(dev, sample, ctx)],
  // Tasmota takes every command under its topic, names in any case.
  commandFilters: (dev) => [`cmnd/${dev.id}/+`],
  parseCommand(dev, topic, payload) {
    const prefix = `cmnd/${dev.id}/`
    if (!topic.startsWith(prefix)) return null
    const name = topic.slice(prefix.length).toLowerCase()
    if (name === 'power' || name === 'power1') {
      const value = parseSwitchWord(payload)
      return value === null ? null : { kind: 'relay', value }
    }
    if (name === 'teleperiod' || name === 'interval') {
      const unit = name === 'teleperiod' ? 's' : 'ms'
      if (payload.trim() === '') return { kind: 'interval', ms: 'query', unit }
      const n = parseDecimal(payload)
      const ms = intervalInRange(n === null ? null : unit === 's' ? n * 1000 : n)
      return ms === null ? null : { kind: 'interval', ms, unit }
    }
    return null
  },
  reply(dev, command, sample, ctx) {
    const stat = (name: string, payload: string): OutgoingMessage => ({
      topic: `stat/${dev.id}/${name}`,
      payload,
      qos: 1,
      retain: false,
    })
    if (command.kind === 'relay') {
      return [stat('RESULT', JSON.stringify({ POWER: onOff(sample.relay) })), stat('POWER', onOff(sample.relay))]
    }
    const result = command.unit === 's' ? { TelePeriod: ctx.intervalMs / 1000 } : { interval: ctx.intervalMs }
    return [stat('RESULT', JSON.stringify(result))]
  },
}

// ---------------------------------------------------------------------------------------------
// esphome: <id>/status, <id>/<component>/<object>/state|command, homeassistant/... discovery

function haDevice(dev: DeviceInfo): { identifiers: string[]; name: string } {
  return { identifiers: [dev.id], name: dev.id }
}

function esphomeDiscovery(dev: DeviceInfo, sample: Sample): OutgoingMessage[] {
  const id = dev.id
  const availability = `${id}/status`
  const out: OutgoingMessage[] = []
  for (const [key] of numericReadings(sample)) {
    const q = QUANTITIES[key]
    const config = {
      name: q.name,
      state_topic: `${id}/sensor/${key}/state`,
      unit_of_measurement: q.unit,
      device_class: q.deviceClass,
      state_class: q.stateClass,
      availability_topic: availability,
      unique_id: `${id}-${key}`,
      device: haDevice(dev),
    }
    out.push(announce(`homeassistant/sensor/${id}/${key}/config`, JSON.stringify(config)))
  }
  if (sample.motion !== undefined) {
    const config = {
      name: 'Motion',
      state_topic: `${id}/binary_sensor/motion/state`,
      device_class: 'motion',
      availability_topic: availability,
      unique_id: `${id}-motion`,
      device: haDevice(dev),
    }
    out.push(announce(`homeassistant/binary_sensor/${id}/motion/config`, JSON.stringify(config)))
  }
  const relay = {
    name: 'Relay',
    state_topic: `${id}/switch/relay/state`,
    command_topic: `${id}/switch/relay/command`,
    availability_topic: availability,
    unique_id: `${id}-relay`,
    device: haDevice(dev),
  }
  out.push(announce(`homeassistant/switch/${id}/relay/config`, JSON.stringify(relay)))
  const interval = {
    name: 'Interval',
    state_topic: `${id}/number/interval/state`,
    command_topic: `${id}/number/interval/command`,
    unit_of_measurement: 'ms',
    min: MIN_INTERVAL_MS,
    max: MAX_INTERVAL_MS,
    step: 1,
    availability_topic: availability,
    unique_id: `${id}-interval`,
    device: haDevice(dev),
  }
  out.push(announce(`homeassistant/number/${id}/interval/config`, JSON.stringify(interval)))
  return out
}

// ESPHome retains entity states by default, so a late subscriber sees the current value.
function esphomeState(topic: string, payload: string, qos: 0 | 1 = 0): OutgoingMessage {
  return { topic, payload, qos, retain: true }
}

export const esphome: FirmwareFormat = {
  name: 'esphome',
  will: (dev) => announce(`${dev.id}/status`, 'offline'),
  birth: (dev, sample, ctx) => [
    ...esphomeDiscovery(dev, sample),
    announce(`${dev.id}/status`, 'online'),
    esphomeState(`${dev.id}/switch/relay/state`, onOff(sample.relay), 1),
    esphomeState(`${dev.id}/number/interval/state`, String(ctx.intervalMs), 1),
    // Binary sensors report on change only, so their current state goes out with the birth.
    ...(sample.motion === undefined
      ? []
      : [esphomeState(`${dev.id}/binary_sensor/motion/state`, onOff(sample.motion), 1)]),
  ],
  offline: (dev) => announce(`${dev.id}/status`, 'offline'),
  telemetry(dev, sample, previous) {
    const out = numericReadings(sample).map(([key, value]) =>
      esphomeState(`${dev.id}/sensor/${key}/state`, String(value)),
    )
    // Binary sensors publish on change only, as ESPHome does.
    if (sample.motion !== undefined && sample.motion !== previous?.motion) {
      out.push(esphomeState(`${dev.id}/binary_sensor/motion/state`, onOff(sample.motion)))
    }
    return out
  },
  commandFilters: (dev) => [`${dev.id}/switch/relay/command`, `${dev.id}/number/interval/command`],
  parseCommand(dev, topic, payload) {
    if (topic === `${dev.id}/switch/relay/command`) {
      const word = payload.trim().toUpperCase()
      if (word === 'ON' || word === 'OFF') return { kind: 'relay', value: word === 'ON' }
      if (word === 'TOGGLE') return { kind: 'relay', value: 'toggle' }
      return null
    }
    if (topic === `${dev.id}/number/interval/command`) {
      const ms = intervalInRange(parseDecimal(payload))
      return ms === null ? null : { kind: 'interval', ms, unit: 'ms' }
    }
    return null
  },
  reply: (dev, command, sample, ctx) =>
    command.kind === 'relay'
      ? [esphomeState(`${dev.id}/switch/relay/state`, onOff(sample.relay), 1)]
      : [esphomeState(`${dev.id}/number/interval/state`, String(ctx.intervalMs), 1)],
}

// ---------------------------------------------------------------------------------------------
// homie 4.0: homie/<id>/$state etc., homie/<id>/<node>/<property>[/set]

interface HomieProperty {
  node: 'env' | 'power' | 'battery' | 'config'
  property: string
  name: string
  datatype: 'float' | 'integer' | 'boolean'
  unit?: string
  format?: string
  settable?: boolean
  value: (sample: Sample, ctx: DeviceContext) => string | undefined
}

const HOMIE_NODE_NAMES = { env: 'Environment', power: 'Power', battery: 'Battery', config: 'Configuration' }

function text(value: number | boolean | undefined): string | undefined {
  return value === undefined ? undefined : String(value)
}

function float(
  node: HomieProperty['node'],
  property: string,
  name: string,
  unit: string,
  read: (s: Sample) => number | undefined,
  format?: string,
): HomieProperty {
  return { node, property, name, datatype: 'float', unit, ...(format && { format }), value: (s) => text(read(s)) }
}

const HOMIE_PROPERTIES: readonly HomieProperty[] = [
  float('env', 'temperature', 'Temperature', '°C', (s) => s.temperature),
  float('env', 'humidity', 'Humidity', '%', (s) => s.humidity, '0:100'),
  float('env', 'pressure', 'Pressure', 'hPa', (s) => s.pressure),
  { node: 'env', property: 'motion', name: 'Motion', datatype: 'boolean', value: (s) => text(s.motion) },
  { node: 'power', property: 'relay', name: 'Relay', datatype: 'boolean', settable: true, value: (s) => text(s.relay) },
  float('power', 'power', 'Power', 'W', (s) => s.power),
  float('power', 'energy', 'Energy', 'kWh', (s) => s.energy),
  float('battery', 'level', 'Battery level', '%', (s) => s.battery, '0:100'),
  {
    node: 'config',
    property: 'interval',
    name: 'Publish interval',
    datatype: 'integer',
    unit: 'ms',
    format: `${MIN_INTERVAL_MS}:${MAX_INTERVAL_MS}`,
    settable: true,
    value: (_s, ctx) => String(ctx.intervalMs),
  },
]

function homieValue(dev: DeviceInfo, p: HomieProperty, value: string, qos: 0 | 1): OutgoingMessage {
  // [Homie 4.0] property values are retained unless `$retained` is false.
  return { topic: `homie/${dev.id}/${p.node}/${p.property}`, payload: value, qos, retain: true }
}

function homieProperty(property: string): HomieProperty {
  const p = HOMIE_PROPERTIES.find((candidate) => candidate.property === property)
  if (p === undefined) throw new Error(`unknown Homie property ${property}`)
  return p
}

export const homie: FirmwareFormat = {
  name: 'homie',
  will: (dev) => announce(`homie/${dev.id}/$state`, 'lost'),
  birth(dev, sample, ctx) {
    const base = `homie/${dev.id}`
    const present = HOMIE_PROPERTIES.flatMap((p) => {
      const value = p.value(sample, ctx)
      return value === undefined ? [] : [{ p, value }]
    })
    const nodes = [...new Set(present.map(({ p }) => p.node))]
    // [Homie 4.0] `$state` is `init` while the device describes itself, then `ready`.
    const out = [
      announce(`${base}/$state`, 'init'),
      announce(`${base}/$homie`, '4.0.0'),
      announce(`${base}/$name`, dev.id),
      announce(`${base}/$nodes`, nodes.join(',')),
    ]
    for (const node of nodes) {
      const properties = present.filter(({ p }) => p.node === node).map(({ p }) => p.property)
      out.push(announce(`${base}/${node}/$name`, HOMIE_NODE_NAMES[node]))
      out.push(announce(`${base}/${node}/$properties`, properties.join(',')))
    }
    for (const { p, value } of present) {
      const topic = `${base}/${p.node}/${p.property}`
      out.push(announce(`${topic}/$name`, p.name))
      out.push(announce(`${topic}/$datatype`, p.datatype))
      if (p.unit !== undefined) out.push(announce(`${topic}/$unit`, p.unit))
      if (p.format !== undefined) out.push(announce(`${topic}/$format`, p.format))
      out.push(announce(`${topic}/$settable`, String(p.settable === true)))
      out.push(homieValue(dev, p, value, 1))
    }
    out.push(announce(`${base}/$state`, 'ready'))
    return out
  },
  // A clean shutdown is `disconnected`; `lost` is for the will.
  offline: (dev) => announce(`homie/${dev.id}/$state`, 'disconnected'),
  telemetry(dev, sample, previous, ctx) {
    const out: OutgoingMessage[] = []
    for (const p of HOMIE_PROPERTIES) {
      // Settable and boolean values change by command or event; publish those on change only.
      if (p.settable === true) continue
      const value = p.value(sample, ctx)
      if (value === undefined) continue
      if (p.datatype === 'boolean' && previous !== null && value === p.value(previous, ctx)) continue
      out.push(homieValue(dev, p, value, 0))
    }
    return out
  },
  commandFilters: (dev) => [`homie/${dev.id}/power/relay/set`, `homie/${dev.id}/config/interval/set`],
  parseCommand(dev, topic, payload) {
    if (topic === `homie/${dev.id}/power/relay/set`) {
      // [Homie 4.0] booleans are exactly `true` or `false`.
      if (payload === 'true' || payload === 'false') return { kind: 'relay', value: payload === 'true' }
      return null
    }
    if (topic === `homie/${dev.id}/config/interval/set`) {
      const n = /^\d+$/.test(payload) ? Number(payload) : null
      const ms = intervalInRange(n)
      return ms === null ? null : { kind: 'interval', ms, unit: 'ms' }
    }
    return null
  },
  reply(dev, command, sample, ctx) {
    const p = homieProperty(command.kind === 'relay' ? 'relay' : 'interval')
    return [homieValue(dev, p, p.value(sample, ctx) ?? '', 1)]
  },
}

export const FORMATS: Readonly<Record<FormatName, FirmwareFormat>> = { generic, tasmota, esphome, homie }

/** The firmware of the device at `index`: `mixed` cycles generic, tasmota, esphome, homie. */
export function formatFor(index: number, format: FormatName | 'mixed'): FormatName {
  return format === 'mixed' ? FORMAT_NAMES[index % FORMAT_NAMES.length]! : format
}
