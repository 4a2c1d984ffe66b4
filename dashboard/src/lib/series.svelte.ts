import { SvelteMap } from 'svelte/reactivity'
import { onNextFrame } from './frame.ts'
import type { DeviceHistory, Reading } from './protocol.ts'

/** A chart point in the shape Chart.js reads without parsing: epoch ms and value. */
export interface Point {
  x: number
  y: number
}

/** Points kept per metric of every device: enough for a card's sparkline. */
const BACKGROUND_WINDOW = 240
/** Points kept at most per metric of a device someone is looking at (its page is open). */
const WATCHED_WINDOW = 20_000
/** Trim in chunks rather than on every push, so the cost is amortised. */
const SLACK = 1.25
/**
 * A watched window is trimmed by time once it is this much longer than its span: every 15 s for
 * 5 minutes, so what the page holds stays within 5 % of what it shows.
 */
const TIME_SLACK = 1.05

/**
 * Recent points per device and metric. The arrays are plain (not reactive) because they change
 * many times a second; `versions` ticks once per frame for each device whose points changed.
 */
class SeriesStore {
  /** Device id → metric → points, oldest first. */
  readonly #byDevice = new Map<string, Map<string, Point[]>>()
  /** Device id → the time span each of its watchers shows, ms. */
  readonly #watchers = new Map<string, number[]>()
  /** Device and metric pairs whose recent history was asked for. */
  readonly #seeded = new Set<string>()
  readonly #touched = new Set<string>()
  /** Device id → a number that changes when its points changed; read it to re-run on new points. */
  readonly versions = new SvelteMap<string, number>()

  /** Points of one metric, oldest first. Read `versions.get(device)` to track changes. */
  points(device: string, metric: string): Point[] {
    return this.#byDevice.get(device)?.get(metric) ?? EMPTY
  }

