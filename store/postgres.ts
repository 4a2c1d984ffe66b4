import type { Logger } from 'pino'
import type { ClientBase, CustomTypesConfig, Pool, PoolClient, PoolConfig } from 'pg'
import type { Bucket, DeviceHistory, Envelope, HistoryQuery, MetricHistory, Reading } from '../protocol/index.ts'
import type { OnLimit } from '../protocol/limits.ts'
import { topicMatches } from '../protocol/topics.ts'
import { DEFAULT_MAX_POINTS, type ExportQuery, type HistoryStore, type LoggedEnvelope, type MessageQuery, type Saved } from './history.ts'
import { CSV_HEADER, csvField } from './memory.ts'
import {
  SCAN_ROWS,
  StoreOpenError,
  codeOf,
  envelopeOf,
  literalPrefix,
  parseJson,
  planBuckets,
  reason,
  sqliteStoreDefaults,
  tierNeedsCount,
  type MessageRow,
  type SqliteStoreOptions,
} from './sqlite.ts'
import { WriteQueue, type Op, type QueuedMessage } from './write-queue.ts'

/** The schema this code writes and reads, in `pulseboard_meta` (`schema`). */
export const POSTGRES_SCHEMA_VERSION = 1
/** The tables this store owns; a database holding some of them without `pulseboard_meta` is someone else's. */
const OUR_TABLES = ['pulseboard_meta', 'series', 'series_forgotten', 'readings', 'rollup_1m', 'rollup_1h', 'messages', 'devices', 'kv'] as const
/** The tables partitioned by day, on `ts` or `start`: a day's readings and rollups are dropped together. */
const PARTITIONED = ['readings', 'rollup_1m', 'rollup_1h'] as const
/** Advisory lock keys ("PlsB" and one more): schema and partition DDL, one node at a time; retention, one node at a time. */
const DDL_LOCK = 0x506c7342
const RETENTION_LOCK = 0x506c7343

const MINUTE = 60_000
const HOUR = 3_600_000
const DAY = 24 * HOUR
/** Readings whose `ts` is outside years 1970 to 9999 are skipped, like non-finite ones: their day would have no partition name. */
const MAX_TS = Date.UTC(10_000, 0, 1) - 1
/** Items written per transaction: a few hundred ms of PostgreSQL's time, so that a backlog drains over a few ticks. */
const WRITE_CHUNK = 20_000
/** Rows one retention step deletes at most (forgotten series, the log). */
const RETENTION_CHUNK = 10_000
const RETENTION_BUSY_MS = 50
/** Log rows read per page while filtering in JS. */
const MESSAGE_PAGE = 1_000
/** How often `usage` reads the database's size and counts. */
const USAGE_REFRESH_MS = 10_000
/** While writing fails, the failure is logged again at most this often. */
const FAILURE_LOG_MS = 10_000
/** How long DDL (creating a day's partitions) waits for a lock before it gives up and is retried. */
const DDL_LOCK_TIMEOUT = '2s'
const INT8_OID = 20
const NUMERIC_OID = 1700

/** Options of {@link PostgresStore.open}: those of SQLite that apply, with their defaults, and the database's URL. */
export interface PostgresStoreOptions extends Omit<SqliteStoreOptions, 'file' | 'readonly'> {
  /** `postgres://user:password@host:5432/database`, as `pg` reads it (`?sslmode=require`, `?host=/run/postgresql` ...). */
  url: string
  /** Connections for reads, exports and retention; writes have one of their own. @default 4 */
  maxReadConnections?: number
  /** How long a connection attempt may take, ms. @default 10000 */
  connectTimeoutMs?: number
}

export const postgresStoreDefaults = {
  retentionMs: sqliteStoreDefaults.retentionMs,
  logRetentionMs: sqliteStoreDefaults.logRetentionMs,
  maxLogMessages: sqliteStoreDefaults.maxLogMessages,
  maxQueue: sqliteStoreDefaults.maxQueue,
  maxQueueBytes: sqliteStoreDefaults.maxQueueBytes,
  flushIntervalMs: sqliteStoreDefaults.flushIntervalMs,
  retentionIntervalMs: sqliteStoreDefaults.retentionIntervalMs,
  maxReadConnections: 4,
  connectTimeoutMs: 10_000,
} satisfies Required<Omit<PostgresStoreOptions, 'url' | 'logger' | 'onLimit'>>

/**
 * What `usage` reports: SQLite's keys, and two of its own. The database's numbers (size, readings,
 * messages, series, partitions) are every node's, read every 10 s. A type, not an interface, so
 * that it is a `Record<string, number>`.
 */
export type PostgresStoreUsage = {
  /** Readings and messages waiting to be written (a transaction under way included). */
  queueDepth: number
  /** Bytes of logged messages waiting to be written. */
  queueBytes: number
  /** Readings and messages dropped since the start: the queue was full (or the store closed). */
  dropped: number
  /** Transactions that failed (database down, connection lost); what they held stayed queued. */
  writeFailures: number
  /** 1 while writing fails, 0 when it works. */
  writeFailing: number
  /** `pg_database_size`, bytes. */
  dbBytes: number
  /** Readings kept, from PostgreSQL's statistics (as of the last ANALYZE or autovacuum). */
  readings: number
  /** Messages in the log, approximately (the span of their ids). */
  messages: number
  /** Series (device, metric) kept. */
  series: number
  /** Days of readings, each one partition of `readings` and of each rollup. */
  partitions: number
  /** Readings skipped because their day is past retention already, so its partition is gone or about to go. */
  expired: number
  /** How long the last write took, ms. */
  lastWriteMs: number
}

type Row = [ts: number, value: number]
/** Min, max, sum and count of one series over one rollup bucket. */
interface Acc {
  min: number
  max: number
  sum: number
  count: number
}
type Opts = Required<Omit<PostgresStoreOptions, 'url' | 'logger' | 'onLimit'>>
type CopyTo = (typeof import('pg-copy-streams'))['to']

