import { mkdtempSync, rmSync, statSync } from 'node:fs'
import { availableParallelism, tmpdir } from 'node:os'
import path from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'
import { DATABASE_FILE } from '../server/pulseboard.ts'
import { SqliteStore } from '../store/sqlite.ts'
import { spawnRole, type Role } from './ipc.ts'
import type { HealthReport } from '../protocol/health.ts'
import { cpuPercent, machinePercent, sampleMachine, sampleProcess, type MachineSample, type ProcessSample } from './process-stats.ts'
import { startPulseboard, type PulseboardProcess } from './pulseboard-process.ts'
import type { PublisherConfig, PublisherReport } from './publisher.ts'

/** What the ingest half of `--scenario history` is judged against (docs/benchmarks.md, "History"). */
export const INGEST_TARGETS = {
  readingsPerSec: 10_000,
  durationMs: 600_000,
  /** CPU of the server with the SQLite store, less the same load's with `--no-store`, in points of one core. */
  cpuDifferencePoints: 30,
  /** Readings the store's queue may drop. */
  dropped: 0,
} as const

export interface IngestOptions {
  /** Devices per server, each its own MQTT connection. */
  devices: number
  /** Messages per second from all devices, to each server. */
  rate: number
  /** Metrics per message: readings per second are `rate × metrics`. */
  metrics: number
  warmupMs: number
  durationMs: number
  /** CPU is read over intervals of this length; a progress line follows each. @default 10000 */
  intervalMs?: number
  onProgress?: (line: string) => void
  signal?: AbortSignal
}

/** Median, mean, least and most of per-interval samples. */
export interface Spread {
  median: number
  mean: number
  min: number
  max: number
}

export interface IngestServer {
  store: 'sqlite' | 'memory'
  /** % of one core, one sample per interval. */
  cpu: Spread & { samples: number[] }
  /** Resident memory, sampled every second, MB; each half of the window as its min and max, to tell growth from GC. */
  rssMb: Spread & { end: number; firstHalf: [number, number]; secondHalf: [number, number] }
  /** What the broker took in over the window. */
  messagesInPerSec: number
  /** The load generator that fed this server, % of one core. */
  publisherCpu: number
  /** How long `/api/health` took to answer, asked once a second: a held event loop shows here. */
  healthAnswerMs: { median: number; p99: number; max: number; failed: number }
}

export interface IngestStore {
  /**
   * Readings kept per second of the window: rows of the database stamped inside it, counted after
   * the run. A reading of the same series and millisecond as an earlier one replaces it.
   */
  readingsPerSec: number
  /** Readings the store wrote per second over the window (`usage.readings`), those that replaced another included. */
  writtenPerSec: number
  /** Over the whole run, warm-up included: readings the publisher sent, and rows the database kept. */
  kept: { sent: number; rows: number }
  /** `usage.queueDepth` sampled every second. */
  queueDepth: { max: number; median: number }
  dropped: number
  writeFailures: number
  /** `usage.lastWriteMs` sampled every second: how long one write transaction held the event loop. */
  writeMs: { median: number; p99: number; max: number }
  /** `usage.dbBytes` at the end of the window (file and WAL). */
  dbBytesAtEnd: number
  /** After the server stopped: the file, rows in `readings` and messages in the log, and bytes by part (from `dbstat`). */
  file: {
    bytes: number
    readings: number
    messages: number
    /** Logged messages stamped in the same millisecond as another on the same topic: each one's readings replaced the other's. */
    sameMillisecondMessages: number
    parts: { readings: number; rollups: number; log: number; broker: number; other: number }
  }
  /** Bytes per million readings: the whole file, and readings with their rollups alone. */
  bytesPerMillionReadings: { file: number; readingsAndRollups: number }
  /** Bytes of the message log per logged message. */
  logBytesPerMessage: number
  /** Times a bound was reached (`/api/health` `limits`), those above zero. */
  limits: Record<string, number>
}

