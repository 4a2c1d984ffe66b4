import { EventEmitter } from 'node:events'
import type { DeviceState, Envelope, Reading, TopicSummary } from '../protocol/index.ts'
import type { OnLimit } from '../protocol/limits.ts'
import { commandFor, createReadingsParser, type CommandResult, type DeviceFact, type FormatsState } from '../formats/index.ts'
import { Presence, type DevicePresence } from './presence.ts'
import { TopicIndex, pageOf } from './topic-index.ts'

export interface RegistryOptions {
  /** Batch window of `update` events, in ms. @default 100 */
  updateIntervalMs?: number
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
  updateIntervalMs: 100,
  maxDevices: 5000,
  maxMetricsPerDevice: 64,
  maxTopics: 10_000,
  maxTopicIndexBytes: 16 * 1024 * 1024,
} satisfies Required<Omit<RegistryOptions, 'onLimit'>>

const TOPICS_PER_DEVICE = 16
/** Readings of one metric at most this far behind its last one are taken as the same burst, and spread out by a millisecond each. */
const SAME_BURST_MS = 1000
const TASMOTA_OUTPUT = /^POWER\d*$/
const ACTUATOR = /^(relay|switch|power|light|led|lamp|plug|outlet|socket|fan|pump|valve|heater|output)[-_]?\d*$/i

interface Device {
  state: DeviceState
  presence: DevicePresence
  commandBase?: string
  /** Command topics the firmware announced, by metric. */
  commandTopics: Record<string, string>
  binary: Set<string>
  /** Display names announced per metric, kept for metrics that have no reading yet. */
  labels: Map<string, string>
  /** Metrics with a value, counted against `maxMetricsPerDevice`. */
  metricCount: number
  /** The name its firmware announced; a user's name (`state.renamed`) is shown instead. */
  announcedName?: string
  /**
   * Another node of a cluster took in its last message: its state is that node's (`mirror`), which
   * says when it is stale and saves it; this node shows it. Its next message here makes it this node's.
   */
  mirrored: boolean
}

/** What the registry saves of one device, to start from it after a restart: plain JSON. */
export interface DeviceSnapshot {
  state: DeviceState
  presence: DevicePresence
  commandBase?: string
  commandTopics: Record<string, string>
  binary: string[]
  labels: [metric: string, label: string][]
  announcedName?: string
}

export interface RegistryEvents {
  /**
   * One batch: devices with a change that matters (online, stale, name, a new metric or topic),
   * the readings accepted since the last batch, devices whose only change is new values, the
   * readings to store, and, apart, the changed devices that other nodes of a cluster took in
   * (`mirror`, or their presence here): to show, not to save or share.
   */
  update: [changed: DeviceState[], readings: Reading[], valuesOnly: DeviceState[], stored: Reading[], mirrored: DeviceState[]]
  /** A device was forgotten: to stay within `maxDevices`, or because a user asked. */
  forget: [id: string]
  /** A user named a device (null: back to its announced name). */
  rename: [id: string, name: string | null]
}

/**
 * Devices and their latest values, learned from every message through the
 * firmware formats: which format, its metrics, its commands, and (through
 * Presence) whether it is there. Devices are kept least recently seen first
 * and forgotten in constant time at the bound; changes go out in batches.
 */
export class Registry extends EventEmitter<RegistryEvents> {
  readonly #opts: Required<Omit<RegistryOptions, 'onLimit'>>
  readonly #onLimit: OnLimit
  readonly #parser: ReturnType<typeof createReadingsParser>
  /** Least recently seen first: a Map keeps insertion order, and each message re-inserts its device. */
  readonly #devices = new Map<string, Device>()
  /** The device seen last, already at the end of `#devices`. */
  #lastSeen: Device | null = null
  readonly #presence: Presence<Device>
  readonly #topicIndex: TopicIndex
  /** Devices with a change that matters now: online, stale, name, a new metric or topic. */
  readonly #changed = new Set<Device>()
  /** Devices whose only change is new values and last-seen time. */
  readonly #valuesChanged = new Set<Device>()
  #readings: Reading[] = []
  /** The readings of messages this node received from their publishers: the ones it stores. */
  #stored: Reading[] = []
  #factsSeen = 0
  #flushTimer: NodeJS.Timeout | null = null
  readonly #staleTimer: NodeJS.Timeout