const SCHEMA = `
CREATE TABLE pulseboard_meta (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE series (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, device text NOT NULL, metric text NOT NULL, UNIQUE (device, metric));
CREATE TABLE series_forgotten (series_id bigint PRIMARY KEY);
CREATE TABLE readings (series_id bigint NOT NULL, ts bigint NOT NULL, value double precision NOT NULL, PRIMARY KEY (series_id, ts)) PARTITION BY RANGE (ts);
CREATE TABLE rollup_1m (series_id bigint NOT NULL, start bigint NOT NULL, min double precision NOT NULL, max double precision NOT NULL, sum double precision NOT NULL, count bigint NOT NULL, PRIMARY KEY (series_id, start)) PARTITION BY RANGE (start);
CREATE TABLE rollup_1h (series_id bigint NOT NULL, start bigint NOT NULL, min double precision NOT NULL, max double precision NOT NULL, sum double precision NOT NULL, count bigint NOT NULL, PRIMARY KEY (series_id, start)) PARTITION BY RANGE (start);
CREATE TABLE messages (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, ts bigint NOT NULL, topic text NOT NULL, payload text NOT NULL, base64 boolean NOT NULL, source smallint NOT NULL, client_id text, qos smallint NOT NULL, retain boolean NOT NULL, properties json);
CREATE INDEX messages_ts ON messages (ts, id);
CREATE TABLE devices (id text PRIMARY KEY, snapshot jsonb NOT NULL);
CREATE TABLE kv (key text PRIMARY KEY, value text NOT NULL);
INSERT INTO pulseboard_meta (key, value) VALUES ('schema', '${POSTGRES_SCHEMA_VERSION}'), ('forgets', '0');
`

/** SqliteStore's BUCKET_SQL in PostgreSQL: $1 series, $2 bucket width, $3 lo, $4 hi, $5 m0, $6 m1, $7 h0, $8 h1. */
const BUCKET_SQL = {
  raw: `SELECT ts - ts % $2 AS b, min(value), max(value), avg(value) FROM readings
    WHERE series_id = $1 AND ts >= $3 AND ts <= $4 GROUP BY b ORDER BY b`,
  minute: `SELECT b, min(mn), max(mx), sum(s) / sum(c)::float8 FROM (
      SELECT ts - ts % $2 AS b, value AS mn, value AS mx, value AS s, 1::bigint AS c FROM readings WHERE series_id = $1 AND ts >= $3 AND ts < $5
      UNION ALL SELECT start - start % $2, min, max, sum, count FROM rollup_1m WHERE series_id = $1 AND start >= $5 AND start < $6
      UNION ALL SELECT ts - ts % $2, value, value, value, 1 FROM readings WHERE series_id = $1 AND ts >= $6 AND ts <= $4
    ) t GROUP BY b ORDER BY b`,
  hour: `SELECT b, min(mn), max(mx), sum(s) / sum(c)::float8 FROM (
      SELECT ts - ts % $2 AS b, value AS mn, value AS mx, value AS s, 1::bigint AS c FROM readings WHERE series_id = $1 AND ts >= $3 AND ts < $5
      UNION ALL SELECT start - start % $2, min, max, sum, count FROM rollup_1m WHERE series_id = $1 AND start >= $5 AND start < $7
      UNION ALL SELECT start - start % $2, min, max, sum, count FROM rollup_1h WHERE series_id = $1 AND start >= $7 AND start < $8
      UNION ALL SELECT start - start % $2, min, max, sum, count FROM rollup_1m WHERE series_id = $1 AND start >= $8 AND start < $6
      UNION ALL SELECT ts - ts % $2, value, value, value, 1 FROM readings WHERE series_id = $1 AND ts >= $6 AND ts <= $4
    ) t GROUP BY b ORDER BY b`,
} as const

const rollupUpsert = (table: string) => `INSERT INTO ${table} AS r (series_id, start, min, max, sum, count)
  SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::float8[], $4::float8[], $5::float8[], $6::bigint[])
  ON CONFLICT (series_id, start) DO UPDATE SET min = least(r.min, excluded.min), max = greatest(r.max, excluded.max), sum = r.sum + excluded.sum, count = r.count + excluded.count`

/**
 * History on PostgreSQL, for several nodes writing to one database: the same contract as
 * {@link SqliteStore} (readings with 1-minute and 1-hour rollups, the message log, what the
 * registry and the formats saved), with readings and rollups partitioned by day, so that
 * retention drops whole days.
 *
 * Writes only join a bounded queue; a timer writes it every `flushIntervalMs`, each time one
 * transaction of multi-row (unnest) statements. A write that fails (database down, connection
 * lost) leaves the queue in place, is counted, logged at most every 10 s, and retried on the next
 * ticks. Reads go to the database, so they see what every node has written.
 *
 * Nodes share everything safely: series are created with INSERT … ON CONFLICT DO NOTHING, and
 * rollups add (never overwrite) through ON CONFLICT DO UPDATE, with rows locked in one order by
 * every node. A forget bumps a counter (`pulseboard_meta.forgets`) that every write transaction
 * holds a share lock on, so that no node writes to a series another has just deleted.
 */
export class PostgresStore implements HistoryStore {
  /** The URL without its password, as errors and logs show it. */
  readonly url: string
  readonly #opts: Opts
  readonly #logger: Logger | undefined
  readonly #onLimit: OnLimit
  /** One connection for writes (and the partitions they need), so that they are serial. */
  readonly #writer: Pool
  /** Reads, exports, retention and `usage`. */
  readonly #reader: Pool
  readonly #copyTo: CopyTo
  /** Series ids by device, then metric, as of the `forgets` counter `#epoch`: a cache of what is committed. */
  readonly #series = new Map<string, Map<string, number>>()
  #epoch = -1
  /** Days (epoch ms / DAY) that have their partitions; reloaded when an insert finds one missing. */
  #days = new Set<number>()
  #daysStale = true

  readonly #queue: WriteQueue
  #expired = 0
  #writeFailures = 0
  #failingSince: number | null = null
  #failureLoggedAt = 0
  #pruneFailing = false
  #lastWriteMs = 0
  #stats = { dbBytes: 0, readings: 0, messages: 0, series: 0, partitions: 0 }
  #refreshing: Promise<void> | null = null

  /** The write lane: writes, flushes and close run one after the other. */
  #lane: Promise<unknown> = Promise.resolve()
  #laneBusy = false
  #pruneLane: Promise<number> = Promise.resolve(0)
  /** Exports under way, each holding a connection: cut at close. */
  readonly #exports = new Set<{ client: PoolClient; released: boolean }>()
  #flushTimer: NodeJS.Timeout | undefined
  #pruneTimer: NodeJS.Timeout | undefined
  #usageTimer: NodeJS.Timeout | undefined
  #closed = false
  #closing: Promise<void> | undefined

  private constructor(url: string, writer: Pool, reader: Pool, copyTo: CopyTo, opts: PostgresStoreOptions) {
    const { logger, onLimit, url: _url, ...rest } = opts
    this.url = url
    this.#opts = { ...postgresStoreDefaults, ...rest }
    this.#logger = logger
    this.#onLimit = onLimit ?? (() => {})
    this.#queue = new WriteQueue({ ...this.#opts, onLimit: this.#onLimit, failing: () => this.#failingSince !== null, logger, key: pgText, json: pgJson })
    this.#writer = writer
    this.#reader = reader
    this.#copyTo = copyTo
  }

