import type { Logger } from 'pino'
import type { Bucket, DeviceHistory, Envelope, HistoryQuery, Reading } from '../protocol/index.ts'
import type { OnLimit } from '../protocol/limits.ts'
import { topicMatches } from '../protocol/topics.ts'
import {
  DEFAULT_MAX_POINTS,
  MAX_LOGGED_PAYLOAD_BYTES,
  type ExportQuery,
  type HistoryStore,
  type LoggedEnvelope,
  type MessageQuery,
  type Saved,
} from './history.ts'

/**
 * A ring of (time, value) points that grows as points arrive, up to `capacity`:
 * a metric seen once costs a few bytes, not a full ring.
 */
export class Series {
  #ts = new Float64Array(8)
  #values = new Float64Array(8)
  /** Index of the oldest point. */
  #first = 0
  #length = 0

  constructor(readonly capacity: number) {}

  get length(): number {
    return this.#length
  }

  /** Adds a point; returns whether the series grew (false when the oldest point was overwritten). */
  push(ts: number, value: number): boolean {
    if (this.#length === this.#ts.length && this.#length < this.capacity) this.#grow()
    const size = this.#ts.length
    const at = (this.#first + this.#length) % size
    this.#ts[at] = ts
    this.#values[at] = value
    if (this.#length < size) {
      this.#length++
      return true
    }
    this.#first = (this.#first + 1) % size
    return false
  }

  /** Points from `from` to `to`, both inclusive, oldest first. */
  range(from = -Infinity, to = Infinity): [number, number][] {
    const out: [number, number][] = []
    const size = this.#ts.length
    for (let i = 0; i < this.#length; i++) {
      const at = (this.#first + i) % size
      const ts = this.#ts[at]!
      if (ts >= from && ts <= to) out.push([ts, this.#values[at]!])
    }
    return out
  }

  /** The newest point, or undefined. */
  last(): [number, number] | undefined {
    if (this.#length === 0) return undefined
    const at = (this.#first + this.#length - 1) % this.#ts.length
    return [this.#ts[at]!, this.#values[at]!]
  }

  #grow(): void {
    const size = Math.min(this.capacity, this.#ts.length * 2)
    const ts = new Float64Array(size)
    const values = new Float64Array(size)
    for (let i = 0; i < this.#length; i++) {
      const from = (this.#first + i) % this.#ts.length
      ts[i] = this.#ts[from]!
      values[i] = this.#values[from]!
    }
    this.#ts = ts
    this.#values = values
    this.#first = 0
  }
}

export interface MemoryStoreOptions {
  /** Points kept per metric. @default 3600 */
  historySize?: number
  /** Points kept in memory for all metrics together; the least recently updated devices' go first. @default 2000000 */
  maxHistoryPoints?: number
  /** Messages kept in the message log, the oldest overwritten first; payloads are cut to `MAX_LOGGED_PAYLOAD_BYTES`. @default 1000 */
  logSize?: number
  /** Told of a saved state that is not JSON (a cycle, a BigInt): it is not kept. */
  logger?: Logger
  onLimit?: OnLimit
}

export const memoryStoreDefaults = {
  historySize: 3600,
  maxHistoryPoints: 2_000_000,
  logSize: 1000,
} satisfies Required<Omit<MemoryStoreOptions, 'onLimit' | 'logger'>>

/**
 * Recent points of every device's metrics and the latest messages, in memory, bounded per metric,
 * in total and in messages: history until a restart. What is saved (devices, formats) round-trips
 * within the process only.
 */
export class MemoryStore implements HistoryStore {
  readonly #opts: Required<Omit<MemoryStoreOptions, 'onLimit' | 'logger'>>
  readonly #onLimit: OnLimit
  readonly #logger: Logger | undefined
  /** Series by device, then metric; devices in least-recently-updated order. */
  readonly #devices = new Map<string, Map<string, Series>>()
  /** The device appended to last: most readings come in runs of one device's metrics. */
  #last: string | null = null
  #points = 0
  /** The message log: a ring that grows up to `logSize`, then overwrites its oldest. */
  readonly #log: LoggedEnvelope[] = []
  /** Where the next message goes once the ring is full. */
  #logNext = 0
  #logId = 0
  /** Saved records as JSON, so that what loads is what SQLite would give back, not the caller's live objects. */
  readonly #saved = new Map<string, string>()
  #formats: string | undefined

  constructor(opts: MemoryStoreOptions = {}) {
    const { onLimit, logger, ...rest } = opts
    this.#opts = { ...memoryStoreDefaults, ...rest }
    this.#onLimit = onLimit ?? (() => {})
    this.#logger = logger
    if (this.#opts.maxHistoryPoints < this.#opts.historySize) throw new RangeError('maxHistoryPoints must be at least historySize')
    if (!(this.#opts.logSize >= 0)) throw new RangeError('logSize must be 0 or more')
  }

  get usage(): { historyPoints: number; logMessages: number } {
    return { historyPoints: this.#points, logMessages: this.#log.length }
  }

  append(batch: readonly Reading[]): void {
    for (const r of batch) this.#append(r.device, r.metric, r.ts, r.value)
  }

  log(batch: readonly Envelope[]): void {
    const size = this.#opts.logSize
    if (size === 0) return
    for (const e of batch) {
      const entry = loggedEnvelope(e, ++this.#logId)
      if (this.#log.length < size) this.#log.push(entry)
      else {
        this.#log[this.#logNext] = entry
        this.#logNext = (this.#logNext + 1) % size
      }
    }
  }

  async messages(q: MessageQuery): Promise<LoggedEnvelope[]> {
    const out: LoggedEnvelope[] = []
    for (const e of this.#log) {
      if (q.before !== undefined && !isBefore(e, q.before, q.beforeId)) continue
      if (q.filter !== undefined && !topicMatches(q.filter, e.topic)) continue
      out.push(e)
    }
    // the ring is in arrival order; `ts` comes from the bridge and may step back, so sort as SQLite orders
    out.sort((a, b) => b.ts - a.ts || b.id - a.id)
    return out.slice(0, Math.max(0, q.limit)).map((e) => ({ ...e }))
  }

  async *exportCsv(q: ExportQuery): AsyncIterable<string> {
    yield CSV_HEADER
    const series = this.#devices.get(q.device)
    if (!series) return
    const metrics = (q.metrics ?? [...series.keys()]).filter((m) => series.has(m))
    const ranges = metrics.map((m) => series.get(m)!.range(q.from, q.to))
    const heads = ranges.map(() => 0)
    const names = metrics.map(csvField)
    let lines: string[] = []
    for (;;) {
      // a k-way merge by time: a device has a handful of metrics
      let pick = -1
      for (let i = 0; i < ranges.length; i++) {
        const p = ranges[i]![heads[i]!]
        if (p && (pick < 0 || p[0] < ranges[pick]![heads[pick]!]![0])) pick = i
      }
      if (pick < 0) break
      const [ts, value] = ranges[pick]![heads[pick]!++]!
      lines.push(`${ts},${names[pick]!},${value}\r\n`)
      if (lines.length >= CSV_CHUNK_LINES) {
        yield lines.join('')
        lines = []
      }
    }
    if (lines.length > 0) yield lines.join('')
  }

  saveDevices(devices: readonly Saved[]): void {
    for (const d of devices) {
      const json = toJson(d.snapshot, this.#logger)
      if (json !== undefined) this.#saved.set(d.id, json)
    }
  }

  async loadDevices(): Promise<Saved[]> {
    return [...this.#saved].map(([id, json]) => ({ id, snapshot: JSON.parse(json) as unknown }))
  }

  saveFormats(state: unknown): void {
    this.#formats = toJson(state, this.#logger) ?? this.#formats
  }

  async loadFormats(): Promise<unknown> {
    return this.#formats === undefined ? undefined : (JSON.parse(this.#formats) as unknown)
  }

  async flush(): Promise<void> {}

  async query(q: HistoryQuery): Promise<DeviceHistory> {
    const from = q.from ?? -Infinity
    const to = q.to ?? Infinity
    const maxPoints = q.maxPoints ?? DEFAULT_MAX_POINTS
    const out: DeviceHistory = { device: q.device, from: Number.isFinite(from) ? from : 0, to: Number.isFinite(to) ? to : Date.now(), metrics: {} }
    const series = this.#devices.get(q.device)
    if (!series) return out
    for (const name of q.metrics ?? series.keys()) {
      const points = series.get(name)?.range(from, to)
      if (points) out.metrics[name] = points.length <= maxPoints ? { points } : bucketed(points, maxPoints)
    }
    return out
  }

  async latest(device: string): Promise<Record<string, { ts: number; value: number }>> {
    const out: Record<string, { ts: number; value: number }> = {}
    for (const [name, series] of this.#devices.get(device) ?? []) {
      const last = series.last()
      if (last) out[name] = { ts: last[0], value: last[1] }
    }
    return out
  }

  forget(device: string): void {
    this.#drop(device)
    this.#saved.delete(device)
  }

  async close(): Promise<void> {}

  #append(device: string, metric: string, ts: number, value: number): void {
    let metrics = this.#devices.get(device)
    if (!metrics) this.#devices.set(device, (metrics = new Map()))
    else if (this.#last !== device) {
      // most recently updated last, so the first entry is the one to drop
      this.#devices.delete(device)
      this.#devices.set(device, metrics)
    }
    this.#last = device
    let series = metrics.get(metric)
    if (!series) metrics.set(metric, (series = new Series(this.#opts.historySize)))
    if (series.push(ts, value)) this.#points++
    while (this.#points > this.#opts.maxHistoryPoints) this.#dropOldest()
  }

  /** Drops a device's points; returns how many. */
  #drop(device: string): number {
    let points = 0
    for (const series of this.#devices.get(device)?.values() ?? []) points += series.length
    this.#points -= points
    this.#devices.delete(device)
    if (this.#last === device) this.#last = null
    return points
  }

  #dropOldest(): void {
    const device = this.#devices.keys().next().value!
    // the device being appended to is the most recent: it is the oldest only when it is alone
    if (device === this.#last && this.#devices.size === 1) return this.#dropLongestSeries(device)
    const points = this.#drop(device)
    this.#onLimit('history_points', { device, points })
  }

  /** One device holds every point: its longest series is dropped. */
  #dropLongestSeries(device: string): void {
    const metrics = this.#devices.get(device)!
    const [metric] = [...metrics].reduce((a, b) => (b[1].length > a[1].length ? b : a))
    const points = metrics.get(metric)!.length
    metrics.delete(metric)
    this.#points -= points
    this.#onLimit('history_points', { device, metric, points })
  }
}

/** `points` in at most `maxPoints` equal buckets over their span, each with its min, max and mean. */
export function bucketed(points: readonly [number, number][], maxPoints: number): { bucketMs: number; buckets: Bucket[] } {
  const first = points[0]![0]
  const span = points[points.length - 1]![0] - first + 1
  const bucketMs = Math.max(1, Math.ceil(span / maxPoints))
  const buckets: Bucket[] = []
  let start = NaN
  let min = 0
  let max = 0
  let sum = 0
  let count = 0
  for (const [ts, value] of points) {
    const at = first + Math.floor((ts - first) / bucketMs) * bucketMs
    if (at !== start) {
      if (count > 0) buckets.push([start, min, max, sum / count])
      start = at
      min = max = value
      sum = count = 0
    }
    if (value < min) min = value
    if (value > max) max = value
    sum += value
    count++
  }
  if (count > 0) buckets.push([start, min, max, sum / count])
  return { bucketMs, buckets }
}

/** The CSV header line of `exportCsv`. */
export const CSV_HEADER = 'ts,metric,value\r\n'
/** Lines per string that `exportCsv` yields: few enough to stay small, enough that the per-chunk cost does not show. */
export const CSV_CHUNK_LINES = 10_000

/** A CSV field, quoted as RFC 4180 asks when it holds a comma, a quote or a line break (or spaces at its ends, which some readers trim). */
export function csvField(text: string): string {
  return /[",\r\n]|^\s|\s$/.test(text) ? `"${text.replaceAll('"', '""')}"` : text
}

/**
 * A payload cut to `MAX_LOGGED_PAYLOAD_BYTES`: UTF-8 text at a character boundary, base64 at a
 * multiple of 4 characters, so that what is kept still decodes.
 */
export function cutPayload(payload: string, encoding: Envelope['encoding']): string {
  if (payload.length <= MAX_LOGGED_PAYLOAD_BYTES / 3) return payload // at most 3 bytes per UTF-16 unit
  if (encoding === 'base64') return payload.length <= MAX_LOGGED_PAYLOAD_BYTES ? payload : payload.slice(0, MAX_LOGGED_PAYLOAD_BYTES)
  const bytes = Buffer.from(payload, 'utf8')
  if (bytes.length <= MAX_LOGGED_PAYLOAD_BYTES) return payload
  let end = MAX_LOGGED_PAYLOAD_BYTES
  // back off over continuation bytes (10xxxxxx) to the start of the character that does not fit
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--
  return bytes.subarray(0, end).toString('utf8')
}

/** An envelope as the log keeps it: its own copy, payload cut. */
export function loggedEnvelope(e: Envelope, id: number): LoggedEnvelope {
  const out: LoggedEnvelope = { id, topic: e.topic, payload: cutPayload(e.payload, e.encoding), ts: e.ts, source: e.source, qos: e.qos, retain: e.retain }
  if (e.clientId !== undefined) out.clientId = e.clientId
  if (e.encoding !== undefined) out.encoding = e.encoding
  if (e.properties !== undefined) out.properties = e.properties
  return out
}

/** Whether a logged message comes before the cursor (`before`, and `beforeId` within its millisecond). */
function isBefore(e: LoggedEnvelope, before: number, beforeId: number | undefined): boolean {
  return e.ts < before || (beforeId !== undefined && e.ts === before && e.id < beforeId)
}

/** A saved state as JSON; undefined, and logged, when it cannot be (a cycle, a BigInt): saving never throws. */
export function toJson(value: unknown, logger?: Logger): string | undefined {
  try {
    return JSON.stringify(value ?? null)
  } catch (err) {
    logger?.warn({ err }, 'history store: a saved state is not JSON; not saved')
    return undefined
  }
}
