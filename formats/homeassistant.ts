/**
 * Home Assistant MQTT discovery:
 *   <prefix>/<component>/[<node_id>/]<object_id>/config   one entity: JSON, abbreviated keys allowed
 *   <prefix>/device/<object_id>/config                    device-based discovery: entities under `cmps`
 * A config maps its state_topic (and availability topics) to named metrics of a device; from then on
 * messages on those topics are read through the config only. An empty config payload removes it.
 * Device id: device.identifiers[0], else node_id, else object_id. Metric: `name`, else object_id.
 */
import type { DeviceFact, ParseResult } from './types.ts'
import { compileTemplate, evaluate, type Template } from './template.ts'
import {
  Collector,
  empty,
  isRecord,
  isSafeKey,
  isSafeName,
  makeFact,
  ownString,
  parseJson,
  parseJsonObject,
  parseNumber,
  type Limits,
  type Message,
} from './values.ts'

// The abbreviations firmware actually sends (ESPHome, Tasmota, OpenMQTTGateway), from HA's abbreviations.py.
const ABBREVIATIONS: Record<string, string> = {
  stat_t: 'state_topic',
  cmd_t: 'command_topic',
  avty_t: 'availability_topic',
  avty: 'availability',
  pl_avail: 'payload_available',
  pl_not_avail: 'payload_not_available',
  unit_of_meas: 'unit_of_measurement',
  val_tpl: 'value_template',
  stat_val_tpl: 'state_value_template',
  pl_on: 'payload_on',
  pl_off: 'payload_off',
  stat_on: 'state_on',
  stat_off: 'state_off',
  dev: 'device',
  dev_cla: 'device_class',
  uniq_id: 'unique_id',
  obj_id: 'object_id',
  cmps: 'components',
  p: 'platform',
  t: 'topic',
  ids: 'identifiers',
  cns: 'connections',
  schema: 'schema',
}
// Entities whose state is ON/OFF; the dashboard shows them as switches.
const BINARY_COMPONENTS = new Set(['binary_sensor', 'switch', 'light', 'fan', 'siren', 'humidifier'])
const MAX_COMPONENTS_PER_CONFIG = 256
// Remembered strings are bounded too, or a bounded number of entries could still hold gigabytes.
const MAX_CONFIG_LENGTH = 256 * 1024
const MAX_REMEMBERED_TOPIC = 1024
const MAX_NAME_LENGTH = 256
const MAX_UNIT_LENGTH = 32

export interface Availability {
  topic: string
  available: string
  notAvailable: string
  template: Template | undefined
}

/** One discovered entity, as plain data: it is saved and restored with the rest of the discovery state. */
export interface Entry {
  device: string
  deviceName: string | undefined
  metric: string
  binary: boolean
  unit: string | undefined
  stateTopic: string | undefined
  /** Undefined: the payload is the value. Null: a template we do not understand, so no readings. */
  template: Template | null | undefined
  commandTopic: string | undefined
  availability: Availability[]
  on: string[]
  off: string[]
}

// Discovery entries by config topic, with indexes by state and availability topic. Bounded by entry count.
export class HomeAssistantState {
  private readonly configs = new Map<string, Entry[]>()
  private readonly byState = new Map<string, Set<string>>()
  private readonly byAvailability = new Map<string, Set<string>>()
  private total = 0
  constructor(private readonly max: number) {}

  put(configTopic: string, entries: Entry[]): void {
    this.remove(configTopic)
    if (entries.length === 0) return
    this.configs.set(configTopic, entries)
    this.total += entries.length
    for (const e of entries) {
      if (e.stateTopic !== undefined) index(this.byState, e.stateTopic, configTopic)
      for (const a of e.availability) index(this.byAvailability, a.topic, configTopic)
    }
    // Map iteration order is insertion order, so the first key is the config heard longest ago.
    while (this.total > this.max) {
      const oldest = this.configs.keys().next().value
      if (oldest === undefined || oldest === configTopic) break
      this.remove(oldest)
    }
  }

  remove(configTopic: string): void {
    const entries = this.configs.get(configTopic)
    if (!entries) return
    this.configs.delete(configTopic)
    this.total -= entries.length
    for (const e of entries) {
      if (e.stateTopic !== undefined) unindex(this.byState, e.stateTopic, configTopic)
      for (const a of e.availability) unindex(this.byAvailability, a.topic, configTopic)
    }
  }

  // Entries that read `topic` as state, and entries that read it as availability.
  lookup(topic: string): { state: Entry[]; availability: Entry[] } | null {
    const s = this.byState.get(topic)
    const a = this.byAvailability.get(topic)
    if (!s && !a) return null
    return { state: this.collect(s), availability: this.collect(a) }
  }

  get size(): number {
    return this.total
  }

  /** Configs oldest first, as plain data. */
  snapshot(): [configTopic: string, entries: Entry[]][] {
    return [...this.configs]
  }

