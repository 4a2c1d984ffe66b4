import { mkdirSync, statSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname } from 'node:path'
import type { Logger } from 'pino'
import type { Bucket, DeviceHistory, Envelope, HistoryQuery, MessageProperties, MetricHistory, Reading } from '../protocol/index.ts'
import type { OnLimit } from '../protocol/limits.ts'
import { topicMatches } from '../protocol/topics.ts'
import { DEFAULT_MAX_POINTS, type ExportQuery, type HistoryStore, type LoggedEnvelope, type MessageQuery, type Saved } from './history.ts'
import { CSV_HEADER, csvField } from './memory.ts'
import { WriteQueue, type Op } from './write-queue.ts'

/** A better-sqlite3 statement, as far as Pulseboard uses it; `Row` is what the SQL selects (an array after `raw()`). */
export interface SqliteStatement<Row = unknown> {
  run(...params: unknown[]): { changes: number; lastInsertRowid: number | bigint }
  get(...params: unknown[]): Row | undefined
  all(...params: unknown[]): Row[]
  iterate(...params: unknown[]): IterableIterator<Row>
  /** Rows as arrays of column values instead of objects. */
  raw(toggle?: boolean): this
  /** Only the first column of each row. */
  pluck(toggle?: boolean): this
}

/**
 * A better-sqlite3 `Database`, as far as Pulseboard uses it. The package ships no types of its
 * own and `@types/better-sqlite3` is not a dependency, so this is the contract; it matches the
 * package's API.
 */
export interface SqliteDatabase {
  prepare<Row = unknown>(sql: string): SqliteStatement<Row>
  exec(sql: string): this
  pragma(source: string, options?: { simple?: boolean }): unknown
  /** Wraps `fn` in BEGIN/COMMIT, rolled back when it throws. */
  transaction<A extends unknown[], R>(fn: (...args: A) => R): ((...args: A) => R) & { immediate(...args: A): R }
  close(): this
  readonly open: boolean
  readonly inTransaction: boolean
  readonly name: string
  readonly readonly: boolean
}

type DatabaseConstructor = new (file: string, options?: { readonly?: boolean; fileMustExist?: boolean; timeout?: number }) => SqliteDatabase

// Not `require`: the server bundle's banner defines a top-level `require` of its own.
const requireCjs = createRequire(import.meta.url)
let Database: DatabaseConstructor | undefined
/** Loaded on first open, so that importing this module costs nothing for the memory-only server. */
function sqlite(): DatabaseConstructor {
  return (Database ??= requireCjs('better-sqlite3') as DatabaseConstructor)
}

/** The schema this code writes and reads, in `PRAGMA user_version`. */
export const SCHEMA_VERSION = 2
/** `PRAGMA application_id` of a Pulseboard database ("PlsB"): tells our file from another program's that also sets a user_version. */
const APPLICATION_ID = 0x506c7342
/** The tables this store owns. Others in the file (the broker's `mqtt_` ones) are left alone. */
const OUR_TABLES = ['series', 'readings', 'rollup_1m', 'rollup_1h', 'messages', 'devices', 'kv', 'series_forgotten'] as const
/** Tables another part of Pulseboard may keep in the same file: their presence does not make the file foreign. */
const SHARED_PREFIXES = ['mqtt_', 'sqlite_']

const MINUTE = 60_000
const HOUR = 3_600_000
/** Items written per transaction by the timer: about 125 ms at 400k rows/s, so a backlog (after a full disk) drains over a few ticks instead of stalling the event loop for seconds. */
const WRITE_CHUNK = 50_000
/** Rows one retention step deletes at most: a few tens of ms. */
const RETENTION_CHUNK = 10_000
/** Delay to the next retention step while there is more to delete. */
const RETENTION_BUSY_MS = 50
/**
 * Rows a bucketed query reads at most from a tier before it takes the next coarser one: at a few
 * million rows/s for SQLite's GROUP BY, about 20 ms. The coarser tier gives fewer, wider buckets,
 * never more than `maxPoints`.
 */
export const SCAN_ROWS = 50_000
/**
 * Rows read per page of a CSV export, over all its series, and lines per chunk it yields. Both
 * are small so that they die young: the command runs with a 1 MB semi-space, and a page or a
 * chunk that outlives a scavenge is promoted; at 10,000 of each a 1 M-row export grew the server
 * by 100 MiB of old generation, at 500 by about 30 MiB, and ran faster.
 */
const EXPORT_PAGE = 500
const EXPORT_CHUNK_LINES = 500
/** Log rows read per page while filtering in JS. */
const MESSAGE_PAGE = 1_000

/** Options of {@link SqliteStore.open}. */
export interface SqliteStoreOptions {
  /** The database file; its directory is created when missing. Other tables in it (the broker's `mqtt_` ones) are left alone. */
  file: string
  /** Readings and their rollups older than this are deleted. @default 2592000000 (30 days) */
  retentionMs?: number
  /** Logged messages older than this are deleted. @default 86400000 (24 h) */
  logRetentionMs?: number
  /** Logged messages kept at most; the oldest go first. Between two retention steps the log can exceed it by what arrives meanwhile. @default 1000000 */
  maxLogMessages?: number
  /** Readings and messages waiting to be written, at most; more are dropped and counted. @default 500000 */
  maxQueue?: number
  /** Bytes of logged messages (topic, payload, client id) waiting to be written, at most. @default 67108864 (64 MiB) */
  maxQueueBytes?: number
  /** How often what is queued is written, in one transaction. @default 200 */
  flushIntervalMs?: number
  /** How often retention runs when it has nothing left to delete. @default 30000 */
  retentionIntervalMs?: number
  /** Opens an existing database for reading only (a tool that reads another process's file); writes fail and are counted. @default false */
  readonly?: boolean
  logger?: Logger
  onLimit?: OnLimit
}

