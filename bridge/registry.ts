import { EventEmitter } from 'node:events'
import {
  commandFor,
  createReadingsParser,
  type CommandResult,
  type DeviceFact,
  type DeviceHistory,
  type DeviceState,
  type Envelope,
  type Reading,
  type TopicSummary,
} from '../protocol/index.ts'
import type { OnLimit } from '../protocol/limits.ts'
import { MemoryHistory } from './history.ts'
import { TopicIndex, pageOf } from './topics.ts'

export interface RegistryOptions {
  /** Points kept per metric for charts and `/history`. @default 3600 */
  historySize?: number
  /** Points kept in memory for all metrics together; the least recently updated series go first. @default 2000000 */
  maxHistoryPoints?: number
  /** Batch window for `readings` and for device changes that matter (online, stale, a new metric), in ms. @default 100 */
  updateIntervalMs?: number
  /** How often a device whose only change is new values is sent again; `readings` carry each value sooner. @default 1000 */
  valueUpdateIntervalMs?: number
  /** Devices remembered; the least recently seen are forgotten first. @default 5000 */
  maxDevices?: number
  /** Metrics one device may have; readings of more are ignored. @default 64 */
  maxMetricsPerDevice?: number
  /** Topics remembered for the topic tree. @default 10000 */
  maxTopics?: number
  /** Characters of topic names and payload previews the topic tree remembers. @default 16777216 */
  maxTopicIndexBytes?: number
  /** Called each time input reaches a bound. */
  onLimit?: OnLimit
}

export const registryDefaults = {
  historySize: 3600,
  maxHistoryPoints: 2_000_000,
  updateIntervalMs: 100,
  valueUpdateIntervalMs: 1000,
  maxDevices: 5000,
  maxMetricsPerDevice: 64,
  maxTopics: 10_000,
  maxTopicIndexBytes: 16 * 1024 * 1024,
} satisfies Required<Omit<RegistryOptions, 'onLimit'>>

/** How long a silence, in usual intervals, makes an online device stale. */
const STALE_AFTER_INTERVALS = 3
/** Messages closer together than this are one burst (a device publishing each sensor on its own topic). */
const BURST_MS = 250
const TOPICS_PER_DEVICE = 16
const TASMOTA_OUTPUT = /^POWER\d*$/
const ACTUATOR = /^(relay|switch|power|light|led|lamp|plug|outlet|socket|fan|pump|valve|heater|output)[-_]?\d*$/i
/** Characters of a will's payload shown with its device. */
const WILL_PREVIEW = 256

interface Device {
  state: DeviceState
  commandBase?: string
  /** Command topics the firmware announced, by metric. */
  commandTopics: Record<string, string>
  binary: Set<string>
  /** Display names announced per metric, kept for metrics that have no reading yet. */
  labels: Map<string, string>
  /** Smoothed gap between bursts of messages, ms; 0 until measured. */
  interval: number
  lastBurst: number
  /** Online state comes from a status topic, not only from the connection. */
  announcesStatus: boolean
  /** Metrics with a value, counted against `maxMetricsPerDevice`. */
  metricCount: number
  /** The MQTT client it was last seen through; its entry in the registry's client map. */
  clientId?: string
}

export interface RegistryEvents {
  /** Devices that changed and readings since the last update. */
  update: [changed: DeviceState[], readings: Reading[]]
}

/**
 * Devices and their metrics, learned from every message: which firmware
 * format, online or not, latest values and a bounded history per metric.
 * Every table is bounded: devices (least recently seen forgotten first, in
 * O(1)), metrics per device, topics, history points, and the wills and
 * client maps, which hold only connected clients and known devices.
 */
export class Registry extends EventEmitter<RegistryEvents> {
  readonly #opts: Required<Omit<RegistryOptions, 'onLimit'>>
  readonly #onLimit: OnLimit
  readonly #parser = createReadingsParser()
  /** Least recently seen first: a Map keeps insertion order, and each message re-inserts its device. */
  readonly #devices = new Map<string, Device>()
  /** The device seen last, already at the end of `#devices`. */
  #lastSeen: Device | null = null
  readonly #topicIndex: TopicIndex
  readonly #history: MemoryHistory
  /** Device ids by the MQTT client that published for them; a device is under one client at a time. */
  readonly #byClient = new Map<string, Set<string>>()
  /** Wills of connected clients only. */
  readonly #wills = new Map<string, { topic: string; payload: string }>()
  /** Devices with a change that matters now: online, stale, name, a new metric or topic. */
  readonly #changed = new Set<Device>()
  /** Devices whose only change is new values and last-seen time. */
  readonly #valuesChanged = new Set<Device>()
  #lastValueFlush = 0
  #readings: Reading[] = []
  #flushTimer: NodeJS.Timeout | null = null
  readonly #staleTimer: NodeJS.Timeout