  add(readings: readonly Reading[]): void {
    for (const r of readings) {
      if (!Number.isFinite(r.value) || !Number.isFinite(r.ts)) continue
      insert(this.#series(r.device, r.metric), r.ts, r.value)
      this.#touched.add(r.device)
    }
    for (const device of this.#touched) this.#trim(device)
    onNextFrame(this.#publish)
  }

  /**
   * Stored history from the server joins the live points. The history is complete for the
   * span it covers, so only live points outside that span are kept next to it.
   */
  merge(history: DeviceHistory): void {
    for (const [metric, kept] of Object.entries(history.metrics)) {
      // a long range comes as buckets: each one's mean, at its middle
      const points = 'points' in kept ? kept.points : kept.buckets.map(([start, , , avg]): [number, number] => [start + kept.bucketMs / 2, avg])
      const stored = points
        .filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y))
        .map(([x, y]) => ({ x, y }))
        .sort((a, b) => a.x - b.x)
      if (stored.length === 0) continue
      const series = this.#series(history.device, metric)
      const first = stored[0]!.x
      const last = stored[stored.length - 1]!.x
      const before = series.filter((p) => p.x < first)
      const after = series.filter((p) => p.x > last)
      series.length = 0
      for (const part of [before, stored, after]) for (const p of part) series.push(p)
    }
    this.#touched.add(history.device)
    this.#trim(history.device)
    onNextFrame(this.#publish)
  }

  /** Fills a sparkline from the server's history once, so a card has a line from the first paint. */
  seed(device: string, metric: string, spanMs = 3 * 60_000): void {
    const key = `${device}\u0000${metric}`
    if (this.#seeded.has(key)) return
    this.#seeded.add(key)
    // `metrics` is comma-separated: a name with a comma asks for all of them instead
    const only = metric.includes(',') ? '' : `&metrics=${encodeURIComponent(metric)}`
    fetch(`/api/devices/${encodeURIComponent(device)}/history?since=${Date.now() - spanMs}${only}`)
      .then((res) => (res.ok ? (res.json() as Promise<DeviceHistory>) : null))
      .then((history) => history && this.merge(history))
      .catch(() => this.#seeded.delete(key))
  }

  /** The server forgot the device: its points go, and a sparkline asks for history again if it comes back. */
  forget(device: string): void {
    this.#byDevice.delete(device)
    this.versions.delete(device)
    for (const key of this.#seeded) if (key.startsWith(`${device}\u0000`)) this.#seeded.delete(key)
  }

  /** The last point of one metric, or undefined. */
  last(device: string, metric: string): Point | undefined {
    return this.#byDevice.get(device)?.get(metric)?.at(-1)
  }

  /**
   * The newest value of a metric: its last live point, or the registry's latest (`state`, from
   * the device's snapshot or updates) when that is newer or there is no point. Read
   * `versions.get(device)` to follow it: it ticks once a frame when readings came.
   */
  newest(device: string, metric: string, state?: { value: number; ts: number }): { value: number; ts: number } | undefined {
    const p = this.last(device, metric)
    if (p && (!state || p.x >= state.ts)) return { value: p.y, ts: p.x }
    return state && { value: state.value, ts: state.ts }
  }

  /**
   * Keeps the last `spanMs` of this device's points (up to WATCHED_WINDOW a metric) until the
   * returned function is called: what its chart shows, and no more, so the page's memory stops
   * growing once its range is full.
   */
  watch(device: string, spanMs: number): () => void {
    const spans = this.#watchers.get(device) ?? []
    spans.push(spanMs)
    this.#watchers.set(device, spans)
    return () => {
      spans.splice(spans.indexOf(spanMs), 1)
      if (spans.length === 0) this.#watchers.delete(device)
      this.#trim(device)
    }
  }

  #series(device: string, metric: string): Point[] {
    let metrics = this.#byDevice.get(device)
    // eslint-disable-next-line svelte/prefer-svelte-reactivity -- points are plain on purpose; `versions` is the signal
    if (!metrics) this.#byDevice.set(device, (metrics = new Map()))
    let series = metrics.get(metric)
    if (!series) metrics.set(metric, (series = []))
    return series
  }

  #trim(device: string): void {
    const spans = this.#watchers.get(device)
    const cap = spans ? WATCHED_WINDOW : BACKGROUND_WINDOW
    const spanMs = spans ? Math.max(...spans) : Infinity
    for (const series of this.#byDevice.get(device)?.values() ?? []) {
      if (series.length > cap * SLACK) series.splice(0, series.length - cap)
      // by time, from the series' newest point: a device's clock need not be the browser's
      const newest = series.at(-1)?.x ?? 0
      if (series.length > 0 && series[0]!.x < newest - spanMs * TIME_SLACK) series.splice(0, firstAtOrAfter(series, newest - spanMs))
    }
  }

  readonly #publish = (): void => {
    for (const device of this.#touched) this.versions.set(device, (this.versions.get(device) ?? 0) + 1)
    this.#touched.clear()
  }
}

const EMPTY: Point[] = []

/**
 * Readings mostly arrive in order; a late one (a device's own timestamp) is put in its place.
 * Two readings in the same millisecond are both kept, as the server's history keeps them.
 */
function insert(series: Point[], x: number, y: number): void {
  let i = series.length
  while (i > 0 && series[i - 1]!.x > x) i--
  if (i === series.length) series.push({ x, y })
  else series.splice(i, 0, { x, y })
}

/** Index of the first point at or after `x`, from `from` on (points sorted by x). */
export function firstAtOrAfter(points: readonly Point[], x: number, from = 0): number {
  return bisect(points, from, (p) => p.x < x)
}

/** Index of the first point after `x`, from `from` on (points sorted by x). */
export function firstAfter(points: readonly Point[], x: number, from = 0): number {
  return bisect(points, from, (p) => p.x <= x)
}

/** The first index from `lo` on whose point is not `before`: they all come first. */
function bisect(points: readonly Point[], lo: number, before: (p: Point) => boolean): number {
  let hi = points.length
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    if (before(points[mid]!)) lo = mid + 1
    else hi = mid
  }
  return lo
}

export const series = new SeriesStore()