export const sqliteStoreDefaults = {
  retentionMs: 30 * 24 * HOUR,
  logRetentionMs: 24 * HOUR,
  maxLogMessages: 1_000_000,
  maxQueue: 500_000,
  maxQueueBytes: 64 * 2 ** 20,
  flushIntervalMs: 200,
  retentionIntervalMs: 30_000,
  readonly: false,
} satisfies Required<Omit<SqliteStoreOptions, 'file' | 'logger' | 'onLimit'>>

/** The database file cannot serve as the history store; the message is one line naming the file and the fix. */
export class StoreOpenError extends Error {
  override name = 'StoreOpenError'
  constructor(
    readonly file: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options)
  }
}

/** What `usage` reports: numbers only, cheap to read (a type, not an interface, so that it is a `Record<string, number>`). */
export type SqliteStoreUsage = {
  /** Readings and messages waiting to be written. */
  queueDepth: number
  /** Bytes of logged messages waiting to be written. */
  queueBytes: number
  /** Readings and messages dropped since the start: the queue was full (or the store closed). */
  dropped: number
  /** Transactions that failed (full disk, I/O error, read-only file); what they held stayed queued. */
  writeFailures: number
  /** 1 while writing fails, 0 when it works. */
  writeFailing: number
  /** The database file and its WAL, bytes. */
  dbBytes: number
  /** Readings kept, approximately (a reading that replaced another of the same millisecond counts twice). */
  readings: number
  /** Messages in the log, approximately. */
  messages: number
  /** Series (device, metric) kept. */
  series: number
  /** How long the last write took, ms. */
  lastWriteMs: number
}

type Row = [ts: number, value: number]
/** A row of the message log as a store selects it. */
export type MessageRow = [id: number, ts: number, topic: string, payload: string, base64: number, source: number, clientId: string | null, qos: number, retain: number, properties: string | null]
/** Min, max, sum and count of one series over one rollup bucket. */
interface Acc {
  start: number
  min: number
  max: number
  sum: number
  count: number
}

const SCHEMA = `
CREATE TABLE series (id INTEGER PRIMARY KEY AUTOINCREMENT, device TEXT NOT NULL, metric TEXT NOT NULL, UNIQUE (device, metric));
CREATE TABLE readings (series_id INTEGER NOT NULL, ts INTEGER NOT NULL, value REAL NOT NULL, PRIMARY KEY (series_id, ts)) WITHOUT ROWID;
CREATE TABLE rollup_1m (series_id INTEGER NOT NULL, start INTEGER NOT NULL, min REAL NOT NULL, max REAL NOT NULL, sum REAL NOT NULL, count INTEGER NOT NULL, PRIMARY KEY (series_id, start)) WITHOUT ROWID;
CREATE TABLE rollup_1h (series_id INTEGER NOT NULL, start INTEGER NOT NULL, min REAL NOT NULL, max REAL NOT NULL, sum REAL NOT NULL, count INTEGER NOT NULL, PRIMARY KEY (series_id, start)) WITHOUT ROWID;
CREATE TABLE messages (id INTEGER PRIMARY KEY AUTOINCREMENT, ts INTEGER NOT NULL, topic TEXT NOT NULL, payload TEXT NOT NULL, base64 INTEGER NOT NULL, source INTEGER NOT NULL, client_id TEXT, qos INTEGER NOT NULL, retain INTEGER NOT NULL, properties TEXT);
CREATE INDEX messages_ts ON messages (ts);
CREATE TABLE devices (id TEXT PRIMARY KEY, snapshot TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE series_forgotten (series_id INTEGER PRIMARY KEY);
`

/** One bucketed query per tier: raw readings, 1-minute rollups with raw edges, 1-hour rollups with minute and raw edges. */
const BUCKET_SQL = {
  raw: `SELECT ts - ts % :b AS b, min(value), max(value), avg(value) FROM readings
    WHERE series_id = :sid AND ts >= :lo AND ts <= :hi GROUP BY b ORDER BY b`,
  minute: `SELECT b, min(mn), max(mx), sum(s) / sum(c) FROM (
      SELECT ts - ts % :b AS b, value AS mn, value AS mx, value AS s, 1 AS c FROM readings WHERE series_id = :sid AND ts >= :lo AND ts < :m0
      UNION ALL SELECT start - start % :b, min, max, sum, count FROM rollup_1m WHERE series_id = :sid AND start >= :m0 AND start < :m1
      UNION ALL SELECT ts - ts % :b, value, value, value, 1 FROM readings WHERE series_id = :sid AND ts >= :m1 AND ts <= :hi
    ) GROUP BY b ORDER BY b`,
  hour: `SELECT b, min(mn), max(mx), sum(s) / sum(c) FROM (
      SELECT ts - ts % :b AS b, value AS mn, value AS mx, value AS s, 1 AS c FROM readings WHERE series_id = :sid AND ts >= :lo AND ts < :m0
      UNION ALL SELECT start - start % :b, min, max, sum, count FROM rollup_1m WHERE series_id = :sid AND start >= :m0 AND start < :h0
      UNION ALL SELECT start - start % :b, min, max, sum, count FROM rollup_1h WHERE series_id = :sid AND start >= :h0 AND start < :h1
      UNION ALL SELECT start - start % :b, min, max, sum, count FROM rollup_1m WHERE series_id = :sid AND start >= :h1 AND start < :m1
      UNION ALL SELECT ts - ts % :b, value, value, value, 1 FROM readings WHERE series_id = :sid AND ts >= :m1 AND ts <= :hi
    ) GROUP BY b ORDER BY b`,
} as const

/**
 * History on SQLite, the embedded default: readings (kept `retentionMs`) with 1-minute and
 * 1-hour rollups, the message log (payloads cut to `MAX_LOGGED_PAYLOAD_BYTES`, 4 KiB of text),
 * and what the registry and the formats saved.
 *
 * Writes only join a bounded queue; a timer writes it every `flushIntervalMs` in one transaction.
 * A write that fails (full disk, I/O error, read-only file) leaves the queue in place, is logged
 * once per spell and counted, and is retried on the next ticks. Reads see what has been written:
 * up to one `flushIntervalMs` behind the calls.
 */
