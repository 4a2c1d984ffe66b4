import { getJson, withQuery } from './http.ts'
import { connection, onConnect, type Connected } from './live.svelte.ts'
import type { Bucket, DeviceHistory } from './protocol.ts'
import { firstAtOrAfter, series, type Point } from './series.svelte.ts'

/**
 * How long after a connection the server's store holds everything that arrived before it: the
 * SQLite store writes its queue every 200 ms, readings reach it in batches of up to 100 ms.
 * History asked for sooner may lack the last readings before the socket connected, which the
 * socket did not carry either; it is asked for again then.
 */
const SETTLE_MS = 1500
/** Points asked for at most when filling a gap or the last bucket of a range: the live store's watched window. */
const RAW_MAX_POINTS = 20_000
/** Live points past the stored history after which the range is loaded again, well before the live store trims them. */
const LIVE_TAIL_MAX = 10_000

/** What a chart shows: the last `spanMs` (sliding with the clock), or a fixed interval. */
export type HistoryRange = { kind: 'live'; spanMs: number } | { kind: 'fixed'; from: number; to: number }

/** One metric as the chart draws it. */
export interface MetricView {
  /** Raw points, or each bucket's mean at its middle. */
  line: Point[]
  /** Each bucket's lowest and highest value, at the same x as `line`; null for raw points. */
  band: { min: Point[]; max: Point[] } | null
}

/**
 * What the server answered for one metric. Live points continue it after `until`: the store is
 * complete up to its last point, the socket from the moment it connected, so the join has no
 * duplicate and no hole.
 */
type Stored =
  | { kind: 'points'; points: Point[]; until: number }
  | {
      kind: 'buckets'
      bucketMs: number
      /** Buckets that start before `join`, drawn as they came. */
      base: MetricView & { band: NonNullable<MetricView['band']> }
      /**
       * Where client-side buckets start, on the server's grid. Normally the start of the last
       * (partial) bucket, whose raw points are fetched so it can go on filling with live ones.
       */
      join: number
      /** Raw points from `join` on, from the store. */
      tail: Point[]
      until: number
    }

/**
 * The stored history of one device over the range its page shows, joined with the live points
 * of the `series` store. Loads when asked (page open, reload, range change), again once the
 * socket has settled, and fills what a reconnect without recovery missed.
 */
export class RangeHistory {
  status = $state<'loading' | 'ready' | 'error'>('loading')
  error = $state('')
  /** Changes when a load was applied: redraw. */
  version = $state(0)
  /** Bucket width (ms) of each metric that came bucketed. */
  widths = $state.raw<Record<string, number>>({})
  /** Nothing is on its way or waiting: no request, no reload once the socket settles, no gap to fill. */
  settled = $state(false)

  readonly #device: string
  /** The metrics on screen, for filling gaps. */
  readonly #shown: () => readonly string[]
  #range: HistoryRange = { kind: 'live', spanMs: 5 * 60_000 }
  #maxPoints = 1000
  // eslint-disable-next-line svelte/prefer-svelte-reactivity -- replaced whole at each load; `version` is the signal
  #stored = new Map<string, Stored>()
  /** The range ends now: live points continue the stored ones. */
  #live = true
  // eslint-disable-next-line svelte/prefer-svelte-reactivity -- a cache, keyed by the versions it was made from
  #cache = new Map<string, { key: string; view: MetricView }>()
  #generation = 0
  #controller: AbortController | null = null
  #loading = false
  /** A load finished before the socket connected: load again once it has settled. */
  #settleOnConnect = false
  #settleTimer = 0
  #gapTimer = 0

  constructor(device: string, shown: () => readonly string[]) {
    this.#device = device
    this.#shown = shown
  }