export interface IngestResult {
  devices: number
  rate: number
  metrics: number
  /** Readings per second the publishers sent over the window, to each server. */
  offeredReadingsPerSec: number
  warmupMs: number
  durationMs: number
  intervalMs: number
  sqlite: IngestServer & { history: IngestStore }
  memory: IngestServer
  /** SQLite less `--no-store`, points of one core: of the medians, of the means, and the median of the differences per interval. */
  cpuDifference: { median: number; mean: number; pairedMedian: number }
  /** The whole machine over the window, % of one core (200 = both cores of a 2-core machine), and what of it was not this bench. */
  machine: { cores: number; busyPercent: number; benchPercent: number; otherPercent: number }
  targets: typeof INGEST_TARGETS
}

const SECOND = 1000

/**
 * Two `pulseboard start` processes side by side, one with the SQLite store and one with
 * `--no-store`, each fed the same telemetry by its own publisher process, measured over the same
 * window: CPU per interval, memory, what the store wrote and queued, and the database it left.
 */
export async function runIngestBench(opts: IngestOptions): Promise<IngestResult> {
  const intervalMs = opts.intervalMs ?? 10 * SECOND
  const progress = opts.onProgress ?? (() => {})
  const signal = opts.signal
  const dir = mkdtempSync(path.join(tmpdir(), 'pulseboard-history-'))
  const file = path.join(dir, DATABASE_FILE)
  // enough connections and devices for the fleet, whatever the defaults
  const capacity = opts.devices > 1800 ? ['--max-connections', String(opts.devices + 200), '--max-devices', String(opts.devices + 200)] : []
  const servers: PulseboardProcess[] = []
  const publishers: Role<object, PublisherReport>[] = []
  try {
    progress('history: starting two servers, SQLite store and --no-store')
    const started = await Promise.allSettled([
      startPulseboard({ store: 'sqlite', dataDir: dir, args: capacity }),
      startPulseboard({ store: 'memory', args: capacity }),
    ])
    for (const s of started) if (s.status === 'fulfilled') servers.push(s.value)
    for (const s of started) if (s.status === 'rejected') throw s.reason
    const [sqlite, memory] = servers as [PulseboardProcess, PulseboardProcess]

    progress(`history: connecting ${opts.devices.toLocaleString('en-US')} devices to each server`)
    const config = (server: PulseboardProcess): PublisherConfig => ({
      host: '127.0.0.1',
      port: server.mqttPort,
      first: 0,
      count: opts.devices,
      rate: opts.rate,
      qos: 0,
      payloadSize: 0,
      metrics: opts.metrics,
    })
    const spawned = await Promise.allSettled([spawnRole<object, PublisherReport>('publisher', config(sqlite)), spawnRole<object, PublisherReport>('publisher', config(memory))])
    for (const s of spawned) if (s.status === 'fulfilled') publishers.push(s.value)
    for (const s of spawned) if (s.status === 'rejected') throw s.reason

    for (const p of publishers) p.send({ type: 'start' })
    const warmupEnd = performance.now() + opts.warmupMs
    for (let i = 0; i < Math.ceil(opts.warmupMs / SECOND) + 1 && performance.now() < warmupEnd; i++) {
      progress(`history: warm-up ${Math.round((opts.warmupMs - (warmupEnd - performance.now())) / SECOND)}/${opts.warmupMs / SECOND} s`)
      await delay(Math.min(SECOND, Math.max(0, warmupEnd - performance.now())), undefined, { signal })
      assertRunning(servers)
    }

    for (const p of publishers) p.send({ type: 'measure' })
    const measuredFrom = performance.now()
    const ticks = Math.ceil(opts.durationMs / SECOND)
    // each server is asked once a second, one request at a time, however long it takes to answer:
    // a server whose event loop is held shows as a slow answer, not as a failed run
    const pollers = [pollHealth(sqlite, ticks), pollHealth(memory, ticks)] as const
    const queue: number[] = []
    const writeMs: number[] = []
    pollers[0].onAnswer = (h) => {
      queue.push(h.usage['queueDepth'] ?? 0)
      writeMs.push(h.usage['lastWriteMs'] ?? 0)
    }
    const cpu: [number[], number[]] = [[], []]
    const rss: [number[], number[]] = [[], []]
    const perInterval = Math.max(1, Math.round(intervalMs / SECOND))
    let health0: [Timed, Timed], epoch0: number, machine0: MachineSample, bench0: NodeJS.CpuUsage, pub0: ProcessSample[], t0: number
    let first: readonly [ProcessSample, ProcessSample]
    let end: readonly [ProcessSample, ProcessSample], epoch1: number, machine1: MachineSample, bench1: NodeJS.CpuUsage, pub1: ProcessSample[]
    try {
      health0 = await Promise.all([pollers[0].first, pollers[1].first])
      epoch0 = Date.now()
      machine0 = sampleMachine()
      bench0 = process.cpuUsage()
      pub0 = publishers.map((p) => sampleProcess(p.pid))
      t0 = performance.now()
      first = [sampleProcess(sqlite.pid), sampleProcess(memory.pid)] as const
      let last = first
      // one tick a second against the start, reading /proc only: nothing here waits for a server
      for (let tick = 1; tick <= ticks; tick++) {
        const wait = t0 + Math.min(tick * SECOND, opts.durationMs) - performance.now()
        if (wait > 0) await delay(wait, undefined, { signal })
        assertRunning(servers)
        const samples = [sampleProcess(sqlite.pid), sampleProcess(memory.pid)] as const
        rss[0].push(samples[0].rssBytes / 1e6)
        rss[1].push(samples[1].rssBytes / 1e6)
        if (tick % perInterval === 0 || tick === ticks) {
          // a short last interval reads CPU too coarsely (10 ms ticks) to count
          if (tick % perInterval === 0) {
            cpu[0].push(cpuPercent(last[0], samples[0]))
            cpu[1].push(cpuPercent(last[1], samples[1]))
          }
          last = samples
          const latest = pollers[0].latest ?? health0[0]
          const usage = latest.report.usage
          const written = ((usage['readings'] ?? 0) - (health0[0].report.usage['readings'] ?? 0)) / ((latest.at - health0[0].at) / SECOND)
          progress(
            `history: ${Math.round((samples[0].at - t0) / SECOND)}/${opts.durationMs / SECOND} s  SQLite ${fmt(cpu[0].at(-1) ?? NaN)} % CPU, ${fmt(rss[0].at(-1)!)} MB, ` +
              `${fmt(written)} readings/s written, queue max ${fmt(Math.max(0, ...queue))}, dropped ${fmt(usage['dropped'] ?? 0)}, ` +
              `slowest health answer ${fmt(Math.max(0, ...pollers[0].latencies))} ms  |  --no-store ${fmt(cpu[1].at(-1) ?? NaN)} % CPU, ${fmt(rss[1].at(-1)!)} MB`,
          )
        }
      }
      end = [sampleProcess(sqlite.pid), sampleProcess(memory.pid)] as const
      epoch1 = Date.now()
      machine1 = sampleMachine()
      bench1 = process.cpuUsage(bench0)
      pub1 = publishers.map((p) => sampleProcess(p.pid))
    } finally {
      await Promise.all(pollers.map((p) => p.stop()))
    }
    const seconds = (end[0].at - t0) / SECOND
    // the figures at the end of the window, however long the servers take to say them
    const health1 = await Promise.all([timedHealth(sqlite), timedHealth(memory)])
    const measuredTo = performance.now()
    const reports = await Promise.all(publishers.map((p) => (p.send({ type: 'stop' }), within(10_000, 'a publisher to report', p.next<PublisherReport>('report')))))
    // the publishers count from 'measure' to 'stop', a little longer than the window
    const offered = (Math.min(...reports.map((r) => r.measuredSent)) * opts.metrics) / ((measuredTo - measuredFrom) / SECOND)

    // what is queued when the publishers stop is written within a tick or two
    progress('history: letting the store write what is queued')
    let final = health1[0].report
    for (let i = 0; i < 50 && (final.usage['queueDepth'] ?? 0) > 0; i++) {
      await delay(200, undefined, { signal })
      final = (await timedHealth(sqlite)).report
    }
    await Promise.all(publishers.splice(0).map((p) => p.kill()))
    await Promise.all(servers.splice(0).map((s) => s.stop()))

    progress('history: measuring the database')
    const dbFile = measureFile(file, epoch0, epoch1)
    const usage = health1[0].report.usage
    const readings = dbFile.readings
    const partsOf = dbFile.parts
    const serverResult = (i: 0 | 1, store: 'sqlite' | 'memory'): IngestServer => ({
      store,
      cpu: { ...spread(cpu[i]), samples: cpu[i].map(round1) },
      rssMb: { ...spread(rss[i]), end: round1(end[i].rssBytes / 1e6), ...halves(rss[i]) },
      messagesInPerSec: round1((health1[i].report.mqtt.messagesIn - health0[i].report.mqtt.messagesIn) / ((health1[i].at - health0[i].at) / SECOND)),
      publisherCpu: round1(cpuPercent(pub0[i]!, pub1[i]!)),
      healthAnswerMs: { ...latencySpread(pollers[i].latencies), failed: pollers[i].failed },
    })
    const pairs = cpu[0].map((c, i) => c - cpu[1][i]!)
    const sqliteServer = serverResult(0, 'sqlite')
    const memoryServer = serverResult(1, 'memory')
    const ours =
      cpuPercent(first[0], end[0]) + cpuPercent(first[1], end[1]) + sqliteServer.publisherCpu + memoryServer.publisherCpu + ((bench1.user + bench1.system) / 1e6 / seconds) * 100
    const busy = machinePercent(machine0, machine1)
    return {
      devices: opts.devices,
      rate: opts.rate,
      metrics: opts.metrics,
      offeredReadingsPerSec: round1(offered),
      warmupMs: opts.warmupMs,
      durationMs: opts.durationMs,
      intervalMs,
      sqlite: {
        ...sqliteServer,
        history: {
          readingsPerSec: round1(dbFile.windowRows / ((epoch1 - epoch0) / SECOND)),
          writtenPerSec: round1(((usage['readings'] ?? 0) - (health0[0].report.usage['readings'] ?? 0)) / ((health1[0].at - health0[0].at) / SECOND)),
          kept: { sent: reports[0]!.sent * opts.metrics, rows: readings },
          queueDepth: { max: Math.max(0, ...queue), median: median(queue) },
          dropped: final.usage['dropped'] ?? 0,
          writeFailures: final.usage['writeFailures'] ?? 0,
          writeMs: latencySpread(writeMs),
          dbBytesAtEnd: usage['dbBytes'] ?? 0,
          file: { bytes: dbFile.bytes, readings: dbFile.readings, messages: dbFile.messages, sameMillisecondMessages: dbFile.sameMillisecondMessages, parts: dbFile.parts },
          bytesPerMillionReadings: {
            file: readings > 0 ? Math.round((dbFile.bytes / readings) * 1e6) : 0,
            readingsAndRollups: readings > 0 ? Math.round(((partsOf.readings + partsOf.rollups) / readings) * 1e6) : 0,
          },
          logBytesPerMessage: dbFile.messages > 0 ? Math.round(partsOf.log / dbFile.messages) : 0,
          limits: Object.fromEntries(Object.entries(final.limits).filter(([, n]) => n > 0)),
        },
      },
      memory: memoryServer,
      cpuDifference: {
        median: round1(sqliteServer.cpu.median - memoryServer.cpu.median),
        mean: round1(sqliteServer.cpu.mean - memoryServer.cpu.mean),
        pairedMedian: round1(median(pairs)),
      },
      machine: { cores: availableParallelism(), busyPercent: round1(busy), benchPercent: round1(ours), otherPercent: round1(Math.max(0, busy - ours)) },
      targets: INGEST_TARGETS,
    }
  } finally {
    await Promise.allSettled(publishers.map((p) => (p.send({ type: 'stop' }), p.kill())))
    await Promise.allSettled(servers.map((s) => s.stop()))
    rmSync(dir, { recursive: true, force: true })
  }
}