  /**
   * Connects, creates the schema when the database has none, and checks its version. Throws a
   * {@link StoreOpenError} (one line: the URL without its password, why, and the fix) when the
   * database cannot be reached, is someone else's, or is of a newer schema.
   */
  static async open(opts: PostgresStoreOptions): Promise<PostgresStore> {
    const shown = redact(opts.url)
    const cannot = (cause: unknown) =>
      new StoreOpenError(shown, `${shown} cannot serve as the history store (${describe(cause)}); ${hint(cause)}`, { cause })
    try {
      const parsed = new URL(opts.url)
      if (parsed.protocol !== 'postgres:' && parsed.protocol !== 'postgresql:') throw new Error('not postgres:')
    } catch (cause) {
      throw new StoreOpenError(shown, `${shown} is not a PostgreSQL URL (postgres://user:password@host:5432/database); fix --history`, { cause })
    }
    const [{ default: pg }, { default: copyStreams }] = await Promise.all([import('pg'), import('pg-copy-streams')])
    const o = { ...postgresStoreDefaults, ...opts }
    const parsers = pg.types.getTypeParser
    const writer = new pg.Pool(poolConfig(parsers, opts.url, 1, o.connectTimeoutMs, opts.logger))
    const reader = new pg.Pool(poolConfig(parsers, opts.url, o.maxReadConnections, o.connectTimeoutMs, opts.logger))
    // an idle connection the server closed (a restart, a failover) is dropped by the pool and reported here
    for (const pool of [writer, reader]) pool.on('error', (err) => opts.logger?.debug({ err }, 'history store: an idle PostgreSQL connection closed'))
    const store = new PostgresStore(shown, writer, reader, copyStreams.to, opts)
    try {
      await store.#setUp()
    } catch (err) {
      await Promise.allSettled([writer.end(), reader.end()])
      throw err instanceof StoreOpenError ? err : cannot(err)
    }
    store.#start()
    return store
  }

