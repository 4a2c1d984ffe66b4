import { mkdirSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import type { Reading } from '../protocol/index.ts'
import { DEFAULT_MAX_POINTS } from '../store/history.ts'
import { SqliteStore } from '../store/sqlite.ts'

/** What `runHistoryBench` is judged against (docs/benchmarks.md). */
export const HISTORY_TARGETS = {
  /** Median of a 30-day query of one 1 Hz metric with maxPoints 1000. */
  query30dMs: 50,
  /** Median of a 24-hour query of one 10 Hz metric. */
  query24h10HzMs: 100,
  /** CSV export rate. */
  exportRowsPerSec: 200_000,
  /** RSS growth while exporting 1 M rows. */
  exportRssGrowthBytes: 50 * 2 ** 20,
} as const

/** One timed query, repeated: the median, and the shape of the answer. */
export interface QueryFigure {
  maxPoints: number
  runs: number
  medianMs: number
  minMs: number
  maxMs: number
  /** Buckets answered (0 when raw points were). */
  buckets: number
  /** Raw points answered (0 when buckets were). */
  points: number
  /** Bucket width, ms (0 for raw points). */
  bucketMs: number
  /** Whether the spike planted in the data is the answer's maximum: peaks survive bucketing. */
  peakKept: boolean
}

/** The figures of `runHistoryBench`; every time in ms, every size in bytes. */
export interface HistoryBenchResult {
  /**
   * How the data went in: through the store's own `append` and `flush`, in batches of
   * `batch` readings, so the tables and rollups are exactly what a running server writes.
   */
  fill: { method: 'append+flush'; batch: number; readings: number; ms: number; rowsPerSec: number }
  /** 30 days of one metric at 1 reading/s (2,592,000 points), maxPoints 1000. */
  query30d: QueryFigure
  /** 24 h of one metric at 10 Hz (864,000 points), maxPoints 1000 (a chart's width). */
  query24h10Hz: QueryFigure
  /** The same, with the API's default maxPoints. */
  query24h10HzDefault: QueryFigure
  /** A CSV export of 1,000,000 rows, read to the end. */
  export: { rows: number; bytes: number; ms: number; rowsPerSec: number; rssBeforeBytes: number; rssPeakBytes: number; rssGrowthBytes: number }
  /** The database after a WAL checkpoint. */
  size: { readings: number; dbBytes: number; bytesPerMillionReadings: number }
  targets: typeof HISTORY_TARGETS
}

const SECOND = 1000
const DAY = 86_400_000
const BATCH = 50_000
const RUNS = 7

/**
 * Measures the SQLite history store on a fresh database in `dir`: query latency over long
 * ranges, CSV export rate and memory, and bytes per million readings. Prints nothing;
 * `onProgress` gets a status line per step.
 */
export async function runHistoryBench(opts: { dir: string; onProgress?: (line: string) => void }): Promise<HistoryBenchResult> {
  const progress = opts.onProgress ?? (() => {})
  mkdirSync(opts.dir, { recursive: true })
  const file = join(opts.dir, 'history-bench.db')
  for (const f of [file, `${file}-wal`, `${file}-shm`]) rmSync(f, { force: true })
  // retention far beyond the data: the data ends now and starts 30 days ago, and must all stay
  const store = SqliteStore.open({ file, retentionMs: 365 * DAY, retentionIntervalMs: 3_600_000 })
  try {
    const now = Math.floor(Date.now() / SECOND) * SECOND
    const start30d = now - 30 * DAY
    const start24h = now - DAY
    const slow = 30 * DAY / SECOND
    const fast = DAY / 100
    // one spike in each series: the bucketed answers must still show it
    const slowSpike = Math.floor(slow * 0.4321)
    const fastSpike = Math.floor(fast * 0.6789)

    progress(`history: filling 30 days at 1/s (${slow.toLocaleString('en')} readings) and 24 h at 10 Hz (${fast.toLocaleString('en')})`)
    const fillStarted = performance.now()
    await fill(store, 'slow', slow, (i) => start30d + i * SECOND, (i) => (i === slowSpike ? 1000 : wave(i)))
    await fill(store, 'fast', fast, (i) => start24h + i * 100, (i) => (i === fastSpike ? 1000 : wave(i)))
    const fillMs = performance.now() - fillStarted

    progress('history: timing queries')
    const query30d = await timeQuery(store, 'slow', start30d, now, 1000)
    const query24h10Hz = await timeQuery(store, 'fast', start24h, now, 1000)
    const query24h10HzDefault = await timeQuery(store, 'fast', start24h, now, DEFAULT_MAX_POINTS)

    progress('history: exporting 1,000,000 rows as CSV')
    const exported = await timeExport(store, 'slow', start30d, start30d + 1_000_000 * SECOND - 1)

    progress('history: measuring the file')
    store.db.pragma('wal_checkpoint(TRUNCATE)')
    await store.flush()
    const { dbBytes } = store.usage
    const readings = slow + fast
    return {
      fill: { method: 'append+flush', batch: BATCH, readings, ms: round(fillMs), rowsPerSec: Math.round(readings / (fillMs / 1000)) },
      query30d,
      query24h10Hz,
      query24h10HzDefault,
      export: exported,
      size: { readings, dbBytes, bytesPerMillionReadings: Math.round(dbBytes / (readings / 1e6)) },
      targets: HISTORY_TARGETS,
    }
  } finally {
    await store.close()
  }
}

function wave(i: number): number {
  return Math.round((20 + 5 * Math.sin(i / 3600)) * 100) / 100
}

async function fill(store: SqliteStore, metric: string, n: number, ts: (i: number) => number, value: (i: number) => number): Promise<void> {
  for (let i = 0; i < n; i += BATCH) {
    const batch: Reading[] = []
    for (let j = i; j < Math.min(n, i + BATCH); j++) batch.push({ device: 'bench', metric, ts: ts(j), value: value(j) })
    store.append(batch)
    await store.flush()
  }
}

async function timeQuery(store: SqliteStore, metric: string, from: number, to: number, maxPoints: number): Promise<QueryFigure> {
  const times: number[] = []
  let figure = { buckets: 0, points: 0, bucketMs: 0, peakKept: false }
  for (let run = 0; run < RUNS; run++) {
    const started = performance.now()
    const answer = await store.query({ device: 'bench', metrics: [metric], from, to, maxPoints })
    times.push(performance.now() - started)
    const m = answer.metrics[metric]
    if (!m) throw new Error(`the query answered no ${metric}`)
    figure =
      'buckets' in m
        ? { buckets: m.buckets.length, points: 0, bucketMs: m.bucketMs, peakKept: m.buckets.some(([, , max]) => max === 1000) }
        : { buckets: 0, points: m.points.length, bucketMs: 0, peakKept: m.points.some(([, v]) => v === 1000) }
  }
  times.sort((a, b) => a - b)
  return { maxPoints, runs: RUNS, medianMs: round(times[RUNS >> 1]!), minMs: round(times[0]!), maxMs: round(times[RUNS - 1]!), ...figure }
}

async function timeExport(store: SqliteStore, metric: string, from: number, to: number): Promise<HistoryBenchResult['export']> {
  const rssBefore = process.memoryUsage().rss
  let rssPeak = rssBefore
  // sampled per chunk and on a timer, so a peak between chunks is seen too
  const sampler = setInterval(() => (rssPeak = Math.max(rssPeak, process.memoryUsage().rss)), 20)
  let rows = -1 // the header
  let bytes = 0
  const started = performance.now()
  try {
    for await (const chunk of store.exportCsv({ device: 'bench', metrics: [metric], from, to })) {
      bytes += chunk.length
      for (let i = chunk.indexOf('\n'); i >= 0; i = chunk.indexOf('\n', i + 1)) rows++
      rssPeak = Math.max(rssPeak, process.memoryUsage().rss)
    }
  } finally {
    clearInterval(sampler)
  }
  const ms = performance.now() - started
  return { rows, bytes, ms: round(ms), rowsPerSec: Math.round(rows / (ms / 1000)), rssBeforeBytes: rssBefore, rssPeakBytes: rssPeak, rssGrowthBytes: rssPeak - rssBefore }
}

function round(ms: number): number {
  return Math.round(ms * 10) / 10
}