interface Timed {
  at: number
  report: HealthReport
}

/** `/api/health` and when it answered; tried three times, each given 30 s. */
async function timedHealth(server: PulseboardProcess): Promise<Timed> {
  for (let attempt = 1; ; attempt++) {
    try {
      const report = await server.health(30_000)
      return { at: performance.now(), report }
    } catch (err) {
      if (attempt === 3 || server.exited) throw err
    }
  }
}

interface Poller {
  /** The first answer. */
  first: Promise<Timed>
  /** The newest answer, once there is one. */
  latest: Timed | undefined
  /** Milliseconds each answer took. */
  latencies: number[]
  failed: number
  onAnswer: (report: HealthReport) => void
  stop(): Promise<void>
}

/** Asks `/api/health` once a second (at most `count` + 60 times), one request at a time, each given 30 s. */
function pollHealth(server: PulseboardProcess, count: number): Poller {
  let running = true
  let resolveFirst: (t: Timed) => void = () => {}
  let rejectFirst: (err: unknown) => void = () => {}
  const poller: Poller = {
    first: new Promise<Timed>((resolve, reject) => ((resolveFirst = resolve), (rejectFirst = reject))),
    latest: undefined,
    latencies: [],
    failed: 0,
    onAnswer: () => {},
    stop: async () => {
      running = false
      await loop
    },
  }
  const loop = (async () => {
    for (let i = 0; running && i < count + 60; i++) {
      const started = performance.now()
      try {
        const report = await server.health(30_000)
        const at = performance.now()
        if (i === 0) resolveFirst({ at, report })
        else {
          poller.latencies.push(at - started)
          poller.onAnswer(report)
        }
        poller.latest = { at, report }
      } catch (err) {
        if (i === 0) return rejectFirst(err)
        poller.failed++
        if (server.exited) return
      }
      const wait = SECOND - (performance.now() - started)
      if (wait > 0 && running) await delay(wait)
    }
  })()
  return poller
}