  get usage(): PostgresStoreUsage {
    return {
      queueDepth: this.#queue.depth,
      queueBytes: this.#queue.bytes,
      dropped: this.#queue.dropped,
      writeFailures: this.#writeFailures,
      writeFailing: this.#failingSince === null ? 0 : 1,
      ...this.#stats,
      expired: this.#expired,
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
    const series = await this.#seriesOf(q.device)
    if (series.size === 0) return out
    const lo = Math.max(-MAX_TS, Math.ceil(from))
    const hi = Math.min(MAX_TS, Math.floor(to))
    for (const name of q.metrics ?? [...series.keys()]) {
      const id = series.get(pgText(name))
      if (id !== undefined) out.metrics[name] = await this.#history(id, lo, hi, maxPoints)
    }
    return out
  }

  async latest(device: string): Promise<Record<string, { ts: number; value: number }>> {
    const out: Record<string, { ts: number; value: number }> = {}
    const { rows } = await this.#reader.query<[string, number, number]>({
      text: `SELECT s.metric, r.ts, r.value FROM series s
        CROSS JOIN LATERAL (SELECT ts, value FROM readings WHERE series_id = s.id ORDER BY ts DESC LIMIT 1) r
        WHERE s.device = $1 ORDER BY s.id`,
      values: [pgText(device)],
      rowMode: 'array',
    })
    for (const [metric, ts, value] of rows) out[metric] = { ts, value }
    return out
  }

  async messages(q: MessageQuery): Promise<LoggedEnvelope[]> {
    const limit = Math.max(0, Math.floor(q.limit))
    const out: LoggedEnvelope[] = []
    if (limit === 0) return out
    const filter = q.filter ?? '#'
    const prefix = pgText(literalPrefix(filter))
    // (ts, id) below the cursor; no `before` is a cursor above everything, and one within a
    // millisecond (times are whole) is the next whole one's start
    const before = q.before === undefined ? undefined : Math.min(Number.MAX_SAFE_INTEGER, Math.max(-Number.MAX_SAFE_INTEGER, q.before))
    let ts = before === undefined ? Number.MAX_SAFE_INTEGER : Math.ceil(before)
    let id = before === undefined ? Number.MAX_SAFE_INTEGER : Number.isInteger(before) ? Math.floor(q.beforeId ?? 0) : 0
    // pages of at most 10k rows whatever `limit` asks: one read never holds the whole log
    const page = Math.min(10 * MESSAGE_PAGE, filter === '#' ? limit : Math.max(limit, MESSAGE_PAGE))
    for (;;) {
      const { rows } = await this.#reader.query<MessageRow>({
        text: `SELECT id, ts, topic, payload, base64::int, source, client_id, qos, retain::int, properties::text FROM messages
          WHERE (ts, id) < ($1, $2) AND starts_with(topic, $3) ORDER BY ts DESC, id DESC LIMIT $4`,
        values: [ts, id, prefix, page],
        rowMode: 'array',
      })
      for (const row of rows) {
        ;[id, ts] = row
        if (topicMatches(filter, row[2])) out.push(envelopeOf(row))
        if (out.length === limit) return out
      }
      if (rows.length < page) return out
    }
  }

  async *exportCsv(q: ExportQuery): AsyncIterable<string> {
    yield CSV_HEADER
    const series = await this.#seriesOf(q.device)
    const metrics = (q.metrics ?? [...series.keys()]).filter((m) => series.has(pgText(m)))
    if (metrics.length === 0) return
    const names = metrics.map(csvField)
    const ids = metrics.map((m) => series.get(pgText(m))!)
    const from = q.from === undefined ? -MAX_TS : Math.max(-MAX_TS, Math.ceil(q.from))
    const to = Math.min(MAX_TS, Math.floor(q.to ?? Date.now()))
    if (from > to) return
    const held = { client: await this.#reader.connect(), released: false }
    this.#exports.add(held)
    let clean = false
    try {
      // one COPY per day partition, in order: each sorts one day of the series at most, and the
      // rows of one day all come before the next day's
      const days = (await partitionsOf(held.client, 'readings')).filter(({ start, end }) => end > from && start <= to)
      const join = ids.map((id, i) => `(${id}::bigint, ${i})`).join(', ')
      for (const { start, end } of days) {
        // COPY takes no parameters: every value inlined here is an integer of ours
        const lo = Math.max(from, start)
        const hi = Math.min(to, end - 1)
        const select = `SELECT r.ts, m.i, r.value FROM readings r JOIN (VALUES ${join}) AS m (sid, i) ON r.series_id = m.sid
          WHERE r.ts >= ${lo} AND r.ts <= ${hi} ORDER BY r.ts, m.i`
        const stream = held.client.query(this.#copyTo(`COPY (${select}) TO STDOUT WITH (FORMAT csv)`))
        // COPY's rows are `ts,index,value` and end in LF, so none is quoted: the metric's name
        // (quoted as SqliteStore quotes it), the value as JavaScript writes it, and the CRLF of
        // RFC 4180 go in here
        let rest = ''
        for await (const chunk of stream as AsyncIterable<Buffer>) {
          const text = rest + chunk.toString('latin1')
          const end = text.lastIndexOf('\n')
          if (end < 0) {
            rest = text
            continue
          }
          rest = text.slice(end + 1)
          yield csvLines(text, end, names)
        }
        if (rest !== '') throw new Error('history store: a CSV export ended within a row')
      }
      clean = true
    } finally {
      this.#exports.delete(held)
      // an export cut short leaves its connection within a COPY: it is closed, not reused
      if (!held.released) held.client.release(clean ? undefined : true)
      held.released = true
    }
  }

  async loadDevices(): Promise<Saved[]> {
    const out: Saved[] = []
    const { rows } = await this.#reader.query<[string, string]>({ text: 'SELECT id, snapshot::text FROM devices ORDER BY id COLLATE "C"', rowMode: 'array' })
    for (const [id, json] of rows) {
      const snapshot = parseJson(json)
      if (snapshot.ok) out.push({ id, snapshot: snapshot.value })
      else this.#logger?.warn({ device: id }, 'history store: a saved device is not JSON; skipped')
    }
    return out
  }

  async loadFormats(): Promise<unknown> {
    const { rows } = await this.#reader.query<[string]>({ text: `SELECT value FROM kv WHERE key = 'formats'`, rowMode: 'array' })
    const json = rows[0]?.[0]
    if (json === undefined) return undefined
    const state = parseJson(json)
    if (state.ok) return state.value
    this.#logger?.warn('history store: the saved formats state is not JSON; ignored')
    return undefined
  }

  /** Writes out what is queued now, in transactions of up to 20,000 items; returns early when one fails (it stays queued). */
  flush(): Promise<void> {
    return this.#exclusive(async () => {
      // what is queued now, in chunks: writes that arrive meanwhile do not keep it going forever
      for (let chunks = Math.ceil(this.#queue.depth / WRITE_CHUNK) + 1; chunks > 0 && this.#queue.pending(); chunks--) {
        if (!(await this.#writeOut(WRITE_CHUNK))) return
      }
    })
  }

  /**
   * Runs one retention step now, on one node at a time (another node's step makes this one a
   * no-op): creates today's and tomorrow's partitions, drops the days past `retentionMs` (each
   * partition detached concurrently, so that no reader or writer waits), and deletes at most about
   * 10,000 rows of forgotten series and of the log past `logRetentionMs` or `maxLogMessages`.
   * Returns how many rows and partitions went.
   */
  prune(now = Date.now()): Promise<number> {
    // one step at a time per store: the timer's and a caller's wait for each other
    const run = this.#pruneLane.then(() => this.#pruneStep(now))
    this.#pruneLane = run
    return run
  }

  async #pruneStep(now: number): Promise<number> {
    if (this.#closed) return 0
    try {
      const deleted = await this.#prune(now)
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
    clearInterval(this.#usageTimer)
    await this.flush()
    this.#closed = true
    this.#queue.close()
    clearTimeout(this.#pruneTimer)
    if (this.#queue.depth > 0) this.#logger?.warn({ queued: this.#queue.depth }, 'history store: closed while writing failed; what was queued is lost')
    for (const held of this.#exports) {
      held.released = true
      held.client.release(true)
    }
    await Promise.allSettled([this.#refreshing, this.#pruneLane])
    await Promise.allSettled([this.#writer.end(), this.#reader.end()])
  }

  async #setUp(): Promise<void> {
    const client = await this.#writer.connect()
    try {
      await client.query('BEGIN')
      await client.query('SELECT pg_advisory_xact_lock($1)', [DDL_LOCK])
      const { rows } = await client.query<[string]>({
        text: `SELECT c.relname FROM pg_class c WHERE c.relnamespace = current_schema()::regnamespace AND c.relname = ANY($1) AND c.relkind IN ('r', 'p', 'v', 'm', 'f')`,
        values: [OUR_TABLES],
        rowMode: 'array',
      })
      const tables = new Set(rows.map(([name]) => name))
      if (!tables.has('pulseboard_meta')) {
        if (tables.size > 0) {
          throw new StoreOpenError(this.url, `${this.url} holds tables of another program (${[...tables].join(', ')}); choose another database (or schema) in --history`)
        }
        await client.query(SCHEMA)
      } else {
        const version = (await client.query<[string]>({ text: `SELECT value FROM pulseboard_meta WHERE key = 'schema'`, rowMode: 'array' })).rows[0]?.[0]
        const n = Number(version)
        if (!Number.isInteger(n)) throw new StoreOpenError(this.url, `${this.url} has a pulseboard_meta table without a schema version; choose another database in --history`)
        if (n > POSTGRES_SCHEMA_VERSION) {
          throw new StoreOpenError(
            this.url,
            `${this.url} was written by a newer Pulseboard (schema ${n}, this one knows ${POSTGRES_SCHEMA_VERSION}); upgrade Pulseboard or choose another database in --history`,
          )
        }
        const missing = OUR_TABLES.filter((t) => !tables.has(t))
        if (missing.length > 0) throw new StoreOpenError(this.url, `${this.url} lacks Pulseboard's tables ${missing.join(', ')}; choose another database in --history`)
        // an older schema is brought up to this one here, in this transaction: none yet
      }
      await client.query('COMMIT')
      const today = Math.floor(Date.now() / DAY)
      await this.#ensureDays(client, [today, today + 1])
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {})
      throw err
    } finally {
      client.release()
    }
    await this.#refreshUsage()
  }

  #start(): void {
    this.#flushTimer = setInterval(() => this.#tick(), this.#opts.flushIntervalMs)
    this.#flushTimer.unref()
    this.#usageTimer = setInterval(() => void this.#refreshUsage(), USAGE_REFRESH_MS)
    this.#usageTimer.unref()
    this.#schedulePrune(Math.min(this.#opts.retentionIntervalMs, 5_000))
  }

  /** Runs `fn` on the write lane, after what is on it. */
  #exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#lane.then(async () => {
      this.#laneBusy = true
      try {
        return await fn()
      } finally {
        this.#laneBusy = false
      }
    })
    this.#lane = run.catch(() => {})
    return run
  }

  #tick(): void {
    // a write still under way (a slow or unreachable database) is not queued behind: the next tick comes
    if (this.#laneBusy || !this.#queue.pending()) return
    this.#exclusive(() => this.#writeOut(WRITE_CHUNK)).catch((err: unknown) => this.#logger?.error({ err }, 'history store: a write went wrong'))
  }

  /** Writes up to `max` queued items (and every pending snapshot) in one transaction; returns whether it worked. */
  async #writeOut(max: number): Promise<boolean> {
    if (this.#closed || !this.#queue.pending()) return !this.#closed
    const started = performance.now()
    let client: PoolClient
    try {
      // connected first: while the database is away, the queue stays whole and trimmed from its oldest
      client = await this.#writer.connect()
    } catch (err) {
      this.#failed(err)
      this.#lastWriteMs = performance.now() - started
      return false
    }
    // out of the queue while they are written, so that trimming (while writing fails) leaves them
    // alone; they still count in its depth, and go back to its head if the transaction fails
    const batch = this.#queue.take(max)
    try {
      await this.#write(client, batch.ops, batch.devices, batch.formats)
      client.release()
    } catch (err) {
      // the connection may be gone, or within a transaction: closed, not reused
      client.release(true)
      this.#failed(err)
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

  #failed(err: unknown): void {
    this.#writeFailures++
    const now = Date.now()
    if (this.#failingSince === null) {
      this.#failingSince = now
      this.#failureLoggedAt = now
      this.#logger?.error(
        { err, code: codeOf(err), queued: this.#queue.depth, url: this.url },
        'history store: writing to PostgreSQL failed (database down or unreachable?); keeping what is queued and retrying',
      )
    } else if (now - this.#failureLoggedAt >= FAILURE_LOG_MS) {
      this.#failureLoggedAt = now
      this.#logger?.warn({ code: codeOf(err), reason: describe(err), failures: this.#writeFailures, queued: this.#queue.depth, dropped: this.#queue.dropped }, 'history store: writing still fails')
    }
  }

  /** One write transaction: readings (in segments between forgets), forgets, messages, snapshots. */
  async #write(client: PoolClient, ops: readonly Op[], devices: ReadonlyMap<string, string>, formats: string | undefined): Promise<void> {
    const cutoffDay = Math.floor((Date.now() - this.#opts.retentionMs) / DAY)
    // the partitions this transaction needs, made first in their own (DDL takes locks a write should not hold)
    const days = new Set<number>()
    for (const op of ops) {
      if (op.kind !== 'readings') continue
      for (const r of op.batch) if (valid(r)) days.add(Math.floor(Math.trunc(r.ts) / DAY))
    }
    for (const d of days) if (d < cutoffDay) days.delete(d)
    await this.#ensureDays(client, [...days])

    try {
      await client.query('BEGIN')
      const forgets = ops.some((op) => op.kind === 'forget')
      // a share lock on the forget counter: no forget commits while this runs, and one that
      // committed before is seen (the cache is reloaded), so no reading goes to a deleted series
      const lock = await client.query<[string]>({ text: `SELECT value FROM pulseboard_meta WHERE key = 'forgets' FOR ${forgets ? 'UPDATE' : 'SHARE'}`, rowMode: 'array' })
      const epoch = Number(lock.rows[0]?.[0])
      if (epoch !== this.#epoch) await this.#reloadSeries(client, epoch)
      let segment: (readonly Reading[])[] = []
      let expired = 0
      const messages: QueuedMessage[] = []
      for (const op of ops) {
        if (op.kind === 'readings') segment.push(op.batch)
        else if (op.kind === 'log') for (const m of op.batch) messages.push(m)
        else {
          expired += await this.#writeReadings(client, segment, cutoffDay)
          segment = []
          await this.#forget(client, op.device)
        }
      }
      expired += await this.#writeReadings(client, segment, cutoffDay)
      if (messages.length > 0) await this.#writeMessages(client, messages)
      if (devices.size > 0) {
        const ids = [...devices.keys()].sort()
        await client.query(
          `INSERT INTO devices (id, snapshot) SELECT * FROM unnest($1::text[], $2::jsonb[]) ON CONFLICT (id) DO UPDATE SET snapshot = excluded.snapshot`,
          [ids, ids.map((id) => devices.get(id)!)],
        )
      }
      if (formats !== undefined) {
        await client.query(`INSERT INTO kv (key, value) VALUES ('formats', $1) ON CONFLICT (key) DO UPDATE SET value = excluded.value`, [pgText(formats)])
      }
      await client.query('COMMIT')
      this.#expired += expired
    } catch (err) {
      // what this transaction taught the caches goes with it
      this.#series.clear()
      this.#epoch = -1
      // 23514: no partition for a row (another node's retention dropped a day)
      if (codeOf(err) === '23514') this.#daysStale = true
      throw err
    }
  }

  async #reloadSeries(client: ClientBase, epoch: number): Promise<void> {
    this.#series.clear()
    const { rows } = await client.query<[number, string, string]>({ text: 'SELECT id, device, metric FROM series', rowMode: 'array' })
    for (const [id, device, metric] of rows) this.#cacheSeries(device, metric, id)
    this.#epoch = epoch
  }

  #cacheSeries(device: string, metric: string, id: number): void {
    let metrics = this.#series.get(device)
    if (!metrics) this.#series.set(device, (metrics = new Map()))
    metrics.set(metric, id)
  }

  /**
   * Inserts readings (the later of one millisecond winning, as INSERT OR REPLACE does in SQLite)
   * and adds them to the rollups; returns how many were skipped as past retention.
   */
  async #writeReadings(client: ClientBase, batches: readonly (readonly Reading[])[], cutoffDay: number): Promise<number> {
    if (batches.length === 0) return 0
    // series first: the new ones in one INSERT … ON CONFLICT DO NOTHING, then those another node made
    const missing = new Map<string, Set<string>>()
    for (const batch of batches) {
      for (const r of batch) {
        const device = pgText(r.device)
        const metric = pgText(r.metric)
        if (this.#series.get(device)?.has(metric) || missing.get(device)?.has(metric)) continue
        let metrics = missing.get(device)
        if (!metrics) missing.set(device, (metrics = new Set()))
        metrics.add(metric)
      }
    }
    if (missing.size > 0) {
      const devices: string[] = []
      const metrics: string[] = []
      for (const [device, names] of missing) {
        for (const metric of names) {
          devices.push(device)
          metrics.push(metric)
        }
      }
      // ids in the order the readings name the series (a device's metrics list in that order, as
      // in SQLite), rows inserted in (device, metric) order on every node, so that two nodes
      // making the same series never wait on each other in a cycle
      const ids = await client.query<[number]>({
        text: `SELECT nextval(pg_get_serial_sequence('series', 'id')) FROM generate_series(1, $1::int)`,
        values: [devices.length],
        rowMode: 'array',
      })
      const inserted = await client.query<[number, string, string]>({
        text: `INSERT INTO series (id, device, metric) SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[]) AS t (id, d, m) ORDER BY d, m
          ON CONFLICT (device, metric) DO NOTHING RETURNING id, device, metric`,
        values: [ids.rows.map(([id]) => id).sort((a, b) => a - b), devices, metrics],
        rowMode: 'array',
      })
      for (const [id, device, metric] of inserted.rows) this.#cacheSeries(device, metric, id)
      if (inserted.rows.length < devices.length) {
        // a statement of its own sees what other nodes committed while the INSERT waited for them
        const existing = await client.query<[number, string, string]>({
          text: `SELECT s.id, s.device, s.metric FROM series s JOIN unnest($1::text[], $2::text[]) AS t (d, m) ON s.device = t.d AND s.metric = t.m`,
          values: [devices, metrics],
          rowMode: 'array',
        })
        for (const [id, device, metric] of existing.rows) this.#cacheSeries(device, metric, id)
      }
    }

    // per series: the points (the last of a millisecond wins), and what each rollup bucket gains
    const points = new Map<number, Map<number, number>>()
    const minutes = new Map<number, Map<number, Acc>>()
    const hours = new Map<number, Map<number, Acc>>()
    let expired = 0
    for (const batch of batches) {
      for (const r of batch) {
        if (!valid(r)) continue
        const ts = Math.trunc(r.ts)
        if (Math.floor(ts / DAY) < cutoffDay) {
          expired++
          continue
        }
        const id = this.#series.get(pgText(r.device))?.get(pgText(r.metric))
        if (id === undefined) throw new Error(`history store: series ${r.device}/${r.metric} was not created`)
        let p = points.get(id)
        if (!p) points.set(id, (p = new Map()))
        p.set(ts, r.value)
        fold(minutes, id, ts - (ts % MINUTE), r.value)
        fold(hours, id, ts - (ts % HOUR), r.value)
      }
    }
    if (points.size === 0) return expired
    // every node writes rows in (series, ts) order, so that two transactions never wait on each other in a cycle
    const sids: number[] = []
    const tss: number[] = []
    const values: number[] = []
    for (const id of [...points.keys()].sort((a, b) => a - b)) {
      const p = points.get(id)!
      for (const ts of [...p.keys()].sort((a, b) => a - b)) {
        sids.push(id)
        tss.push(ts)
        values.push(p.get(ts)!)
      }
    }
    await client.query(
      `INSERT INTO readings (series_id, ts, value) SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::float8[])
        ON CONFLICT (series_id, ts) DO UPDATE SET value = excluded.value`,
      [sids, tss, values],
    )
    await client.query(rollupUpsert('rollup_1m'), rollupColumns(minutes))
    await client.query(rollupUpsert('rollup_1h'), rollupColumns(hours))
    return expired
  }

  async #forget(client: ClientBase, device: string): Promise<void> {
    // the series go now, so no query finds them; their rows go in retention's steps, in chunks
    await client.query(
      'WITH gone AS (DELETE FROM series WHERE device = $1 RETURNING id) INSERT INTO series_forgotten (series_id) SELECT id FROM gone ON CONFLICT DO NOTHING',
      [device],
    )
    await client.query('DELETE FROM devices WHERE id = $1', [device])
    const bumped = await client.query<[string]>({
      text: `UPDATE pulseboard_meta SET value = (value::bigint + 1)::text WHERE key = 'forgets' RETURNING value`,
      rowMode: 'array',
    })
    this.#epoch = Number(bumped.rows[0]?.[0])
    this.#series.delete(device)
  }

  async #writeMessages(client: ClientBase, messages: readonly QueuedMessage[]): Promise<void> {
    const cols: [number[], string[], string[], boolean[], number[], (string | null)[], number[], boolean[], (string | null)[]] = [[], [], [], [], [], [], [], [], []]
    for (const m of messages) {
      cols[0].push(m.ts)
      cols[1].push(pgText(m.topic))
      cols[2].push(pgText(m.payload))
      cols[3].push(m.base64 === 1)
      cols[4].push(m.source)
      cols[5].push(m.clientId === null ? null : pgText(m.clientId))
      cols[6].push(m.qos)
      cols[7].push(m.retain === 1)
      cols[8].push(m.properties === null ? null : pgJson(m.properties))
    }
    await client.query(
      `INSERT INTO messages (ts, topic, payload, base64, source, client_id, qos, retain, properties)
        SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::boolean[], $5::smallint[], $6::text[], $7::smallint[], $8::boolean[], $9::json[])`,
      cols,
    )
  }

  /** Makes sure each day has its partitions, creating those missing (one node at a time, under an advisory lock), in a transaction of its own. */
  async #ensureDays(client: ClientBase, days: readonly number[]): Promise<void> {
    if (!this.#daysStale && days.every((d) => this.#days.has(d))) return
    try {
      await client.query('BEGIN')
      await createDays(client, days, (known) => {
        this.#days = known
        this.#daysStale = false
      })
      await client.query('COMMIT')
    } catch (err) {
      this.#daysStale = true
      throw err
    }
  }

  async #prune(now: number): Promise<number> {
    const client = await this.#reader.connect()
    let clean = false
    try {
      const locked = await client.query<[boolean]>({ text: 'SELECT pg_try_advisory_lock($1)', values: [RETENTION_LOCK], rowMode: 'array' })
      if (locked.rows[0]?.[0] !== true) {
        clean = true
        return 0
      }
      let deleted = 0
      try {
        const today = Math.floor(now / DAY)
        await client.query('BEGIN')
        await createDays(client, [today, today + 1], () => {})
        await client.query('COMMIT')
        const dropped = await dropDaysBefore(client, now - this.#opts.retentionMs)
        if (dropped > 0) this.#daysStale = true
        deleted += dropped + (await this.#pruneRows(client, now))
      } finally {
        await client.query('SELECT pg_advisory_unlock($1)', [RETENTION_LOCK])
      }
      clean = true
      return deleted
    } finally {
      client.release(clean ? undefined : true)
    }
  }

  /** Rows of forgotten series and of the log, at most about `RETENTION_CHUNK`; returns how many. */
  async #pruneRows(client: PoolClient, now: number): Promise<number> {
    let budget = RETENTION_CHUNK
    const forgotten = await client.query<[number]>({ text: 'SELECT series_id FROM series_forgotten ORDER BY series_id LIMIT 8', rowMode: 'array' })
    for (const [id] of forgotten.rows) {
      let done = true
      for (const [table, key] of [['readings', 'ts'], ['rollup_1m', 'start'], ['rollup_1h', 'start']] as const) {
        if (budget <= 0) {
          done = false
          break
        }
        const n = (
          await client.query(`DELETE FROM ${table} WHERE series_id = $1 AND ${key} IN (SELECT ${key} FROM ${table} WHERE series_id = $1 ORDER BY ${key} LIMIT $2)`, [
            id,
            budget,
          ])
        ).rowCount!
        if (n === budget) done = false
        budget -= n
      }
      if (done) await client.query('DELETE FROM series_forgotten WHERE series_id = $1', [id])
      if (budget <= 0) break
    }
    if (budget > 0) {
      const old = await client.query('DELETE FROM messages WHERE id IN (SELECT id FROM messages WHERE ts < $1 ORDER BY ts, id LIMIT $2)', [now - this.#opts.logRetentionMs, budget])
      budget -= old.rowCount!
    }
    if (budget > 0) {
      const overflow = await client.query('DELETE FROM messages WHERE id IN (SELECT id FROM messages WHERE id <= (SELECT max(id) FROM messages) - $1 ORDER BY id LIMIT $2)', [
        this.#opts.maxLogMessages,
        budget,
      ])
      budget -= overflow.rowCount!
    }
    return RETENTION_CHUNK - budget
  }

  #schedulePrune(delay: number): void {
    if (this.#closed) return
    this.#pruneTimer = setTimeout(() => {
      void this.prune().then((deleted) => this.#schedulePrune(deleted >= RETENTION_CHUNK ? RETENTION_BUSY_MS : this.#opts.retentionIntervalMs))
    }, delay)
    this.#pruneTimer.unref()
  }

  /** Reads what `usage` reports of the database; a failure leaves the last numbers. */
  #refreshUsage(): Promise<void> {
    if (this.#closed) return Promise.resolve()
    return (this.#refreshing ??= (async () => {
      try {
        const { rows } = await this.#reader.query<[number, number, number, number, number]>({
          text: `SELECT pg_database_size(current_database()),
            (SELECT coalesce(sum(greatest(c.reltuples, 0)), 0)::bigint FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'readings'::regclass),
            (SELECT coalesce(max(id) - min(id) + 1, 0) FROM messages),
            (SELECT count(*) FROM series),
            (SELECT count(*) FROM pg_inherits WHERE inhparent = 'readings'::regclass)`,
          rowMode: 'array',
        })
        const [dbBytes, readings, messages, series, partitions] = rows[0]!
        this.#stats = { dbBytes, readings, messages, series, partitions }
      } catch (err) {
        this.#logger?.debug({ err }, 'history store: reading the database size failed')
      } finally {
        this.#refreshing = null
      }
    })())
  }

  /** A device's series by metric, in the order they were made (as SqliteStore lists them). */
  async #seriesOf(device: string): Promise<Map<string, number>> {
    const { rows } = await this.#reader.query<[number, string]>({ text: 'SELECT id, metric FROM series WHERE device = $1 ORDER BY id', values: [pgText(device)], rowMode: 'array' })
    return new Map(rows.map(([id, metric]) => [metric, id]))
  }

  /** One metric over [from, to]: raw points when at most `maxPoints`, otherwise buckets from the finest tier that is cheap enough. */
  async #history(id: number, from: number, to: number, maxPoints: number): Promise<MetricHistory> {
    const q = <R extends unknown[]>(text: string, values: unknown[]) => this.#reader.query<R>({ text, values, rowMode: 'array' }).then((r) => r.rows)
    const countUpTo = async (lo: number, hi: number, n: number) =>
      (await q<[number]>('SELECT count(*) FROM (SELECT 1 FROM readings WHERE series_id = $1 AND ts >= $2 AND ts <= $3 LIMIT $4) t', [id, lo, hi, n]))[0]![0]
    if ((await countUpTo(from, to, maxPoints + 1)) <= maxPoints) {
      return { points: await q<Row>('SELECT ts, value FROM readings WHERE series_id = $1 AND ts >= $2 AND ts <= $3 ORDER BY ts', [id, from, to]) }
    }
    // bucket over the data actually in the range, so that sparse data gets fine buckets
    const [[lo, hi]] = (await q<[number, number]>(
      `SELECT (SELECT ts FROM readings WHERE series_id = $1 AND ts >= $2 AND ts <= $3 ORDER BY ts LIMIT 1),
        (SELECT ts FROM readings WHERE series_id = $1 AND ts >= $2 AND ts <= $3 ORDER BY ts DESC LIMIT 1)`,
      [id, from, to],
    )) as [[number, number]]
    const rows = tierNeedsCount(lo, hi, maxPoints) ? await countUpTo(lo, hi, SCAN_ROWS + 1) : 0
    const { unit, bucketMs, m0, m1, h0, h1 } = planBuckets(lo, hi, maxPoints, rows)
    const sql = unit === 1 ? BUCKET_SQL.raw : unit === MINUTE ? BUCKET_SQL.minute : BUCKET_SQL.hour
    const params = unit === 1 ? [id, bucketMs, lo, hi] : unit === MINUTE ? [id, bucketMs, lo, hi, m0, m1] : [id, bucketMs, lo, hi, m0, m1, h0, h1]
    return { bucketMs, buckets: await q<Bucket>(sql, params) }
  }
}

