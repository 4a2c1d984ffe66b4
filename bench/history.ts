import { mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'
import type { DeviceHistory, Reading } from '../protocol/index.ts'
import { DATABASE_FILE } from '../server/pulseboard.ts'
import { DEFAULT_MAX_POINTS } from '../store/history.ts'
import { SqliteStore } from '../store/sqlite.ts'
import { connectRaw, publishPacket } from './mqtt-wire.ts'
import { cpuPercent, sampleProcess } from './process-stats.ts'
import { startPulseboard, type PulseboardProcess } from './pulseboard-process.ts'

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

async function fill(store: SqliteStore, metric: string, n: number, ts: (i: number) => number, value: (i: number) => number, device = 'bench'): Promise<void> {
  for (let i = 0; i < n; i += BATCH) {
    const batch: Reading[] = []
    for (let j = i; j < Math.min(n, i + BATCH); j++) batch.push({ device, metric, ts: ts(j), value: value(j) })
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

/** The same figures through a running server's HTTP API: what a browser or `curl` gets. */
export interface HistoryHttpResult {
  /** The database the server opened: 30 days of one metric at 1/s and 24 h of another at 10 Hz, written as `runHistoryBench` writes them. */
  fill: { readings: number; ms: number; rowsPerSec: number }
  /** `GET /api/devices/:id/history` for 30 days at 1/s, maxPoints 1000: from the request to the parsed JSON. */
  query30d: HttpQueryFigure
  /** The same for 24 h at 10 Hz. */
  query24h10Hz: HttpQueryFigure
  /**
   * `GET /api/devices/:id/export.csv` of 1,000,000 rows, read to the end by this process; the
   * server's resident memory sampled every 20 ms from /proc, and its CPU over the export.
   */
  export: {
    rows: number
    bytes: number
    ms: number
    rowsPerSec: number
    serverRssBeforeBytes: number
    serverRssPeakBytes: number
    serverRssGrowthBytes: number
    serverCpuPercent: number
    /** The server's committed V8 heap and its memory outside the heap (buffers), before and at their peaks (sampled every 200 ms). */
    serverHeap: { beforeBytes: number; peakBytes: number }
    serverExternal: { beforeBytes: number; peakBytes: number }
  }
  targets: typeof HISTORY_TARGETS
}

export interface HttpQueryFigure {
  runs: number
  medianMs: number
  minMs: number
  maxMs: number
  buckets: number
  bucketMs: number
  peakKept: boolean
  /** Size of one answer. */
  bytes: number
}

const HTTP_DEVICE = 'bench-http'
const EXPORT_ROWS = 1_000_000

/**
 * Starts `pulseboard start --data-dir` on a database of 3.46 M readings and measures the history
 * and export routes over HTTP. The device is made known to the registry the ordinary way (one
 * MQTT message to a first run of the server, which saves it at shutdown); the readings are then
 * written by the store's own `append`, and a second run serves them.
 */
export async function runHistoryHttpBench(opts: { onProgress?: (line: string) => void; signal?: AbortSignal } = {}): Promise<HistoryHttpResult> {
  const progress = opts.onProgress ?? (() => {})
  const dir = mkdtempSync(join(tmpdir(), 'pulseboard-history-http-'))
  // the data starts 30 days ago: a longer retention, so none of it expires while it is measured
  const args = ['--retention', '60d']
  let server: PulseboardProcess | undefined
  try {
    progress('history over HTTP: a first run learns the device')
    server = await startPulseboard({ store: 'sqlite', dataDir: dir, args })
    const socket = await connectRaw('127.0.0.1', server.mqttPort, HTTP_DEVICE)
    socket.end(publishPacket(`devices/${HTTP_DEVICE}/telemetry`, '{"slow":1}', 0, 0))
    // until the reading is written: the device is then saved at shutdown too
    const first = server
    await until(10_000, 'the server to store the first reading', async () => ((await first.health()).usage['readings'] ?? 0) >= 1, opts.signal)
    await server.stop()
    server = undefined

    progress('history over HTTP: writing 30 days at 1/s and 24 h at 10 Hz')
    const store = SqliteStore.open({ file: join(dir, DATABASE_FILE), retentionMs: 365 * DAY, retentionIntervalMs: 3_600_000 })
    const now = Math.floor(Date.now() / SECOND) * SECOND - 60 * SECOND
    const start30d = now - 30 * DAY
    const start24h = now - DAY
    const slow = (30 * DAY) / SECOND
    const fast = DAY / 100
    const fillStarted = performance.now()
    try {
      await fill(store, 'slow', slow, (i) => start30d + i * SECOND, (i) => (i === Math.floor(slow * 0.4321) ? 1000 : wave(i)), HTTP_DEVICE)
      await fill(store, 'fast', fast, (i) => start24h + i * 100, (i) => (i === Math.floor(fast * 0.6789) ? 1000 : wave(i)), HTTP_DEVICE)
    } finally {
      await store.close()
    }
    const fillMs = performance.now() - fillStarted

    progress('history over HTTP: the server opens the database')
    server = await startPulseboard({ store: 'sqlite', dataDir: dir, args })
    const base = `${server.httpUrl}/api/devices/${HTTP_DEVICE}`
    const known = await fetch(base)
    if (!known.ok) throw new Error(`the restarted server does not know ${HTTP_DEVICE}: ${known.status} ${(await known.text()).slice(0, 200)}`)
    // start-up work (restoring, the first retention step) out of the way
    await delay(2000, undefined, { signal: opts.signal })

    progress('history over HTTP: timing queries')
    const query30d = await timeHttpQuery(`${base}/history?metrics=slow&from=${start30d}&to=${now}&maxPoints=1000`, 'slow')
    const query24h10Hz = await timeHttpQuery(`${base}/history?metrics=fast&from=${start24h}&to=${now}&maxPoints=1000`, 'fast')

    progress('history over HTTP: exporting 1,000,000 rows as CSV')
    const exported = await timeHttpExport(`${base}/export.csv?metrics=slow&from=${start30d}&to=${start30d + EXPORT_ROWS * SECOND - 1}`, server.pid)
    return {
      fill: { readings: slow + fast, ms: round(fillMs), rowsPerSec: Math.round((slow + fast) / (fillMs / 1000)) },
      query30d,
      query24h10Hz,
      export: exported,
      targets: HISTORY_TARGETS,
    }
  } finally {
    await server?.stop()
    rmSync(dir, { recursive: true, force: true })
  }
}

async function until(timeoutMs: number, what: string, probe: () => Promise<boolean>, signal?: AbortSignal): Promise<void> {
  const deadline = performance.now() + timeoutMs
  while (!(await probe().catch(() => false))) {
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}`)
    await delay(50, undefined, { signal })
  }
}

async function timeHttpQuery(url: string, metric: string): Promise<HttpQueryFigure> {
  const times: number[] = []
  let figure = { buckets: 0, bucketMs: 0, peakKept: false, bytes: 0 }
  for (let run = 0; run < RUNS; run++) {
    const started = performance.now()
    const res = await fetch(url, { signal: AbortSignal.timeout(60_000) })
    const text = await res.text()
    const answer = JSON.parse(text) as DeviceHistory
    times.push(performance.now() - started)
    if (!res.ok) throw new Error(`${url} answered ${res.status}: ${text.slice(0, 200)}`)
    const m = answer.metrics[metric]
    if (!m) throw new Error(`the history route answered no ${metric}`)
    figure =
      'buckets' in m
        ? { buckets: m.buckets.length, bucketMs: m.bucketMs, peakKept: m.buckets.some(([, , max]) => max === 1000), bytes: text.length }
        : { buckets: 0, bucketMs: 0, peakKept: m.points.some(([, v]) => v === 1000), bytes: text.length }
  }
  times.sort((a, b) => a - b)
  return { runs: RUNS, medianMs: round(times[RUNS >> 1]!), minMs: round(times[0]!), maxMs: round(times[RUNS - 1]!), ...figure }
}

/** The server's V8 heap (committed) and memory outside it (buffers), from its `/metrics`. */
async function serverMemory(httpUrl: string): Promise<{ heapBytes: number; externalBytes: number }> {
  const text = await (await fetch(`${httpUrl}/metrics`, { signal: AbortSignal.timeout(5000) })).text()
  const read = (name: string) => Number(new RegExp(`^${name} ([\\d.e+-]+)$`, 'm').exec(text)?.[1] ?? NaN)
  return { heapBytes: read('pulseboard_nodejs_heap_size_total_bytes'), externalBytes: read('pulseboard_nodejs_external_memory_bytes') }
}

async function timeHttpExport(url: string, pid: number): Promise<HistoryHttpResult['export']> {
  const httpUrl = new URL(url).origin
  const memoryBefore = await serverMemory(httpUrl)
  const memoryPeak = { ...memoryBefore }
  // what makes up the growth: the heap (garbage not yet collected) or buffers outside it; read every 200 ms, one at a time
  let reading = false
  const memorySampler = setInterval(() => {
    if (reading) return
    reading = true
    serverMemory(httpUrl)
      .then((m) => {
        memoryPeak.heapBytes = Math.max(memoryPeak.heapBytes, m.heapBytes)
        memoryPeak.externalBytes = Math.max(memoryPeak.externalBytes, m.externalBytes)
      })
      .catch(() => {})
      .finally(() => (reading = false))
  }, 200)
  const before = sampleProcess(pid)
  let rssPeak = before.rssBytes
  const sampler = setInterval(() => (rssPeak = Math.max(rssPeak, sampleProcess(pid).rssBytes)), 20)
  let rows = -1 // the header
  let bytes = 0
  const started = performance.now()
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(300_000) })
    if (!res.ok || !res.body) throw new Error(`${url} answered ${res.status}`)
    for await (const chunk of res.body) {
      const buf = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)
      bytes += buf.length
      for (let i = buf.indexOf(10); i >= 0; i = buf.indexOf(10, i + 1)) rows++
    }
  } finally {
    clearInterval(sampler)
    clearInterval(memorySampler)
  }
  const ms = performance.now() - started
  const after = sampleProcess(pid)
  rssPeak = Math.max(rssPeak, after.rssBytes)
  return {
    rows,
    bytes,
    ms: round(ms),
    rowsPerSec: Math.round(rows / (ms / 1000)),
    serverRssBeforeBytes: before.rssBytes,
    serverRssPeakBytes: rssPeak,
    serverRssGrowthBytes: rssPeak - before.rssBytes,
    serverCpuPercent: Math.round(cpuPercent(before, after) * 10) / 10,
    serverHeap: { beforeBytes: memoryBefore.heapBytes, peakBytes: memoryPeak.heapBytes },
    serverExternal: { beforeBytes: memoryBefore.externalBytes, peakBytes: memoryPeak.externalBytes },
  }
}