  constructor(opts: RegistryOptions = {}) {
    super()
    const { onLimit, ...rest } = opts
    this.#opts = { ...registryDefaults, ...rest }
    this.#onLimit = onLimit ?? (() => {})
    this.#topicIndex = new TopicIndex({ maxTopics: this.#opts.maxTopics, maxBytes: this.#opts.maxTopicIndexBytes, onLimit: this.#onLimit })
    this.#history = new MemoryHistory({
      pointsPerSeries: this.#opts.historySize,
      maxPoints: this.#opts.maxHistoryPoints,
      onLimit: this.#onLimit,
    })
    this.#staleTimer = setInterval(() => this.#checkStale(), 1000)
    this.#staleTimer.unref()
  }

  /** Sizes of the bounded tables, for `/api/health`. */
  get usage(): { devices: number; topics: number; historyPoints: number; wills: number } {
    return { devices: this.#devices.size, topics: this.#topicIndex.size, historyPoints: this.#history.points, wills: this.#wills.size }
  }

  /** Learns from one message on the broker. */
  ingest(envelope: Envelope): void {
    this.#topicIndex.remember(envelope)
    if (envelope.encoding) return // readings are text: numbers, JSON, ON/OFF
    const { readings, facts } = this.#parser.parse(envelope.topic, envelope.payload, envelope.ts)
    if (readings.length === 0 && facts.length === 0) return
    const before = new Map<string, string>()
    for (const { device } of [...facts, ...readings]) {
      const known = this.#devices.get(device)
      if (known && !before.has(device)) before.set(device, signature(known.state))
    }
    const touched = new Set<Device>()
    const accepted: Reading[] = []
    for (const fact of facts) touched.add(this.#applyFact(fact))
    for (const reading of readings) {
      const device = this.#device(reading.device)
      touched.add(device)
      if (this.#applyReading(device, reading)) accepted.push(reading)
    }
    for (const device of touched) {
      this.#seen(device, envelope)
      if (before.get(device.state.id) === signature(device.state)) this.#valuesChanged.add(device)
      else this.#changed.add(device)
    }
    for (const r of accepted) this.#readings.push(r)
    this.#schedule()
  }

  /** An MQTT client connected: devices it published for before are back online. */
  clientConnected(clientId: string, will?: { topic: string; payload: string }): void {
    const shown = will && { topic: will.topic, payload: will.payload.slice(0, WILL_PREVIEW) }
    if (shown) this.#wills.set(clientId, shown)
    else this.#wills.delete(clientId)
    for (const device of this.#devicesOf(clientId)) {
      device.state.clientId = clientId
      if (shown) device.state.will = shown
      this.#setOnline(device, true)
    }
  }

  /** An MQTT client went away, cleanly or not: its devices are offline now, not at the next timeout. */
  clientDisconnected(clientId: string): void {
    this.#wills.delete(clientId)
    for (const device of this.#devicesOf(clientId)) {
      if (device.state.clientId !== clientId) continue
      delete device.state.clientId
      this.#setOnline(device, false)
    }
  }

  /** A new connection took this client id from a connected one: its devices show it. */
  clientTakenOver(clientId: string): void {
    for (const device of this.#devicesOf(clientId)) {
      device.state.takeovers = (device.state.takeovers ?? 0) + 1
      this.#changed.add(device)
    }
    this.#schedule()
  }

  list(): DeviceState[] {
    return [...this.#devices.values()].map((d) => d.state)
  }

  /** Devices sorted by id, after `cursor` (an id), at most `limit`. */
  page(limit: number, cursor?: string): DeviceState[] {
    return pageOf(this.list(), (d) => d.id, limit, cursor)
  }

  get(id: string): DeviceState | undefined {
    return this.#devices.get(id)?.state
  }

  history(id: string, metrics?: string[], since?: number): DeviceHistory | undefined {
    const device = this.#devices.get(id)
    if (!device) return undefined
    const out: DeviceHistory = { device: id, metrics: {} }
    for (const [name, points] of this.#history.query(id, metrics, since)) {
      const unit = device.state.metrics[name]?.unit
      out.metrics[name] = { ...(unit !== undefined && { unit }), points }
    }
    return out
  }

  /** Topics sorted by name, after `cursor` (a topic), at most `limit`. */
  topics(limit = Infinity, cursor?: string): TopicSummary[] {
    return this.#topicIndex.page(limit, cursor)
  }

  /** Where a command goes for this device's firmware, or why it cannot. */
  command(id: string, name: string, value: unknown): CommandResult | undefined {
    const device = this.#devices.get(id)
    if (!device) return undefined
    return commandFor(
      {
        id,
        format: device.state.format,
        ...(device.commandBase !== undefined && { commandBase: device.commandBase }),
        commands: device.commandTopics,
        binary: [...device.binary],
      },
      name,
      value,
    )
  }

  close(): void {
    clearInterval(this.#staleTimer)
    if (this.#flushTimer) clearTimeout(this.#flushTimer)
    this.#flushTimer = null
  }

  #device(id: string, format: DeviceState['format'] = 'topic'): Device {
    let device = this.#devices.get(id)
    if (device) return device
    device = {
      state: { id, name: id, format, online: false, stale: false, lastSeen: null, metrics: {}, commands: [], topics: [] },
      commandTopics: {},
      binary: new Set(),
      labels: new Map(),
      interval: 0,
      lastBurst: 0,
      announcesStatus: false,
      metricCount: 0,
    }
    if (this.#devices.size >= this.#opts.maxDevices) this.#forgetLeastRecent()
    this.#devices.set(id, device)
    return device
  }

  #forgetLeastRecent(): void {
    const [id, device] = this.#devices.entries().next().value!
    this.#devices.delete(id)
    if (this.#lastSeen === device) this.#lastSeen = null
    this.#history.forget(id)
    this.#changed.delete(device)
    this.#valuesChanged.delete(device)
    if (device.clientId !== undefined) this.#byClient.get(device.clientId)?.delete(id)
    this.#onLimit('devices', { device: id })
  }

  #applyFact(fact: DeviceFact): Device {
    const device = this.#device(fact.device, fact.format)
    const state = device.state
    // a device announced by discovery or a status topic keeps that format over the fallback
    if (state.format === 'topic') state.format = fact.format
    if (fact.name) state.name = fact.name
    if (fact.commandBase) device.commandBase = fact.commandBase
    const max = this.#opts.maxMetricsPerDevice
    for (const [metric, topic] of Object.entries(fact.commands ?? {})) {
      if (metric in device.commandTopics || Object.keys(device.commandTopics).length < max) device.commandTopics[metric] = topic
    }
    for (const name of fact.binary ?? []) if (device.binary.has(name) || device.binary.size < max) device.binary.add(name)
    for (const [metric, label] of Object.entries(fact.labels ?? {})) {
      if (!device.labels.has(metric) && device.labels.size >= max) continue
      device.labels.set(metric, label)
      const m = state.metrics[metric]
      if (m) m.label = label
    }
    if (fact.online !== undefined) {
      device.announcesStatus = true
      this.#setOnline(device, fact.online)
    }
    state.commands = this.#commandNames(device)
    return device
  }

  /**
   * Announced commands, plus on/off outputs of formats that announce none:
   * Tasmota's POWER<n>, and actuator-named binary metrics of generic and topic
   * devices. A binary `motion` or `door` is a sensor, not something to switch.
   */
  #commandNames(device: Device): string[] {
    const names = new Set(Object.keys(device.commandTopics))
    const { format } = device.state
    const outputs = format === 'tasmota' ? TASMOTA_OUTPUT : format === 'generic' || format === 'topic' ? ACTUATOR : null
    for (const name of device.binary) if (outputs?.test(name.split('.').at(-1)!)) names.add(name)
    return [...names].sort()
  }

  /** Applies a reading; false when the device already has as many metrics as it may. */
  #applyReading(device: Device, reading: Reading): boolean {
    const metrics = device.state.metrics
    const previous = metrics[reading.metric]
    if (!previous && device.metricCount >= this.#opts.maxMetricsPerDevice) {
      this.#onLimit('device_metrics', { device: device.state.id, metric: reading.metric.slice(0, 256) })
      return false
    }
    if (!previous) device.metricCount++
    const label = device.labels.get(reading.metric)
    metrics[reading.metric] = {
      value: reading.value,
      ts: reading.ts,
      ...(reading.unit !== undefined ? { unit: reading.unit } : previous?.unit !== undefined && { unit: previous.unit }),
      ...(label !== undefined && { label }),
      ...(device.binary.has(reading.metric) && { binary: true }),
    }
    this.#history.append(device.state.id, reading.metric, reading.ts, reading.value)
    return true
  }

  #seen(device: Device, envelope: Envelope): void {
    const state = device.state
    // most recently seen last, so the first entry is the one to forget
    if (this.#lastSeen !== device) {
      this.#devices.delete(state.id)
      this.#devices.set(state.id, device)
      this.#lastSeen = device
    }
    const now = envelope.ts
    if (now - device.lastBurst >= BURST_MS) {
      if (device.lastBurst > 0) {
        const gap = now - device.lastBurst
        device.interval = device.interval === 0 ? gap : device.interval * 0.7 + gap * 0.3
      }
      device.lastBurst = now
    }
    state.lastSeen = now
    if (state.stale) {
      state.stale = false
      this.#changed.add(device)
    }
    if (!state.topics.includes(envelope.topic)) {
      state.topics.unshift(envelope.topic)
      if (state.topics.length > TOPICS_PER_DEVICE) state.topics.pop()
    }
    const clientId = envelope.source === 'mqtt' ? envelope.clientId : undefined
    if (clientId) {
      state.clientId = clientId
      const will = this.#wills.get(clientId)
      if (will) state.will = will
      if (device.clientId !== clientId) {
        if (device.clientId !== undefined) this.#byClient.get(device.clientId)?.delete(state.id)
        device.clientId = clientId
        let ids = this.#byClient.get(clientId)
        if (!ids) this.#byClient.set(clientId, (ids = new Set()))
        ids.add(state.id)
      }
      // publishing proves the connection; a status topic that said offline is corrected by its own next message
      if (!device.announcesStatus) this.#setOnline(device, true)
    }
  }

  #setOnline(device: Device, online: boolean): void {
    if (device.state.online === online && !device.state.stale) return
    device.state.online = online
    device.state.stale = false
    this.#changed.add(device)
    this.#schedule()
  }

  #devicesOf(clientId: string): Device[] {
    const ids = this.#byClient.get(clientId)
    if (!ids) return []
    if (ids.size === 0) {
      this.#byClient.delete(clientId)
      return []
    }
    return [...ids].map((id) => this.#devices.get(id)).filter((d): d is Device => d !== undefined)
  }

  #checkStale(): void {
    const now = Date.now()
    for (const device of this.#devices.values()) {
      const { state } = device
      if (!state.online || state.stale || device.interval === 0 || state.lastSeen === null) continue
      if (now - state.lastSeen > STALE_AFTER_INTERVALS * device.interval) {
        state.stale = true
        this.#changed.add(device)
      }
    }
    if (this.#changed.size > 0) this.#schedule()
  }

  #schedule(): void {
    this.#flushTimer ??= setTimeout(() => this.#flush(), this.#opts.updateIntervalMs)
  }

  #flush(): void {
    this.#flushTimer = null
    const now = Date.now()
    if (this.#valuesChanged.size > 0 && now - this.#lastValueFlush >= this.#opts.valueUpdateIntervalMs) {
      for (const device of this.#valuesChanged) this.#changed.add(device)
      this.#valuesChanged.clear()
      this.#lastValueFlush = now
    }
    const changed = [...this.#changed].map((d) => d.state)
    const readings = this.#readings
    this.#changed.clear()
    this.#readings = []
    if (changed.length > 0 || readings.length > 0) this.emit('update', changed, readings)
    if (this.#valuesChanged.size > 0) this.#schedule()
  }
}

/** What a dashboard must hear of at once; values and last-seen time are left out, `readings` carry those. */
function signature(state: DeviceState): string {
  return [
    state.online,
    state.stale,
    state.name,
    state.format,
    state.commands.join(),
    Object.keys(state.metrics).length,
    state.topics.length,
    state.clientId,
    state.will?.topic,
  ].join('|')
}