/** Creates the partitions of each day that lacks them, in the caller's transaction; tells `known` the days that have them now. */
async function createDays(client: ClientBase, days: readonly number[], known: (days: Set<number>) => void): Promise<void> {
  await client.query(`SET LOCAL lock_timeout = '${DDL_LOCK_TIMEOUT}'`)
  await client.query('SELECT pg_advisory_xact_lock($1)', [DDL_LOCK])
  const have = new Map<string, Set<number>>()
  for (const table of PARTITIONED) have.set(table, new Set((await partitionsOf(client, table)).map((p) => p.start / DAY)))
  for (const day of new Set(days)) {
    for (const table of PARTITIONED) {
      if (have.get(table)!.has(day)) continue
      const name = partitionName(table, day)
      // made apart and attached, which takes a lighter lock than CREATE … PARTITION OF: reads and writes go on
      await client.query(`CREATE TABLE IF NOT EXISTS ${name} (LIKE ${table})`)
      await client.query(`ALTER TABLE ${table} ATTACH PARTITION ${name} FOR VALUES FROM (${day * DAY}) TO (${(day + 1) * DAY})`)
      have.get(table)!.add(day)
    }
  }
  known(new Set([...have.get('readings')!].filter((d) => PARTITIONED.every((t) => have.get(t)!.has(d)))))
}

