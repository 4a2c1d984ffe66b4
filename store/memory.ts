import type { Bucket, DeviceHistory, HistoryQuery, Reading } from '../protocol/index.ts'
import type { OnLimit } from '../protocol/limits.ts'
import { DEFAULT_MAX_POINTS, type HistoryStore } from './history.ts'

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
  onLimit?: OnLimit
}

export const memoryStoreDefaults = {
  historySize: 3600,
  maxHistoryPoints: 2_000_000,
} satisfies Required<Omit<MemoryStoreOptions, 'onLimit'>>

/** Recent points of every device's metrics, in memory, bounded per metric and in total: history until a restart. */
export class MemoryStore implements HistoryStore {
  readonly #opts: Required<Omit<MemoryStoreOptions, 'onLimit'>>
  readonly #onLimit: OnLimit
  /** Series by device, then metric; devices in least-recently-updated order. */
  readonly #devices = new Map<string, Map<string, Series>>()
  /** The device appended to last: most readings come in runs of one device's metrics. */
  #last: string | null = null
  #points = 0

  constructor(opts: MemoryStoreOptions = {}) {
    const { onLimit, ...rest } = opts
    this.#opts = { ...memoryStoreDefaults, ...rest }
    this.#onLimit = onLimit ?? (() => {})
    if (this.#opts.maxHistoryPoints < this.#opts.historySize) throw new RangeError('maxHistoryPoints must be at least historySize')
  }

  get usage(): { historyPoints: number } {
    return { historyPoints: this.#points }
  }

  append(batch: readonly Reading[]): void {
    for (const r of batch) this.#append(r.device, r.metric, r.ts, r.value)
  }

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
