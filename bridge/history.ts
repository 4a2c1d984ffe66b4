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
  /** Points kept in memory for all metrics together; the least recently updated devices' go first. */
  maxPoints: number
  onLimit?: OnLimit
}

/** Recent points of every device's metrics, in memory, bounded per metric and in total. */
export class MemoryHistory {
  readonly #opts: MemoryHistoryOptions
  /** Series by device, then metric; devices in least-recently-updated order. */
  readonly #devices = new Map<string, Map<string, Series>>()
  /** The device appended to last: most readings come in runs of one device's metrics. */
  #last: string | null = null
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
    if (!metrics) this.#devices.set(device, (metrics = new Map()))
    else if (this.#last !== device) {
      // most recently updated last, so the first entry is the one to drop
      this.#devices.delete(device)
      this.#devices.set(device, metrics)
    }
    this.#last = device
    let series = metrics.get(metric)
    if (!series) metrics.set(metric, (series = new Series(this.#opts.pointsPerSeries)))
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
  forget(device: string): number {
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
    const points = this.forget(device)
    this.#opts.onLimit?.('history_points', { device, points })
  }

  /** One device holds every point: its longest series is dropped. */
  #dropLongestSeries(device: string): void {
    const metrics = this.#devices.get(device)!
    const [metric] = [...metrics].reduce((a, b) => (b[1].length > a[1].length ? b : a))
    const points = metrics.get(metric)!.length
    metrics.delete(metric)
    this.#points -= points
    this.#opts.onLimit?.('history_points', { device, metric, points })
  }
}