export class SqliteStore implements HistoryStore {
  /** The connection, for the broker's persistence to keep its `mqtt_` tables in the same file. */
  readonly db: SqliteDatabase
  readonly file: string
  readonly #opts: Required<Omit<SqliteStoreOptions, 'file' | 'logger' | 'onLimit'>>
  readonly #logger: Logger | undefined
  readonly #onLimit: OnLimit
  readonly #stmt: ReturnType<typeof prepare>
  readonly #writeTx: (ops: readonly Op[], devices: ReadonlyMap<string, string>, formats: string | undefined) => { readings: number; lastMessageId: number }
  /** Series ids by device, then metric: what is committed (a failed transaction undoes its changes here too). */
  readonly #series = new Map<string, Map<string, number>>()
  /** The number of ids in `#series`, kept as it changes: `usage` is read on every scrape. */
  #seriesCount = 0

  readonly #queue: WriteQueue
  #writeFailures = 0
  /** Since when writing fails, or null. */
  #failingSince: number | null = null
  #pruneFailing = false
  #lastWriteMs = 0
  #readings = 0
  #dbBytes = 0
  #firstMessageId = 0
  #lastMessageId = 0

  #flushTimer: NodeJS.Timeout | undefined
  #pruneTimer: NodeJS.Timeout | undefined
  #closed = false
  #closing: Promise<void> | undefined