  /** `formats` restores what an earlier registry's parsers learned from discovery. */
  constructor(opts: RegistryOptions = {}, formats?: FormatsState) {
    super()
    const { onLimit, ...rest } = opts
    this.#opts = { ...registryDefaults, ...rest }
    this.#onLimit = onLimit ?? (() => {})
    this.#parser = createReadingsParser({}, formats)
    this.#topicIndex = new TopicIndex({ maxTopics: this.#opts.maxTopics, maxBytes: this.#opts.maxTopicIndexBytes, onLimit: this.#onLimit })
    this.#presence = new Presence(
      (id) => this.#devices.get(id),
      (device) => {
        this.#changed.add(device)
        this.#schedule()
      },
    )
    this.#staleTimer = setInterval(() => this.#presence.checkStale(this.#devices.values(), Date.now()), 1000)
    this.#staleTimer.unref()
  }

  /** Sizes of the bounded tables, for `/api/health`. */
  get usage(): { devices: number; topics: number; wills: number } {
    return { devices: this.#devices.size, topics: this.#topicIndex.size, wills: this.#presence.wills }
  }

  /** What the parsers learned from discovery, to save and restore. */
  formats(): FormatsState {
    return this.#parser.snapshot()
  }

  /** Discovery and status messages applied since start: when it moved, `formats()` is worth saving again. */
  get factsSeen(): number {
    return this.#factsSeen
  }

  /** One device as it can be saved, or undefined when it is not known. */
  snapshot(id: string): DeviceSnapshot | undefined {
    const device = this.#devices.get(id)
    if (!device) return undefined
    return {
      state: device.state,
      presence: device.presence,
      ...(device.commandBase !== undefined && { commandBase: device.commandBase }),
      commandTopics: device.commandTopics,
      binary: [...device.binary],
      labels: [...device.labels],
      ...(device.announcedName !== undefined && { announcedName: device.announcedName }),
    }
  }

  /**
   * Devices saved before a restart, oldest seen first. Nobody is connected yet, so none is
   * online: each shows when it was last seen until it reports, and a sleeper whose next
   * report is still due stays asleep. Records that do not look like snapshots are skipped.
   * `mirrored`: they are a cluster's, shared by every node, and each stays the other nodes' (see
   * `mirror`) until this node takes in a message of it.
   */
  restore(saved: readonly { id: string; snapshot: unknown }[], { mirrored = false } = {}): number {
    const now = Date.now()
    const ordered = saved
      .map(({ id, snapshot }) => (isSnapshot(id, snapshot) ? snapshot : null))
      .filter((s): s is DeviceSnapshot => s !== null)
      .sort((a, b) => (a.state.lastSeen ?? 0) - (b.state.lastSeen ?? 0))
    for (const s of ordered.slice(-this.#opts.maxDevices)) {
      const { state, presence } = s
      const clientId = presence.clientId ?? state.clientId
      delete state.clientId
      state.online = false
      state.stale = false
      const due = state.asleep && state.nextReport !== undefined && now <= state.nextReport + 2 * presence.interval
      state.asleep = due
      if (!due) delete state.nextReport
      const restarted = { ...Presence.initial(), interval: presence.interval, lastBurst: presence.lastBurst, announcesStatus: presence.announcesStatus, reports: presence.reports }
      const device = deviceOf(s, restarted, mirrored)
      this.#devices.set(state.id, device)
      // its next connection (or, in a cluster, the one another node holds now) is known as its own
      if (clientId !== undefined) this.#presence.adopt(device, clientId)
    }
    return ordered.length
  }

  /**
   * Devices of other nodes of a cluster, from the snapshots the node that took in each one's last
   * message shares: each replaces what this node knew (presence, latest values, name, the client
   * it publishes through, where its commands go), with no payload to parse and no readings (that
   * node stores and sends those). It is shown here, and neither saved nor shared. Records that do
   * not look like snapshots are skipped.
   */
  mirror(devices: readonly { id: string; snapshot: unknown }[]): void {
    for (const { id, snapshot } of devices) {
      if (!isSnapshot(id, snapshot)) continue
      const known = this.#devices.get(id)
      if (known) {
        this.#devices.delete(id)
        this.#changed.delete(known)
        this.#valuesChanged.delete(known)
        this.#presence.forget(known)
      } else if (this.#devices.size >= this.#opts.maxDevices) this.#forgetLeastRecent()
      const device = deviceOf(snapshot, snapshot.presence, true)
      // most recently seen last, as a message of it here would put it
      this.#devices.set(id, device)
      this.#lastSeen = device
      if (device.presence.clientId !== undefined) this.#presence.adopt(device, device.presence.clientId)
      this.#changed.add(device)
    }
    this.#schedule()
  }

  /**
   * Learns from one message. With `replay` (a retained message read at start) it learns what
   * was announced and fills values not known yet, but the device did not speak now: its
   * last-seen time, presence and history stay as they were. `local`: this node received it from
   * its publisher and stores its readings; `live`: its readings go to dashboards (false for a copy
   * only to be stored, from a shared subscription, whose other copy was shown).
   */
  ingest(envelope: Envelope, { replay = false, local = true, live = true } = {}): void {
    this.#topicIndex.remember(envelope)
    if (envelope.encoding) return // readings are text: numbers, JSON, ON/OFF
    const { readings, facts } = this.#parser.parse(envelope.topic, envelope.payload, envelope.ts)
    if (readings.length === 0 && facts.length === 0) return
    /** Each device this message touched, and whether what a dashboard must hear of at once changed. */
    const touched = new Map<Device, boolean>()
    const touch = (device: Device, matters: boolean) => touched.set(device, matters || touched.get(device) === true)
    for (const fact of facts) {
      const device = this.#device(fact.device, fact.format)
      // a retained "online" is what the device last said, not that it is connected now
      touch(device, this.#applyFact(device, replay ? { ...fact, online: undefined } : fact))
    }
    for (const reading of readings) {
      const device = this.#device(reading.device)
      if (replay && reading.metric in device.state.metrics) continue
      const applied = this.#applyReading(device, reading)
      if (applied !== 'refused' && !replay) {
        if (live) this.#readings.push(reading)
        if (local) this.#stored.push(reading)
      }
      touch(device, applied === 'new')
    }
    // properties reach us only over MQTT 5: this device can answer commands sent as requests
    const mqtt5 = envelope.properties !== undefined && envelope.source === 'mqtt'
    for (const [device, matters] of touched) {
      if (mqtt5 && !device.state.mqtt5) {
        device.state.mqtt5 = true
        this.#changed.add(device)
      }
      if (replay) {
        if (matters) this.#changed.add(device)
        continue
      }
      // it spoke here: this node's now, whichever node's it was
      device.mirrored = false
      if (this.#seen(device, envelope) || matters) this.#changed.add(device)
      else this.#valuesChanged.add(device)
    }
    this.#schedule()
  }

  /** An MQTT client connected: devices it published for before are back online. */
  clientConnected(clientId: string, will?: { topic: string; payload: string }): void {
    this.#presence.connected(clientId, will)
  }

  /** An MQTT client went away, cleanly or not: its devices are offline now. */
  clientDisconnected(clientId: string): void {
    this.#presence.disconnected(clientId)
  }

  /** A new connection took this client id from a connected one. */
  clientTakenOver(clientId: string): void {
    this.#presence.takenOver(clientId)
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

  /**
   * A user's name for a device, shown instead of the announced one and kept across restarts;
   * null goes back to what the firmware announced (or the id). Undefined for an unknown device.
   */
  rename(id: string, name: string | null): DeviceState | undefined {
    const device = this.#devices.get(id)
    if (!device) return undefined
    if (name === null) {
      delete device.state.renamed
      device.state.name = device.announcedName ?? id
    } else {
      device.state.renamed = true
      device.state.name = name
    }
    this.emit('rename', id, name)
    this.#changed.add(device)
    this.#schedule()
    return device.state
  }

  /**
   * Forgets a device and, through the `forget` event, its history. It comes back as new if it
   * reports again. False for an unknown device.
   */
  forget(id: string): boolean {
    const device = this.#devices.get(id)
    if (!device) return false
    this.#remove(id, device)
    return true
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
    // the last batch still goes out: the store writes it before it closes
    this.#flush()
  }

  #device(id: string, format: DeviceState['format'] = 'topic'): Device {
    let device = this.#devices.get(id)
    if (device) return device
    device = {
      state: { id, name: id, format, online: false, stale: false, asleep: false, lastSeen: null, metrics: {}, commands: [], topics: [] },
      presence: Presence.initial(),
      commandTopics: {},
      binary: new Set(),
      labels: new Map(),
      metricCount: 0,
      mirrored: false,
    }
    if (this.#devices.size >= this.#opts.maxDevices) this.#forgetLeastRecent()
    this.#devices.set(id, device)
    return device
  }

  #forgetLeastRecent(): void {
    const [id, device] = this.#devices.entries().next().value!
    this.#remove(id, device)
    this.#onLimit('devices', { device: id })
  }

  #remove(id: string, device: Device): void {
    this.#devices.delete(id)
    if (this.#lastSeen === device) this.#lastSeen = null
    this.#changed.delete(device)
    this.#valuesChanged.delete(device)
    this.#presence.forget(device)
    this.emit('forget', id)
  }

  /** Applies what a message said of a device; true when that changed its name, format, commands or presence. */
  #applyFact(device: Device, fact: DeviceFact): boolean {
    this.#factsSeen++
    const state = device.state
    const before = `${state.name}|${state.format}|${state.commands.join()}|${state.online}`
    // a device announced by discovery or a status topic keeps that format over the fallback
    if (state.format === 'topic') state.format = fact.format
    if (fact.name) {
      device.announcedName = fact.name
      if (!state.renamed) state.name = fact.name
    }
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
    if (fact.online !== undefined) this.#presence.announced(device, fact.online)
    state.commands = this.#commandNames(device)
    // facts are rare (discovery, status topics): comparing a few fields costs nothing beside them
    return before !== `${state.name}|${state.format}|${state.commands.join()}|${state.online}`
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

  /** Applies a reading: a new metric, a new value of a known one, or refused (the device has as many metrics as it may). */
  #applyReading(device: Device, reading: Reading): 'new' | 'value' | 'refused' {
    const metrics = device.state.metrics
    const previous = metrics[reading.metric]
    if (!previous && device.metricCount >= this.#opts.maxMetricsPerDevice) {
      this.#onLimit('device_metrics', { device: device.state.id, metric: reading.metric.slice(0, 256) })
      return 'refused'
    }
    // Readings are stamped as they arrive, to the millisecond, and a series keeps one reading per
    // millisecond: two of a burst (or of a stalled event loop) would replace each other in the store.
    // Each later one moves on by a millisecond; a device's own older timestamps are left alone.
    if (previous && reading.ts <= previous.ts && previous.ts - reading.ts < SAME_BURST_MS) reading.ts = previous.ts + 1
    const label = device.labels.get(reading.metric)
    const binary = device.binary.has(reading.metric)
    // the common case, a new value of a known metric: updated in place, not a new object per reading
    if (previous && previous.label === label && (previous.binary === true) === binary && (reading.unit === undefined || reading.unit === previous.unit)) {
      previous.value = reading.value
      previous.ts = reading.ts
      return 'value'
    }
    if (!previous) device.metricCount++
    metrics[reading.metric] = {
      value: reading.value,
      ts: reading.ts,
      ...(reading.unit !== undefined ? { unit: reading.unit } : previous?.unit !== undefined && { unit: previous.unit }),
      ...(label !== undefined && { label }),
      ...(binary && { binary: true }),
    }
    return previous ? 'value' : 'new'
  }

  /** Records that a message of this device arrived; true when that changed something a dashboard must hear of at once. */
  #seen(device: Device, envelope: Envelope): boolean {
    const state = device.state
    // most recently seen last, so the first entry is the one to forget
    if (this.#lastSeen !== device) {
      this.#devices.delete(state.id)
      this.#devices.set(state.id, device)
      this.#lastSeen = device
    }
    let newTopic = false
    if (!state.topics.includes(envelope.topic)) {
      // a new topic matters until the list is full; after that, topics coming and going are not news
      newTopic = state.topics.length < TOPICS_PER_DEVICE
      state.topics.unshift(envelope.topic)
      if (state.topics.length > TOPICS_PER_DEVICE) state.topics.pop()
    }
    return this.#presence.seen(device, envelope) || newTopic
  }

  #schedule(): void {
    this.#flushTimer ??= setTimeout(() => this.#flush(), this.#opts.updateIntervalMs)
  }

  #flush(): void {
    this.#flushTimer = null
    const changed: DeviceState[] = []
    const mirrored: DeviceState[] = []
    for (const d of this.#changed) (d.mirrored ? mirrored : changed).push(d.state)
    const valuesOnly = [...this.#valuesChanged].filter((d) => !this.#changed.has(d)).map((d) => d.state)
    const readings = this.#readings
    const stored = this.#stored
    this.#changed.clear()
    this.#valuesChanged.clear()
    this.#readings = []
    this.#stored = []
    if (changed.length > 0 || readings.length > 0 || valuesOnly.length > 0 || stored.length > 0 || mirrored.length > 0) {
      this.emit('update', changed, readings, valuesOnly, stored, mirrored)
    }
  }
}

/** A device as its snapshot has it, with this presence. */
function deviceOf(s: DeviceSnapshot, presence: DevicePresence, mirrored: boolean): Device {
  return {
    state: s.state,
    presence,
    ...(s.commandBase !== undefined && { commandBase: s.commandBase }),
    commandTopics: s.commandTopics,
    binary: new Set(s.binary),
    labels: new Map(s.labels),
    metricCount: Object.keys(s.state.metrics).length,
    ...(typeof s.announcedName === 'string' && { announcedName: s.announcedName }),
    mirrored,
  }
}

/** Whether a saved record is a device snapshot of this id: enough shape to restore without throwing. */
function isSnapshot(id: string, value: unknown): value is DeviceSnapshot {
  if (typeof value !== 'object' || value === null) return false
  const s = value as Partial<DeviceSnapshot>
  return (
    typeof s.state === 'object' && s.state !== null && s.state.id === id && typeof s.state.metrics === 'object' && Array.isArray(s.state.topics) &&
    typeof s.presence === 'object' && s.presence !== null && typeof s.presence.interval === 'number' &&
    typeof s.commandTopics === 'object' && Array.isArray(s.binary) && Array.isArray(s.labels)
  )
}