  private collect(configTopics: Set<string> | undefined): Entry[] {
    const out: Entry[] = []
    for (const ct of configTopics ?? []) out.push(...(this.configs.get(ct) ?? []))
    return out
  }
}

function index(map: Map<string, Set<string>>, topic: string, configTopic: string): void {
  let set = map.get(topic)
  if (!set) map.set(topic, (set = new Set()))
  set.add(configTopic)
}

function unindex(map: Map<string, Set<string>>, topic: string, configTopic: string): void {
  const set = map.get(topic)
  if (!set) return
  set.delete(configTopic)
  if (set.size === 0) map.delete(topic)
}

// Null unless the topic is a discovery config topic.
export function parseDiscovery(msg: Message, limits: Limits, state: HomeAssistantState): ParseResult | null {
  const { levels } = msg
  const n = levels.length
  if (levels[0] !== limits.discoveryPrefix || (n !== 4 && n !== 5) || levels[n - 1] !== 'config') return null
  const component = levels[1]!
  const nodeId = n === 5 ? levels[2] : undefined
  const objectId = levels[n - 2]!

  if (msg.payload.trim().length === 0) {
    state.remove(msg.topic)
    return empty()
  }
  const raw = msg.payload.length <= MAX_CONFIG_LENGTH ? parseJsonObject(msg.payload) : undefined
  // An unreadable config changes nothing: the last good one stays in force.
  if (!raw) return empty()
  const config = expand(raw)

  let entries: Entry[]
  if (component === 'device') {
    const shared: Record<string, unknown> = { ...config }
    delete shared['components']
    const components = config['components']
    entries = []
    if (isRecord(components)) {
      for (const id of Object.keys(components).slice(0, MAX_COMPONENTS_PER_CONFIG)) {
        const c = components[id]
        if (!isRecord(c) || !isSafeKey(id)) continue
        const merged = { ...shared, ...expand(c) }
        const platform = ownString(merged, 'platform')
        if (platform === undefined) continue
        const e = toEntry(merged, platform, nodeId, id)
        if (e) entries.push(e)
      }
    }
  } else {
    const e = toEntry(config, component, nodeId, objectId)
    entries = e ? [e] : []
  }
  state.put(msg.topic, entries)

  const out = new Collector(limits.maxReadings)
  for (const f of factsFor(entries)) out.fact(f)
  return out.result()
}

// Null when no discovery config mentions the topic; otherwise the message is read only through discovery.
export function parseMapped(msg: Message, limits: Limits, state: HomeAssistantState): ParseResult | null {
  const found = state.lookup(msg.topic)
  if (!found) return null
  const out = new Collector(limits.maxReadings)
  let json: unknown
  let parsed = false
  const lazyJson = (): unknown => {
    if (!parsed) {
      parsed = true
      json = parseJson(msg.payload)
    }
    return json
  }

  const online = new Map<string, boolean>()
  for (const e of found.availability) {
    for (const a of e.availability) {
      if (a.topic !== msg.topic) continue
      const v = evaluate(a.template, msg.payload, lazyJson)
      const text = typeof v === 'string' ? v.trim() : typeof v === 'number' || typeof v === 'boolean' ? String(v) : ''
      if (text === a.available) online.set(e.device, true)
      else if (text === a.notAvailable) online.set(e.device, false)
    }
  }
  for (const [device, isOnline] of online) out.fact(makeFact(device, 'homeassistant', { online: isOnline }))

  const readFrom: Entry[] = []
  for (const e of found.state) {
    if (e.template === null) continue
    const v = evaluate(e.template, msg.payload, lazyJson)
    const value = e.binary ? binaryValue(v, e) : numericValue(v)
    if (value !== undefined && out.reading(e.device, e.metric, value, msg.ts, e.unit)) readFrom.push(e)
  }
  for (const f of factsFor(readFrom)) out.fact(f)
  return out.result()
}

function numericValue(v: unknown): number | undefined {
  if (typeof v === 'number') return Number.isFinite(v) ? v : undefined
  if (typeof v === 'boolean') return v ? 1 : 0
  if (typeof v === 'string') return parseNumber(v)
  return undefined
}

function binaryValue(v: unknown, e: Entry): number | undefined {
  if (typeof v === 'boolean') return v ? 1 : 0
  if (typeof v === 'number') return v === 1 || v === 0 ? v : undefined
  if (typeof v !== 'string') return undefined
  const t = v.trim()
  if (e.on.includes(t)) return 1
  if (e.off.includes(t)) return 0
  return undefined
}

