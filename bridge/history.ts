import type { OnLimit } from '../protocol/limits.ts'

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

  /** Points at or after `since`, oldest first. */
  since(since = -Infinity): [number, number][] {
    const out: [number, number][] = []
    const size = this.#ts.length
    for (let i = 0; i < this.#length; i++) {
      const at = (this.#first + i) % size
      if (this.#ts[at]! >= since) out.push([this.#ts[at]!, this.#values[at]!])
    }
    return out
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

export interface MemoryHistoryOptions {
  /** Points kept per metric. */
  pointsPerSeries: number
  /** Points kept in memory for all metrics together; the least recently updated series go first. */
  maxPoints: number
  onLimit?: OnLimit
}

/** Recent points of every device's metrics, in memory, bounded per metric and in total. */
export class MemoryHistory {
  readonly #opts: MemoryHistoryOptions
  /** Series by device, then metric; devices and their series in least-recently-updated order. */
  readonly #devices = new Map<string, Map<string, Series>>()
  #points = 0

  constructor(opts: MemoryHistoryOptions) {
    if (opts.maxPoints < opts.pointsPerSeries) throw new RangeError('maxPoints must be at least pointsPerSeries')
    this.#opts = opts
  }

  /** Points held now, for all series. */
  get points(): number {
    return this.#points
  }

  append(device: string, metric: string, ts: number, value: number): void {
    let metrics = this.#devices.get(device)
    if (metrics) this.#devices.delete(device)
    else metrics = new Map()
    this.#devices.set(device, metrics)
    let series = metrics.get(metric)
    if (series) metrics.delete(metric)
    else series = new Series(this.#opts.pointsPerSeries)
    metrics.set(metric, series)
    if (series.push(ts, value)) this.#points++
    while (this.#points > this.#opts.maxPoints) this.#dropOldest()
  }

  /** Points per metric at or after `since`; every metric when `metrics` is not given. */
  query(device: string, metrics?: readonly string[], since?: number): Map<string, [number, number][]> {
    const out = new Map<string, [number, number][]>()
    const series = this.#devices.get(device)
    if (!series) return out
    for (const name of metrics ?? series.keys()) {
      const points = series.get(name)?.since(since)
      if (points) out.set(name, points)
    }
    return out
  }

  /** Forgets a device's points (the registry forgot the device). */
  forget(device: string): void {
    for (const series of this.#devices.get(device)?.values() ?? []) this.#points -= series.length
    this.#devices.delete(device)
  }

  #dropOldest(): void {
    const [device, metrics] = this.#devices.entries().next().value!
    const [metric, series] = metrics.entries().next().value!
    metrics.delete(metric)
    if (metrics.size === 0) this.#devices.delete(device)
    this.#points -= series.length
    this.#opts.onLimit?.('history_points', { device, metric, points: series.length })
  }
}