/** Detaches (concurrently: no reader or writer waits) and drops each partition that ends at or before `cutoff`; returns how many. */
async function dropDaysBefore(client: ClientBase, cutoff: number): Promise<number> {
  let dropped = 0
  for (const table of PARTITIONED) {
    for (const { end, pending, name } of await partitionsOf(client, table)) {
      if (end > cutoff) continue
      // a detach cut short (a lost connection) leaves the partition pending: FINALIZE completes it
      await client.query(`ALTER TABLE ${table} DETACH PARTITION ${quote(name)} ${pending ? 'FINALIZE' : 'CONCURRENTLY'}`)
      await client.query(`DROP TABLE IF EXISTS ${quote(name)}`)
      dropped++
    }
  }
  // a detached table left by a step cut between its DETACH and its DROP
  const { rows } = await client.query<[string]>({
    text: `SELECT relname FROM pg_class WHERE relnamespace = current_schema()::regnamespace AND relkind = 'r' AND NOT relispartition AND relname ~ '^(readings|rollup_1m|rollup_1h)_[0-9]{8}$'`,
    rowMode: 'array',
  })
  for (const [name] of rows) {
    const day = Date.UTC(Number(name.slice(-8, -4)), Number(name.slice(-4, -2)) - 1, Number(name.slice(-2))) / DAY
    if ((day + 1) * DAY <= cutoff) await client.query(`DROP TABLE IF EXISTS ${name}`)
  }
  return dropped
}