  private constructor(file: string, db: SqliteDatabase, opts: SqliteStoreOptions) {
    const { logger, onLimit, file: _file, ...rest } = opts
    this.file = file
    this.db = db
    this.#opts = { ...sqliteStoreDefaults, ...rest }
    this.#logger = logger
    this.#onLimit = onLimit ?? (() => {})
    this.#queue = new WriteQueue({ ...this.#opts, onLimit: this.#onLimit, failing: () => this.#failingSince !== null, logger })
    this.#stmt = prepare(db)
    this.#writeTx = db.transaction((ops: readonly Op[], devices: ReadonlyMap<string, string>, formats: string | undefined) =>
      this.#write(ops, devices, formats),
    ).immediate
    for (const [id, device, metric] of this.#stmt.allSeries.all()) {
      this.#seriesOf(device).set(metric, id)
      this.#seriesCount++
    }
    this.#readings = Number(this.#stmt.getKv.get('readings') ?? 0)
    this.#firstMessageId = this.#stmt.firstMessageId.get() ?? 0
    this.#lastMessageId = this.#stmt.lastMessageId.get() ?? 0
    this.#refreshSize()
    this.#flushTimer = setInterval(() => this.#tick(), this.#opts.flushIntervalMs)
    this.#flushTimer.unref()
    this.#schedulePrune(Math.min(this.#opts.retentionIntervalMs, 5_000))
  }

  /**
   * Opens (or creates) the database. Throws a {@link StoreOpenError} when the file is not a
   * Pulseboard database, is damaged, is of a newer schema, or cannot be written.
   */
  static open(opts: SqliteStoreOptions): SqliteStore {
    const { file } = opts
    const readonly = opts.readonly ?? false
    const notOurs = (cause?: unknown) =>
      new StoreOpenError(file, `${file} is not a Pulseboard database (or is damaged); move it aside or choose another --data-dir`, { cause })
    const cannot = (cause: unknown) =>
      new StoreOpenError(file, `${file} cannot be opened for writing (${reason(cause)}); make --data-dir writable or choose another --data-dir`, { cause })
    if (!readonly) {
      try {
        mkdirSync(dirname(file), { recursive: true })
      } catch (err) {
        throw cannot(err)
      }
    }
    let db: SqliteDatabase | undefined
    try {
      const conn = (db = new (sqlite())(file, { readonly, fileMustExist: readonly, timeout: 200 }))
      // the first read of the header: a file that is not SQLite fails here (SQLITE_NOTADB)
      const version = Number(db.pragma('user_version', { simple: true }))
      const appId = Number(db.pragma('application_id', { simple: true }))
      const tables = new Set(db.prepare<string>(`SELECT name FROM sqlite_master WHERE type = 'table'`).pluck().all())
      const foreign = [...tables].filter((t) => !(OUR_TABLES as readonly string[]).includes(t) && !SHARED_PREFIXES.some((p) => t.startsWith(p)))
      if (version === 0 && appId === 0) {
        // new, or holding only what other parts of Pulseboard keep here
        if (foreign.length > 0 || OUR_TABLES.some((t) => tables.has(t))) throw notOurs()
        if (readonly) throw cannot(new Error('it has no history tables yet and is opened read-only'))
        db.pragma('journal_mode = WAL')
        conn
          .transaction(() => {
            conn.exec(SCHEMA)
            conn.pragma(`application_id = ${APPLICATION_ID}`)
            conn.pragma(`user_version = ${SCHEMA_VERSION}`)
          })
          .immediate()
      } else if (appId !== APPLICATION_ID) {
        throw notOurs()
      } else if (version > SCHEMA_VERSION) {
        throw new StoreOpenError(
          file,
          `${file} was written by a newer Pulseboard (schema ${version}, this one knows ${SCHEMA_VERSION}); upgrade Pulseboard or choose another --data-dir`,
        )
      } else if (OUR_TABLES.some((t) => !tables.has(t))) {
        throw notOurs()
      } else if (version < SCHEMA_VERSION) {
        if (readonly) throw cannot(new Error(`it is of schema ${version}, and opened read-only; run Pulseboard on it once to upgrade it`))
        db.pragma('journal_mode = WAL')
        conn.transaction(() => upgrade(conn, version)).immediate()
      } else if (!readonly) {
        db.pragma('journal_mode = WAL')
      }
      // NORMAL under WAL: a power cut can lose the last transactions, never corrupt the file
      db.pragma('synchronous = NORMAL')
      // Readings are keyed by series first, so a transaction that touches 2,000 series dirties
      // 2,000 pages; checkpointing every 1,000 pages (the default) then ran on nearly every
      // commit. Measured here at 2,000 series per transaction: 16 MiB between checkpoints cut the
      // median commit from 49 to 17 ms.
      db.pragma('wal_autocheckpoint = 4000')
      // the WAL is truncated back to this after a checkpoint, so a burst does not leave it large
      db.pragma(`journal_size_limit = ${64 * 2 ** 20}`)
      return new SqliteStore(file, db, opts)
    } catch (err) {
      db?.close()
      if (err instanceof StoreOpenError) throw err
      const code = codeOf(err)
      if (code === 'SQLITE_NOTADB' || code?.startsWith('SQLITE_CORRUPT')) throw notOurs(err)
      throw cannot(err)
    }
  }

  get usage(): SqliteStoreUsage {
    return {
      queueDepth: this.#queue.depth,
      queueBytes: this.#queue.bytes,
      dropped: this.#queue.dropped,
      writeFailures: this.#writeFailures,
      writeFailing: this.#failingSince === null ? 0 : 1,
      dbBytes: this.#dbBytes,
      readings: this.#readings,
      messages: this.#lastMessageId === 0 ? 0 : this.#lastMessageId - this.#firstMessageId + 1,
      series: this.#seriesCount,
      lastWriteMs: this.#lastWriteMs,
    }
  }

  append(batch: readonly Reading[]): void {
    this.#queue.append(batch)
  }

  log(batch: readonly Envelope[]): void {
    this.#queue.log(batch)
  }

  saveDevices(devices: readonly Saved[]): void {
    this.#queue.saveDevices(devices)
  }

  saveFormats(state: unknown): void {
    this.#queue.saveFormats(state)
  }

  forget(device: string): void {
    this.#queue.forget(device)
  }

  async query(q: HistoryQuery): Promise<DeviceHistory> {
    const now = Date.now()
    const from = q.from ?? now - this.#opts.retentionMs
    const to = q.to ?? now
    const maxPoints = Math.max(1, Math.floor(q.maxPoints ?? DEFAULT_MAX_POINTS))
    const out: DeviceHistory = { device: q.device, from, to, metrics: {} }
    const series = this.#series.get(q.device)
    if (!series) return out
    for (const name of q.metrics ?? [...series.keys()]) {
      const id = series.get(name)
      if (id !== undefined) out.metrics[name] = this.#history(id, from, to, maxPoints)
    }
    return out
  }

  async latest(device: string): Promise<Record<string, { ts: number; value: number }>> {
    const out: Record<string, { ts: number; value: number }> = {}
    for (const [name, id] of this.#series.get(device) ?? []) {
      const last = this.#stmt.lastPoint.get(id)
      if (last) out[name] = { ts: last[0], value: last[1] }
    }
    return out
  }

  async messages(q: MessageQuery): Promise<LoggedEnvelope[]> {
    const limit = Math.max(0, Math.floor(q.limit))
    const out: LoggedEnvelope[] = []
    if (limit === 0) return out
    const filter = q.filter ?? '#'
    const prefix = literalPrefix(filter)
    // (ts, id) below the cursor; no `before` is a cursor above everything
    let ts = q.before ?? Number.MAX_SAFE_INTEGER
    let id = q.before === undefined ? Number.MAX_SAFE_INTEGER : (q.beforeId ?? 0)
    // pages of at most 10k rows whatever `limit` asks: one read never holds the whole log
    const page = Math.min(10 * MESSAGE_PAGE, filter === '#' ? limit : Math.max(limit, MESSAGE_PAGE))
    for (;;) {
      const rows = this.#stmt.messages.all({ ts, id, prefix, n: page })
      for (const row of rows) {
        ;[id, ts] = row
        if (topicMatches(filter, row[2])) out.push(envelopeOf(row))
        if (out.length === limit) return out
      }
      if (rows.length < page) return out
      // a filter that matches little can page through much of the log: let the event loop in between
      await new Promise((resolve) => setImmediate(resolve))
    }
  }

  async *exportCsv(q: ExportQuery): AsyncIterable<string> {
    yield CSV_HEADER
    const series = this.#series.get(q.device)
    if (!series) return
    const metrics = (q.metrics ?? [...series.keys()]).filter((m) => series.has(m))
    if (metrics.length === 0) return
    const to = q.to ?? Date.now()
    const pageSize = Math.max(100, Math.ceil(EXPORT_PAGE / metrics.length))
    // one keyset cursor per series, merged by time: the key is (series_id, ts), so one query
    // ordered by ts over several series would sort the whole range for every page
    const after = q.from === undefined ? Number.MIN_SAFE_INTEGER : Math.ceil(q.from) - 1
    const cursors = metrics.map((m) => ({ id: series.get(m)!, name: csvField(m), after, rows: [] as Row[], at: 0, done: false }))
    const refill = (c: (typeof cursors)[number]) => {
      c.rows = this.#stmt.exportPage.all(c.id, c.after, to, pageSize)
      c.at = 0
      if (c.rows.length < pageSize) c.done = true
      if (c.rows.length > 0) c.after = c.rows[c.rows.length - 1]![0]
    }
    for (const c of cursors) refill(c)
    let lines: string[] = []
    for (;;) {
      let pick: (typeof cursors)[number] | undefined
      for (const c of cursors) {
        if (c.at === c.rows.length) {
          if (c.done) continue
          refill(c)
          if (c.rows.length === 0) continue
        }
        if (!pick || c.rows[c.at]![0] < pick.rows[pick.at]![0]) pick = c
      }
      if (!pick) break
      const [ts, value] = pick.rows[pick.at++]!
      lines.push(`${ts},${pick.name},${value}\r\n`)
      if (lines.length >= EXPORT_CHUNK_LINES) {
        yield lines.join('')
        lines = []
        // an async generator resumes in a microtask: without this, I/O would wait for the whole export
        await new Promise((resolve) => setImmediate(resolve))
      }
    }
    if (lines.length > 0) yield lines.join('')
  }

  async loadDevices(): Promise<Saved[]> {
    const out: Saved[] = []
    for (const [id, json] of this.#stmt.allDevices.all()) {
      const snapshot = parseJson(json)
      if (snapshot.ok) out.push({ id, snapshot: snapshot.value })
      else this.#logger?.warn({ device: id }, 'history store: a saved device is not JSON; skipped')
    }
    return out
  }

  async loadFormats(): Promise<unknown> {
    const json = this.#stmt.getKv.get('formats')
    if (json === undefined) return undefined
    const state = parseJson(json)
    if (state.ok) return state.value
    this.#logger?.warn('history store: the saved formats state is not JSON; ignored')
    return undefined
  }

  async flush(): Promise<void> {
    // what is queued now, in chunks: writes that arrive meanwhile do not keep it going forever
    for (let chunks = Math.ceil(this.#queue.depth / WRITE_CHUNK) + 1; chunks > 0 && this.#queue.pending(); chunks--) {
      if (!this.#writeOut(WRITE_CHUNK)) return
      if (this.#queue.pending()) await new Promise((resolve) => setImmediate(resolve))
    }
    this.#refreshSize()
  }

  /**
   * Runs one retention step now: deletes at most about 10,000 expired rows (readings, rollups,
   * messages, forgotten series), a few tens of ms. Returns how many; the timer calls it every
   * `retentionIntervalMs`, and every 50 ms while a step finds a full chunk to delete.
   */
  prune(now = Date.now()): number {
    if (this.#closed) return 0
    try {
      const deleted = this.db.transaction(() => this.#prune(now)).immediate()
      if (this.#pruneFailing) this.#logger?.info('history store: retention works again')
      this.#pruneFailing = false
      return deleted
    } catch (err) {
      if (!this.#pruneFailing) this.#logger?.warn({ err, code: codeOf(err) }, 'history store: retention failed; retrying later')
      this.#pruneFailing = true
      return 0
    }
  }

  close(): Promise<void> {
    return (this.#closing ??= this.#close())
  }

  async #close(): Promise<void> {
    clearInterval(this.#flushTimer)
    clearTimeout(this.#pruneTimer)
    await this.flush()
    this.#closed = true
    this.#queue.close()
    clearTimeout(this.#pruneTimer)
    if (this.#queue.depth > 0) this.#logger?.warn({ queued: this.#queue.depth }, 'history store: closed while writing failed; what was queued is lost')
    this.db.close()
  }

  #seriesOf(device: string): Map<string, number> {
    let metrics = this.#series.get(device)
    if (!metrics) this.#series.set(device, (metrics = new Map()))
    return metrics
  }

  #tick(): void {
    if (this.#queue.pending()) this.#writeOut(WRITE_CHUNK)
    this.#refreshSize()
    // a log filling faster than retention runs is trimmed without waiting for the slow timer
    const messages = this.#lastMessageId - this.#firstMessageId + 1
    if (this.#lastMessageId > 0 && messages > this.#opts.maxLogMessages + RETENTION_CHUNK && !this.#pruneFailing) this.prune()
  }

  /** Writes up to `max` queued items (and every pending snapshot) in one transaction; returns whether it worked. */
  #writeOut(max: number): boolean {
    if (this.#closed) return false
    const batch = this.#queue.take(max)
    const { ops } = batch
    const started = performance.now()
    try {
      const { readings, lastMessageId } = this.#writeTx(ops, batch.devices, batch.formats)
      this.#readings = readings
      if (lastMessageId > 0) {
        if (this.#firstMessageId === 0) this.#firstMessageId = lastMessageId - ops.reduce((n, op) => n + (op.kind === 'log' ? op.batch.length : 0), 0) + 1
        this.#lastMessageId = lastMessageId
      }
    } catch (err) {
      this.#writeFailures++
      if (this.#failingSince === null) {
        this.#failingSince = Date.now()
        this.#logger?.error(
          { err, code: codeOf(err), queued: this.#queue.depth },
          'history store: writing failed (full disk, I/O error or read-only file?); keeping what is queued and retrying',
        )
      }
      this.#queue.failed(batch)
      return false
    } finally {
      this.#lastWriteMs = performance.now() - started
    }
    this.#queue.written(batch)
    if (this.#failingSince !== null) {
      this.#logger?.info({ failures: this.#writeFailures, failedForMs: Date.now() - this.#failingSince }, 'history store: writing works again')
      this.#failingSince = null
    }
    return true
  }

  /** The body of the write transaction. Throws to roll back; the series cache is put back as it was. */
  #write(ops: readonly Op[], devices: ReadonlyMap<string, string>, formats: string | undefined): { readings: number; lastMessageId: number } {
    const s = this.#stmt
    const undo: (() => void)[] = []
    let readings = this.#readings
    let lastMessageId = 0
    try {
      for (const op of ops) {
        if (op.kind === 'readings') readings += this.#writeReadings(op.batch, undo)
        else if (op.kind === 'log') {
          for (const m of op.batch) lastMessageId = Number(s.insertMessage.run(m.ts, m.topic, m.payload, m.base64, m.source, m.clientId, m.qos, m.retain, m.properties).lastInsertRowid)
        } else {
          const metrics = this.#series.get(op.device)
          if (metrics) {
            for (const id of metrics.values()) {
              s.markForgotten.run(id)
              s.deleteSeries.run(id)
            }
            this.#series.delete(op.device)
            this.#seriesCount -= metrics.size
            undo.push(() => {
              this.#series.set(op.device, metrics)
              this.#seriesCount += metrics.size
            })
          }
          s.deleteDevice.run(op.device)
        }
      }
      for (const [id, json] of devices) s.putDevice.run(id, json)
      if (formats !== undefined) s.putKv.run('formats', formats)
      s.putKv.run('readings', String(readings))
      return { readings, lastMessageId }
    } catch (err) {
      for (let i = undo.length - 1; i >= 0; i--) undo[i]!()
      throw err
    }
  }

  /** Inserts readings and folds them into the rollups; returns how many were written. */
  #writeReadings(batch: readonly Reading[], undo: (() => void)[]): number {
    const s = this.#stmt
    // the bucket each series is in, per rollup: readings of one series mostly come in time order,
    // so one upsert per series and bucket rather than per reading
    const minutes = new Map<number, Acc>()
    const hours = new Map<number, Acc>()
    let written = 0
    for (const r of batch) {
      // a NaN would bind as NULL and fail every retry of the transaction: keep the queue moving
      if (!Number.isFinite(r.value) || !Number.isFinite(r.ts)) continue
      const ts = Math.trunc(r.ts)
      let metrics = this.#series.get(r.device)
      let id = metrics?.get(r.metric)
      if (id === undefined) {
        id = s.insertSeries.get(r.device, r.metric)!
        if (!metrics) this.#series.set(r.device, (metrics = new Map()))
        const m = metrics
        const created = m.size === 0
        m.set(r.metric, id)
        this.#seriesCount++
        undo.push(() => {
          this.#seriesCount--
          m.delete(r.metric)
          if (created) this.#series.delete(r.device)
        })
      }
      // INSERT OR REPLACE: a second reading of the same millisecond replaces the first
      s.insertReading.run(id, ts, r.value)
      written++
      fold(minutes, id, ts - (ts % MINUTE), r.value, s.upsertMinute)
      fold(hours, id, ts - (ts % HOUR), r.value, s.upsertHour)
    }
    for (const [id, a] of minutes) s.upsertMinute.run(id, a.start, a.min, a.max, a.sum, a.count)
    for (const [id, a] of hours) s.upsertHour.run(id, a.start, a.min, a.max, a.sum, a.count)
    return written
  }

  /** One retention step, in a transaction: returns the rows deleted, at most about `RETENTION_CHUNK`. */
  #prune(now: number): number {
    const s = this.#stmt
    let budget = RETENTION_CHUNK
    let readingsDeleted = 0
    // forgotten series first: their rows are invisible already, and a device can hold millions
    for (const id of s.forgottenSeries.all(8)) {
      const n = deleteChunk(s.readingsUpTo, s.deleteReadingsUpTo, s.deleteReadingsBefore, id, Number.MAX_SAFE_INTEGER, budget)
      readingsDeleted += n
      budget -= n
      if (budget > 0) budget -= deleteChunk(s.minutesUpTo, s.deleteMinutesUpTo, s.deleteMinutesBefore, id, Number.MAX_SAFE_INTEGER, budget)
      if (budget > 0) budget -= deleteChunk(s.hoursUpTo, s.deleteHoursUpTo, s.deleteHoursBefore, id, Number.MAX_SAFE_INTEGER, budget)
      if (s.hasReadings.get(id) === undefined && s.hasMinutes.get(id) === undefined && s.hasHours.get(id) === undefined) s.unmarkForgotten.run(id)
      if (budget <= 0) break
    }
    const cutoff = now - this.#opts.retentionMs
    for (const metrics of this.#series.values()) {
      if (budget <= 0) break
      for (const id of metrics.values()) {
        if (budget <= 0) break
        const n = deleteChunk(s.readingsUpTo, s.deleteReadingsUpTo, s.deleteReadingsBefore, id, cutoff, budget)
        readingsDeleted += n
        budget -= n
        // a rollup bucket goes once all of it is older than the cutoff
        if (budget > 0) budget -= deleteChunk(s.minutesUpTo, s.deleteMinutesUpTo, s.deleteMinutesBefore, id, cutoff - MINUTE + 1, budget)
        if (budget > 0) budget -= deleteChunk(s.hoursUpTo, s.deleteHoursUpTo, s.deleteHoursBefore, id, cutoff - HOUR + 1, budget)
      }
    }
    if (budget > 0) budget -= s.deleteOldMessages.run(now - this.#opts.logRetentionMs, budget).changes
    const overflowUpTo = this.#lastMessageId - this.#opts.maxLogMessages
    if (budget > 0 && overflowUpTo >= this.#firstMessageId) budget -= s.deleteMessagesUpTo.run(overflowUpTo, budget).changes
    if (readingsDeleted > 0) {
      this.#readings = Math.max(0, this.#readings - readingsDeleted)
      s.putKv.run('readings', String(this.#readings))
    }
    this.#firstMessageId = s.firstMessageId.get() ?? this.#lastMessageId + 1
    return RETENTION_CHUNK - budget
  }

  #schedulePrune(delay: number): void {
    if (this.#closed) return
    this.#pruneTimer = setTimeout(() => {
      const deleted = this.prune()
      this.#schedulePrune(deleted >= RETENTION_CHUNK ? RETENTION_BUSY_MS : this.#opts.retentionIntervalMs)
    }, delay)
    this.#pruneTimer.unref()
  }

  #refreshSize(): void {
    let bytes = 0
    for (const f of [this.file, `${this.file}-wal`]) {
      try {
        bytes += statSync(f).size
      } catch {
        // no WAL until the first write
      }
    }
    this.#dbBytes = bytes
  }

  /** One metric over [from, to]: raw points when at most `maxPoints`, otherwise buckets from the finest tier that is cheap enough. */
  #history(id: number, from: number, to: number, maxPoints: number): MetricHistory {
    const s = this.#stmt
    if (s.countUpTo.get(id, from, to, maxPoints + 1)! <= maxPoints) return { points: s.rawRange.all(id, from, to) }
    // bucket over the data actually in the range, so that sparse data gets fine buckets
    const lo = s.firstIn.get(id, from, to)!
    const hi = s.lastIn.get(id, from, to)!
    const rows = tierNeedsCount(lo, hi, maxPoints) ? s.countUpTo.get(id, lo, hi, SCAN_ROWS + 1)! : 0
    const { unit, bucketMs: b, m0, m1, h0, h1 } = planBuckets(lo, hi, maxPoints, rows)
    // b bound as BigInt: a JS number binds as REAL, and `ts % b` must stay integer arithmetic
    const params = { sid: id, b: BigInt(b), lo, hi, m0, m1, h0, h1 }
    const stmt = unit === 1 ? s.bucketsRaw : unit === MINUTE ? s.bucketsMinute : s.bucketsHour
    return { bucketMs: b, buckets: stmt.all(params) }
  }
}

/** Folds a reading into its series' current bucket, upserting the previous bucket when the reading starts a new one. */
function fold(accs: Map<number, Acc>, id: number, start: number, value: number, upsert: SqliteStatement): void {
  const a = accs.get(id)
  if (a && a.start === start) {
    if (value < a.min) a.min = value
    if (value > a.max) a.max = value
    a.sum += value
    a.count++
    return
  }
  if (a) upsert.run(id, a.start, a.min, a.max, a.sum, a.count)
  accs.set(id, { start, min: value, max: value, sum: value, count: 1 })
}

/**
 * Deletes at most `limit` rows of one series older than `before` (exclusive), oldest first, by key
 * range: finds the key of the limit-th row, then deletes up to it.
 */
function deleteChunk(
  nth: SqliteStatement<number>,
  deleteUpTo: SqliteStatement,
  deleteBefore: SqliteStatement,
  id: number,
  before: number,
  limit: number,
): number {
  const last = nth.get(id, before, Math.max(0, limit - 1))
  return last === undefined ? deleteBefore.run(id, before).changes : deleteUpTo.run(id, last).changes
}

function prepare(db: SqliteDatabase) {
  const rollup = (table: string) =>
    db.prepare(`INSERT INTO ${table} (series_id, start, min, max, sum, count) VALUES (?, ?, ?, ?, ?, ?)
      ON CONFLICT (series_id, start) DO UPDATE SET min = min(min, excluded.min), max = max(max, excluded.max), sum = sum + excluded.sum, count = count + excluded.count`)
  const chunk = (table: string, key: string) => ({
    nth: db.prepare<number>(`SELECT ${key} FROM ${table} WHERE series_id = ? AND ${key} < ? ORDER BY ${key} LIMIT 1 OFFSET ?`).pluck(),
    upTo: db.prepare(`DELETE FROM ${table} WHERE series_id = ? AND ${key} <= ?`),
    before: db.prepare(`DELETE FROM ${table} WHERE series_id = ? AND ${key} < ?`),
    any: db.prepare<number>(`SELECT 1 FROM ${table} WHERE series_id = ? LIMIT 1`).pluck(),
  })
  const readings = chunk('readings', 'ts')
  const minutes = chunk('rollup_1m', 'start')
  const hours = chunk('rollup_1h', 'start')
  return {
    allSeries: db.prepare<[number, string, string]>('SELECT id, device, metric FROM series').raw(),
    insertSeries: db.prepare<number>('INSERT INTO series (device, metric) VALUES (?, ?) RETURNING id').pluck(),
    deleteSeries: db.prepare('DELETE FROM series WHERE id = ?'),
    markForgotten: db.prepare('INSERT OR IGNORE INTO series_forgotten (series_id) VALUES (?)'),
    unmarkForgotten: db.prepare('DELETE FROM series_forgotten WHERE series_id = ?'),
    forgottenSeries: db.prepare<number>('SELECT series_id FROM series_forgotten LIMIT ?').pluck(),
    insertReading: db.prepare('INSERT OR REPLACE INTO readings (series_id, ts, value) VALUES (?, ?, ?)'),
    upsertMinute: rollup('rollup_1m'),
    upsertHour: rollup('rollup_1h'),
    insertMessage: db.prepare('INSERT INTO messages (ts, topic, payload, base64, source, client_id, qos, retain, properties) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)'),
    firstMessageId: db.prepare<number>('SELECT min(id) FROM messages').pluck(),
    lastMessageId: db.prepare<number>('SELECT max(id) FROM messages').pluck(),
    deleteOldMessages: db.prepare('DELETE FROM messages WHERE id IN (SELECT id FROM messages WHERE ts < ? ORDER BY ts LIMIT ?)'),
    deleteMessagesUpTo: db.prepare('DELETE FROM messages WHERE id IN (SELECT id FROM messages WHERE id <= ? ORDER BY id LIMIT ?)'),
    messages: db
      .prepare<MessageRow>(
        `SELECT id, ts, topic, payload, base64, source, client_id, qos, retain, properties FROM messages
        WHERE (ts, id) < (:ts, :id) AND substr(topic, 1, length(:prefix)) = :prefix
        ORDER BY ts DESC, id DESC LIMIT :n`,
      )
      .raw(),
    putDevice: db.prepare('INSERT OR REPLACE INTO devices (id, snapshot) VALUES (?, ?)'),
    deleteDevice: db.prepare('DELETE FROM devices WHERE id = ?'),
    allDevices: db.prepare<[string, string]>('SELECT id, snapshot FROM devices ORDER BY id').raw(),
    putKv: db.prepare('INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)'),
    getKv: db.prepare<string>('SELECT value FROM kv WHERE key = ?').pluck(),
    lastPoint: db.prepare<Row>('SELECT ts, value FROM readings WHERE series_id = ? ORDER BY ts DESC LIMIT 1').raw(),
    countUpTo: db.prepare<number>('SELECT count(*) FROM (SELECT 1 FROM readings WHERE series_id = ? AND ts >= ? AND ts <= ? LIMIT ?)').pluck(),
    rawRange: db.prepare<Row>('SELECT ts, value FROM readings WHERE series_id = ? AND ts >= ? AND ts <= ? ORDER BY ts').raw(),
    firstIn: db.prepare<number>('SELECT ts FROM readings WHERE series_id = ? AND ts >= ? AND ts <= ? ORDER BY ts LIMIT 1').pluck(),
    lastIn: db.prepare<number>('SELECT ts FROM readings WHERE series_id = ? AND ts >= ? AND ts <= ? ORDER BY ts DESC LIMIT 1').pluck(),
    exportPage: db.prepare<Row>('SELECT ts, value FROM readings WHERE series_id = ? AND ts > ? AND ts <= ? ORDER BY ts LIMIT ?').raw(),
    bucketsRaw: db.prepare<Bucket>(BUCKET_SQL.raw).raw(),
    bucketsMinute: db.prepare<Bucket>(BUCKET_SQL.minute).raw(),
    bucketsHour: db.prepare<Bucket>(BUCKET_SQL.hour).raw(),
    readingsUpTo: readings.nth,
    deleteReadingsUpTo: readings.upTo,
    deleteReadingsBefore: readings.before,
    hasReadings: readings.any,
    minutesUpTo: minutes.nth,
    deleteMinutesUpTo: minutes.upTo,
    deleteMinutesBefore: minutes.before,
    hasMinutes: minutes.any,
    hoursUpTo: hours.nth,
    deleteHoursUpTo: hours.upTo,
    deleteHoursBefore: hours.before,
    hasHours: hours.any,
  }
}

/** A logged message as a store's row gives it back. */
export function envelopeOf([id, ts, topic, payload, base64, source, clientId, qos, retain, properties]: MessageRow): LoggedEnvelope {
  const e: LoggedEnvelope = { id, topic, payload, ts, source: source === 1 ? 'socket' : 'mqtt', qos: qos === 2 ? 2 : qos === 1 ? 1 : 0, retain: retain === 1 }
  if (clientId !== null) e.clientId = clientId
  if (base64 === 1) e.encoding = 'base64'
  if (properties !== null) e.properties = JSON.parse(properties) as MessageProperties
  return e
}

/** Brings a file of an older schema to this one, in the transaction it is given. */
function upgrade(db: SqliteDatabase, from: number): void {
  // 2: MQTT 5 properties in the message log
  if (from < 2) db.exec('ALTER TABLE messages ADD COLUMN properties TEXT')
  db.pragma(`user_version = ${SCHEMA_VERSION}`)
}

/** The tier a bucketed query reads, the width of its buckets, and where each tier starts and ends: see {@link planBuckets}. */
export interface BucketPlan {
  /** 1: raw readings; 60000: 1-minute rollups with raw edges; 3600000: 1-hour rollups with minute and raw edges. */
  unit: number
  bucketMs: number
  /** Whole minutes from m0 to m1 (exclusive) come from the minute rollup, or finer. */
  m0: number
  m1: number
  /** Whole hours from h0 to h1 (exclusive) come from the hour rollup. */
  h0: number
  h1: number
}

/** Whether {@link planBuckets} needs the count of the raw rows: only when the span alone does not rule the raw tier out. */
export function tierNeedsCount(lo: number, hi: number, maxPoints: number): boolean {
  return hi - lo + 1 <= maxPoints * MINUTE
}

/**
 * The tier and bucket width of a bucketed query over the readings from `lo` to `hi` (the first and
 * last in the range): the finest tier that is cheap enough, buckets at whole multiples of their
 * width, at most `maxPoints` of them. `rows` is the count of raw rows in [lo, hi] up to
 * `SCAN_ROWS + 1`, when {@link tierNeedsCount} says it is needed (any number otherwise).
 */
export function planBuckets(lo: number, hi: number, maxPoints: number, rows: number): BucketPlan {
  const span = hi - lo + 1
  let unit = 1
  if (span > maxPoints * MINUTE || rows > SCAN_ROWS) unit = MINUTE
  if (unit === MINUTE && (span > maxPoints * HOUR || span / MINUTE > SCAN_ROWS)) unit = HOUR
  let b = Math.ceil(Math.ceil(span / maxPoints) / unit) * unit
  // starts are whole multiples of b, so the first and last can be partial: widen until they fit
  while (Math.floor(hi / b) - Math.floor(lo / b) + 1 > maxPoints) b += unit
  const m0 = ceilTo(lo, MINUTE)
  const m1 = Math.max(m0, floorTo(hi + 1, MINUTE))
  const h0 = Math.min(ceilTo(m0, HOUR), m1)
  const h1 = Math.max(h0, floorTo(m1, HOUR))
  return { unit, bucketMs: b, m0, m1, h0, h1 }
}

/** The levels of a filter before its first wildcard: every matching topic starts with them. */
export function literalPrefix(filter: string): string {
  const levels = filter.split('/')
  const wild = levels.findIndex((l) => l === '+' || l === '#')
  // `a/#` matches `a` itself [MQTT-4.7.1-2], so the prefix stops before the separator
  return wild < 0 ? filter : levels.slice(0, wild).join('/')
}

function ceilTo(n: number, unit: number): number {
  return Math.ceil(n / unit) * unit
}

function floorTo(n: number, unit: number): number {
  return Math.floor(n / unit) * unit
}

export function parseJson(json: string): { ok: true; value: unknown } | { ok: false } {
  try {
    return { ok: true, value: JSON.parse(json) as unknown }
  } catch {
    return { ok: false }
  }
}

export function codeOf(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string' ? err.code : undefined
}

/** An error as a few words on one line. */
export function reason(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err)
  const code = codeOf(err)
  const line = text.replace(/\s+/g, ' ').trim()
  return code && !line.includes(code) ? `${code}: ${line}` : line
}