function latencySpread(values: number[]): { median: number; p99: number; max: number } {
  return { median: round1(median(values)), p99: round1(percentile(values, 99)), max: round1(Math.max(0, ...values)) }
}

function within<T>(ms: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out after ${ms / 1000} s waiting for ${what}`)), ms)))
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

function assertRunning(servers: PulseboardProcess[]): void {
  const gone = servers.find((s) => s.exited)
  if (gone) throw new Error(`the server with ${gone.dataDir === null ? '--no-store' : 'the SQLite store'} exited during the run`)
}

/** The database a stopped server left: its size, its rows, and bytes by table (SQLite's `dbstat`). */
function measureFile(file: string, from: number, to: number): IngestStore['file'] & { windowRows: number } {
  const store = SqliteStore.open({ file, readonly: true })
  try {
    const db = store.db
    const parts = { readings: 0, rollups: 0, log: 0, broker: 0, other: 0 }
    for (const [name, bytes] of db.prepare<[string, number]>('SELECT name, sum(pgsize) FROM dbstat GROUP BY name').raw().all()) {
      if (name === 'readings') parts.readings += bytes
      else if (name.startsWith('rollup_')) parts.rollups += bytes
      else if (name === 'messages' || name === 'messages_ts') parts.log += bytes
      else if (name.startsWith('mqtt_')) parts.broker += bytes
      else parts.other += bytes
    }
    const count = (table: string) => db.prepare<number>(`SELECT count(*) FROM ${table}`).pluck().get() ?? 0
    let bytes = 0
    for (const f of [file, `${file}-wal`]) bytes += statSync(f, { throwIfNoEntry: false })?.size ?? 0
    const windowRows = db.prepare<number>('SELECT count(*) FROM readings WHERE ts >= ? AND ts < ?').pluck().get(from, to) ?? 0
    // the log keeps every message with its time: those that share a topic's millisecond with another are why readings were replaced
    const messages = count('messages')
    const distinct = db.prepare<number>('SELECT count(*) FROM (SELECT DISTINCT topic, ts FROM messages)').pluck().get() ?? messages
    return { bytes, readings: count('readings'), messages, sameMillisecondMessages: messages - distinct, parts, windowRows }
  } finally {
    void store.close()
  }
}

function median(values: number[]): number {
  return percentile(values, 50)
}

function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!
}

function spread(values: number[]): Spread {
  if (values.length === 0) return { median: NaN, mean: NaN, min: NaN, max: NaN }
  return {
    median: round1(median(values)),
    mean: round1(values.reduce((a, b) => a + b, 0) / values.length),
    min: round1(Math.min(...values)),
    max: round1(Math.max(...values)),
  }
}

function halves(values: number[]): { firstHalf: [number, number]; secondHalf: [number, number] } {
  const mid = Math.floor(values.length / 2)
  const range = (part: number[]): [number, number] => (part.length ? [round1(Math.min(...part)), round1(Math.max(...part))] : [NaN, NaN])
  return { firstHalf: range(values.slice(0, mid)), secondHalf: range(values.slice(mid)) }
}

function round1(n: number): number {
  return Math.round(n * 10) / 10
}

function fmt(n: number): string {
  return Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : 'n/a'
}