/** The partitions of a table, by start: their range and name, and whether a detach of one is pending. */
async function partitionsOf(client: ClientBase, table: string): Promise<{ start: number; end: number; pending: boolean; name: string }[]> {
  const { rows } = await client.query<[string, boolean, string]>({
    text: `SELECT pg_get_expr(c.relpartbound, c.oid), i.inhdetachpending, c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = $1::regclass`,
    values: [table],
    rowMode: 'array',
  })
  const out: { start: number; end: number; pending: boolean; name: string }[] = []
  for (const [bound, pending, name] of rows) {
    const m = /FROM \('?(-?\d+)'?\) TO \('?(-?\d+)'?\)/.exec(bound)
    if (m) out.push({ start: Number(m[1]), end: Number(m[2]), pending, name })
  }
  return out.sort((a, b) => a.start - b.start)
}

function quote(identifier: string): string {
  return `"${identifier.replaceAll('"', '""')}"`
}

/** `readings_20240131`: the table, and the UTC date of the day. */
function partitionName(table: string, day: number): string {
  return `${table}_${new Date(day * DAY).toISOString().slice(0, 10).replaceAll('-', '')}`
}

/** Whether a reading can be written: a finite value, and a time within years 1970 to 9999. */
function valid(r: Reading): boolean {
  return Number.isFinite(r.value) && r.ts >= 0 && r.ts <= MAX_TS
}