  /** Loads `range` (at about `maxPoints` per metric) and keeps it up to date until the returned function is called. */
  load(range: HistoryRange, maxPoints: number): () => void {
    this.#range = range
    this.#maxPoints = Math.max(50, Math.round(maxPoints))
    this.status = 'loading'
    void this.#load()
    const stop = onConnect(this.#connected)
    return () => {
      stop()
      this.#generation++
      this.#controller?.abort()
      window.clearTimeout(this.#settleTimer)
      window.clearTimeout(this.#gapTimer)
    }
  }

  /** The line (and band) of one metric, stored and live joined; the same object until either changes. */
  view(metric: string): MetricView {
    const key = `${series.versions.get(this.#device) ?? 0}:${this.version}`
    const cached = this.#cache.get(metric)
    if (cached?.key === key) return cached.view
    const view = this.#compose(metric)
    this.#cache.set(metric, { key, view })
    return view
  }

  #compose(metric: string): MetricView {
    const stored = this.#stored.get(metric)
    const live = this.#live ? series.points(this.#device, metric) : []
    const after = live.slice(firstAfter(live, stored?.until ?? -Infinity))
    // the live store keeps at most 20,000 points of a watched device: load again long before it trims any in the range
    if (after.length > LIVE_TAIL_MAX && !this.#loading) void this.#load()
    if (!stored) return { line: after, band: null }
    if (stored.kind === 'points') {
      // points older than what the server still keeps (its memory store is a ring) are still points
      const first = stored.points[0]
      const before = first ? live.slice(0, firstAtOrAfter(live, first.x)) : []
      return { line: before.concat(stored.points, after), band: null }
    }
    const folded = fold(stored.tail.concat(after), stored.join, stored.bucketMs)
    return {
      line: stored.base.line.concat(folded.line),
      band: { min: stored.base.band.min.concat(folded.band.min), max: stored.base.band.max.concat(folded.band.max) },
    }
  }

  readonly #connected = (c: Connected): void => {
    if (this.#settleOnConnect) {
      this.#settleOnConnect = false
      this.#settleLater(c.at + SETTLE_MS - Date.now())
      return
    }
    // the server replayed what was missed (or there was nothing to miss): the live points have no hole
    if (c.first || c.recovered || !this.#live) return
    this.settled = false
    window.clearTimeout(this.#gapTimer)
    this.#gapTimer = window.setTimeout(() => void this.#fillGap(), SETTLE_MS)
  }

  #settleLater(ms: number): void {
    this.settled = false
    window.clearTimeout(this.#settleTimer)
    this.#settleTimer = window.setTimeout(() => void this.#load(), Math.max(0, ms))
  }

  #url(q: { from: number; to?: number; metrics?: readonly string[]; maxPoints: number }): string {
    return withQuery(`/api/devices/${encodeURIComponent(this.#device)}/history`, {
      from: Math.floor(q.from),
      to: q.to === undefined ? undefined : Math.ceil(q.to),
      // `metrics` is comma-separated: a name with a comma in it can only come with all the others
      metrics: q.metrics && !q.metrics.some((m) => m.includes(',')) ? q.metrics.join(',') : undefined,
      maxPoints: q.maxPoints,
    })
  }

  async #load(): Promise<void> {
    const generation = ++this.#generation
    this.#controller?.abort()
    const controller = new AbortController()
    this.#controller = controller
    window.clearTimeout(this.#settleTimer)
    this.#loading = true
    this.settled = false
    const requestedAt = Date.now()
    try {
      const { stored, live } = await this.#fetchRange(requestedAt, controller.signal)
      if (generation !== this.#generation) return
      this.#stored = stored
      this.#live = live
      this.#cache.clear()
      const widths: Record<string, number> = {}
      for (const [name, s] of stored) if (s.kind === 'buckets') widths[name] = s.bucketMs
      this.widths = widths
      this.status = 'ready'
      this.error = ''
      this.version++
      if (live) this.#settle(requestedAt)
      else this.settled = true
    } catch (err) {
      if (controller.signal.aborted || generation !== this.#generation) return
      this.status = 'error'
      this.error = err instanceof Error ? err.message : String(err)
    } finally {
      if (generation === this.#generation) this.#loading = false
    }
  }

  /** Asks again once the socket has been connected long enough for the store to hold what came before it. */
  #settle(requestedAt: number): void {
    const at = connection.connectedAt
    if (at === null) this.#settleOnConnect = true
    else if (requestedAt < at + SETTLE_MS) this.#settleLater(at + SETTLE_MS - Date.now())
    else this.settled = true
  }

  async #fetchRange(now: number, signal: AbortSignal): Promise<{ stored: Map<string, Stored>; live: boolean }> {
    const r = this.#range
    const from = r.kind === 'live' ? now - r.spanMs : r.from
    const to = r.kind === 'live' ? undefined : r.to
    const live = to === undefined || to > now - SETTLE_MS
    const { body } = await getJson<DeviceHistory>(this.#url({ from, ...(to !== undefined && { to }), maxPoints: this.#maxPoints }), signal)
    // eslint-disable-next-line svelte/prefer-svelte-reactivity -- becomes #stored, plain
    const stored = new Map<string, Stored>()
    for (const [name, kept] of Object.entries(body.metrics)) {
      if ('points' in kept) {
        const points = toPoints(kept.points)
        stored.set(name, { kind: 'points', points, until: points.at(-1)?.x ?? -Infinity })
      } else {
        stored.set(name, bucketed(kept.buckets, kept.bucketMs, Infinity, []))
      }
    }
    if (!live) return { stored, live }

    // The last bucket is still filling: fetch its raw points, so that live ones join it on the
    // server's grid instead of being counted twice or not at all.
    const open = [...stored].filter((e): e is [string, Extract<Stored, { kind: 'buckets' }>] => e[1].kind === 'buckets' && e[1].base.line.length > 0)
    if (open.length === 0) return { stored, live }
    // eslint-disable-next-line svelte/prefer-svelte-reactivity -- local to this load
    const joins = new Map(open.map(([name, s]) => [name, s.join - s.bucketMs]))
    try {
      const tail = await getJson<DeviceHistory>(
        this.#url({ from: Math.min(...joins.values()), ...(to !== undefined && { to }), metrics: [...joins.keys()], maxPoints: RAW_MAX_POINTS }),
        signal,
      )
      for (const [name, s] of open) {
        const kept = tail.body.metrics[name]
        // more than the live store would keep in one bucket: join after the last bucket instead
        if (!kept || !('points' in kept)) continue
        const join = joins.get(name)!
        stored.set(name, bucketed(bucketsOf(s), s.bucketMs, join, toPoints(kept.points).filter((p) => p.x >= join)))
      }
    } catch (err) {
      if (signal.aborted) throw err
      // the buckets alone: live points join after the last one
    }
    return { stored, live }
  }

  /** After a reconnect the server could not replay: what each shown metric missed, from its last point seen to now. */
  async #fillGap(): Promise<void> {
    const metrics = this.#shown()
    if (metrics.length === 0) {
      this.settled = true
      return
    }
    const start = this.#range.kind === 'live' ? Date.now() - this.#range.spanMs : this.#range.from
    let from = Infinity
    for (const m of metrics) {
      const seen = Math.max(series.last(this.#device, m)?.x ?? -Infinity, this.#stored.get(m)?.until ?? -Infinity)
      from = Math.min(from, Number.isFinite(seen) ? seen : start)
    }
    try {
      // from the last point seen, inclusive: the store's copy of it replaces ours, so it is not doubled
      const { body } = await getJson<DeviceHistory>(this.#url({ from: Math.max(from, start), metrics, maxPoints: RAW_MAX_POINTS }))
      // more was missed than raw points can carry: the whole range again
      if (Object.values(body.metrics).some((kept) => !('points' in kept))) return void this.#load()
      series.merge(body)
      this.settled = true
    } catch {
      // offline again: the next reconnect asks again
    }
  }
}

/** Buckets as the chart draws them; those from `join` on are left to the raw `tail` (folded with live points). */
function bucketed(buckets: readonly Bucket[], bucketMs: number, join: number, tail: Point[]): Extract<Stored, { kind: 'buckets' }> {
  const kept = buckets.filter((b) => b.every(Number.isFinite) && b[0] < join)
  const last = kept.at(-1)
  const base = {
    line: kept.map(([start, , , avg]) => ({ x: start + bucketMs / 2, y: avg })),
    band: { min: kept.map(([start, min]) => ({ x: start + bucketMs / 2, y: min })), max: kept.map(([start, , max]) => ({ x: start + bucketMs / 2, y: max })) },
  }
  // with no tail, live points start after the last bucket, on the same grid
  const from = Number.isFinite(join) ? join : last ? last[0] + bucketMs : -Infinity
  return { kind: 'buckets', bucketMs, base, join: from, tail, until: Math.max(from - 1, tail.at(-1)?.x ?? -Infinity) }
}

/** The buckets a `Stored` was made of, back from its drawn form. */
function bucketsOf(s: Extract<Stored, { kind: 'buckets' }>): Bucket[] {
  const half = s.bucketMs / 2
  return s.base.line.map((p, i) => [p.x - half, s.base.band.min[i]!.y, s.base.band.max[i]!.y, p.y])
}

/** Raw points into buckets of `bucketMs` starting at `join`: mean, min and max of each, as drawn. */
function fold(points: readonly Point[], join: number, bucketMs: number): MetricView & { band: NonNullable<MetricView['band']> } {
  const out = { line: [] as Point[], band: { min: [] as Point[], max: [] as Point[] } }
  let start = NaN
  let min = 0
  let max = 0
  let sum = 0
  let count = 0
  const close = () => {
    if (count === 0) return
    const x = start + bucketMs / 2
    out.line.push({ x, y: sum / count })
    out.band.min.push({ x, y: min })
    out.band.max.push({ x, y: max })
  }
  for (const p of points) {
    if (p.x < join) continue
    const at = join + Math.floor((p.x - join) / bucketMs) * bucketMs
    if (at !== start) {
      close()
      start = at
      min = max = sum = p.y
      count = 1
    } else {
      if (p.y < min) min = p.y
      if (p.y > max) max = p.y
      sum += p.y
      count++
    }
  }
  close()
  return out
}

function toPoints(points: readonly [number, number][]): Point[] {
  return points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y)).map(([x, y]) => ({ x, y }))
}

/** Index of the first point after `x` (points sorted by x). */
function firstAfter(points: readonly Point[], x: number): number {
  let lo = 0
  let hi = points.length
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    if (points[mid]!.x <= x) lo = mid + 1
    else hi = mid
  }
  return lo
}