// One fact per device: its name, the metrics it can be commanded on, and which are binary.
function factsFor(entries: Entry[]): DeviceFact[] {
  const byDevice = new Map<string, { name?: string; commands: Record<string, string>; binary: string[] }>()
  for (const e of entries) {
    let d = byDevice.get(e.device)
    if (!d) byDevice.set(e.device, (d = { commands: {}, binary: [] }))
    if (e.deviceName !== undefined) d.name = e.deviceName
    if (e.commandTopic !== undefined) d.commands[e.metric] = e.commandTopic
    if (e.binary) d.binary.push(e.metric)
  }
  return [...byDevice].map(([device, d]) =>
    makeFact(device, 'homeassistant', { name: d.name, commands: d.commands, binary: d.binary }),
  )
}

function toEntry(
  config: Record<string, unknown>,
  component: string,
  nodeId: string | undefined,
  objectId: string,
): Entry | null {
  const base = ownString(config, '~')
  const topic = (key: string): string | undefined => {
    const t = ownString(config, key)
    return t === undefined || t.length === 0 ? undefined : rememberable(tilde(t, base))
  }
  const device = isRecord(config['device']) ? expand(config['device']) : undefined
  const identifiers = device?.['identifiers']
  const firstId =
    typeof identifiers === 'string'
      ? identifiers
      : Array.isArray(identifiers) && typeof identifiers[0] === 'string'
        ? identifiers[0]
        : undefined
  const deviceId = nonEmpty(firstId) ?? nonEmpty(nodeId) ?? objectId
  const metric = nonEmpty(ownString(config, 'name')) ?? objectId
  if (!isSafeName(deviceId) || !isSafeName(metric) || metric.length > MAX_NAME_LENGTH) return null

  const availability: Availability[] = []
  const avtyTopic = topic('availability_topic')
  if (avtyTopic !== undefined) {
    availability.push({
      topic: avtyTopic,
      available: short(ownString(config, 'payload_available')) ?? 'online',
      notAvailable: short(ownString(config, 'payload_not_available')) ?? 'offline',
      template: undefined,
    })
  }
  const list = config['availability']
  if (Array.isArray(list)) {
    for (const item of list.slice(0, 16)) {
      if (!isRecord(item)) continue
      const a = expand(item)
      const t = rememberable(tilde(ownString(a, 'topic') ?? '', base))
      if (t === undefined) continue
      const tpl = ownString(a, 'value_template')
      const template = tpl === undefined ? undefined : compileTemplate(tpl)
      if (template === null) continue
      availability.push({
        topic: t,
        available: short(ownString(a, 'payload_available')) ?? 'online',
        notAvailable: short(ownString(a, 'payload_not_available')) ?? 'offline',
        template,
      })
    }
  }

  const tplSource = ownString(config, 'value_template') ?? ownString(config, 'state_value_template')
  let template: Template | null | undefined = tplSource === undefined ? undefined : compileTemplate(tplSource)
  // JSON-schema lights publish {"state":"ON",...} on their state topic.
  if (template === undefined && component === 'light' && config['schema'] === 'json') {
    template = { json: true, path: ['state'], filters: [] }
  }
  const payloadOn = short(ownString(config, 'payload_on')) ?? 'ON'
  const payloadOff = short(ownString(config, 'payload_off')) ?? 'OFF'
  const on = [payloadOn, short(ownString(config, 'state_on')) ?? payloadOn]
  const off = [payloadOff, short(ownString(config, 'state_off')) ?? payloadOff]
  const unit = ownString(config, 'unit_of_measurement')?.trim().slice(0, MAX_UNIT_LENGTH)

  return {
    device: deviceId,
    deviceName: device ? nonEmpty(ownString(device, 'name')?.slice(0, MAX_NAME_LENGTH)) : undefined,
    metric,
    binary: BINARY_COMPONENTS.has(component),
    unit: nonEmpty(unit),
    stateTopic: topic('state_topic'),
    template,
    commandTopic: topic('command_topic'),
    availability,
    on,
    off,
  }
}

// Long names for abbreviated keys; prototype keys are dropped. A long key wins over its abbreviation.
function expand(obj: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const key of Object.keys(obj)) {
    if (!isSafeKey(key)) continue
    const long = Object.hasOwn(ABBREVIATIONS, key) ? ABBREVIATIONS[key]! : key
    if (long !== key && Object.hasOwn(obj, long)) continue
    out[long] = obj[key]
  }
  return out
}

// HA: `~` at the start or end of a topic value stands for the `~` base topic.
function tilde(topic: string, base: string | undefined): string {
  if (base === undefined) return topic
  if (topic.startsWith('~')) return base + topic.slice(1)
  if (topic.endsWith('~')) return topic.slice(0, -1) + base
  return topic
}

function rememberable(topic: string): string | undefined {
  return topic.length === 0 || topic.length > MAX_REMEMBERED_TOPIC ? undefined : topic
}

// ON/OFF-style payloads are short; a long one cannot match a device state worth remembering.
function short(s: string | undefined): string | undefined {
  return s === undefined || s.length > 64 ? undefined : s
}

function nonEmpty(s: string | undefined): string | undefined {
  return s === undefined || s.length === 0 ? undefined : s
}