function fold(accs: Map<number, Map<number, Acc>>, id: number, start: number, value: number): void {
  let buckets = accs.get(id)
  if (!buckets) accs.set(id, (buckets = new Map()))
  const a = buckets.get(start)
  if (!a) {
    buckets.set(start, { min: value, max: value, sum: value, count: 1 })
    return
  }
  if (value < a.min) a.min = value
  if (value > a.max) a.max = value
  a.sum += value
  a.count++
}

/** The rollup rows as unnest's columns, in (series, start) order. */
function rollupColumns(accs: Map<number, Map<number, Acc>>): [number[], number[], number[], number[], number[], number[]] {
  const cols: [number[], number[], number[], number[], number[], number[]] = [[], [], [], [], [], []]
  for (const id of [...accs.keys()].sort((a, b) => a - b)) {
    const buckets = accs.get(id)!
    for (const start of [...buckets.keys()].sort((a, b) => a - b)) {
      const a = buckets.get(start)!
      cols[0].push(id)
      cols[1].push(start)
      cols[2].push(a.min)
      cols[3].push(a.max)
      cols[4].push(a.sum)
      cols[5].push(a.count)
    }
  }
  return cols
}

/**
 * COPY's `ts,index,value` lines up to `end` (a LF) as SqliteStore's CSV lines: `ts,name,value`
 * and CRLF. The value is written again by `String`: PostgreSQL's shortest digits (extra_float_digits
 * 1) read back exactly, but it writes `1e+15` where JavaScript writes `1000000000000000`, and the
 * two pick different shortest digits for some doubles above 2^53.
 */
function csvLines(text: string, end: number, names: readonly string[]): string {
  let out = ''
  for (let at = 0; at <= end; ) {
    const c1 = text.indexOf(',', at)
    const c2 = text.indexOf(',', c1 + 1)
    const nl = text.indexOf('\n', c2 + 1)
    out += `${text.slice(at, c1)},${names[Number(text.slice(c1 + 1, c2))]!},${Number(text.slice(c2 + 1, nl))}\r\n`
    at = nl + 1
  }
  return out
}

/** Text as PostgreSQL stores it: it has no NUL character, so U+0000 becomes U+FFFD (else one such payload would fail every retry). */
function pgText(text: string): string {
  return text.includes('\0') ? text.replaceAll('\0', '\uFFFD') : text
}

/** JSON as json and jsonb take it: jsonb refuses the escape `\u0000`. */
function pgJson(json: string): string {
  return json.includes('\\u0000') ? json.replaceAll('\\u0000', '\\ufffd') : json
}

function poolConfig(parsers: CustomTypesConfig['getTypeParser'], url: string, max: number, connectTimeoutMs: number, logger: Logger | undefined): PoolConfig {
  // int8 (ids, times, counts) and numeric as numbers: every one the store reads is below 2^53
  const types: CustomTypesConfig = {
    getTypeParser: ((oid: number, format?: 'text' | 'binary') => (oid === INT8_OID || oid === NUMERIC_OID ? Number : parsers(oid, format))) as CustomTypesConfig['getTypeParser'],
  }
  return {
    connectionString: url,
    max,
    types,
    connectionTimeoutMillis: connectTimeoutMs,
    keepAlive: true,
    idleTimeoutMillis: 30_000,
    fallback_application_name: 'pulseboard',
    onConnect: async (client: ClientBase) => {
      // a connection that breaks while checked out between queries reports here, not as an uncaught error
      client.on('error', (err) => logger?.debug({ err }, 'history store: a PostgreSQL connection broke'))
      // shortest exact float output, whatever the server's default: reads and CSV depend on it
      await client.query('SET extra_float_digits = 1')
    },
  }
}

/** The URL without its password (in the userinfo or the query), for errors and logs. */
export function redact(url: string): string {
  try {
    const u = new URL(url)
    if (u.password) u.password = ''
    for (const key of [...u.searchParams.keys()]) if (/pass/i.test(key)) u.searchParams.set(key, '***')
    return u.toString()
  } catch {
    return url.replace(/\/\/([^:/@]*):[^@/]*@/, '//$1@')
  }
}

/** An error as a few words on one line; a connection refused on every address says so once. */
function describe(err: unknown): string {
  if (err instanceof AggregateError && err.errors.length > 0 && !err.message) return reason(err.errors[0])
  return reason(err)
}

/** The fix that goes with an error of opening. */
function hint(err: unknown): string {
  const code = codeOf(err instanceof AggregateError && err.errors.length > 0 ? err.errors[0] : err)
  if (code === '3D000') return 'create the database (createdb) or fix --history'
  if (code === '28P01' || code === '28000') return 'fix the user or password in --history'
  if (code === '42501') return 'let the user create tables in that database, or fix --history'
  return 'start PostgreSQL there or fix --history'
}
