// PostgresStore against a real PostgreSQL (a throwaway cluster on 127.0.0.1), checked against
// SqliteStore fed the same readings wherever the two must answer alike.
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer, type AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { Writable } from 'node:stream'
import { pino, type Logger } from 'pino'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import type { DeviceHistory, Envelope, MessageProperties, Reading } from '../../protocol/index.ts'
import type { LimitName } from '../../protocol/limits.ts'
import type { LoggedEnvelope } from '../../store/history.ts'
import { POSTGRES_SCHEMA_VERSION, PostgresStore, type PostgresStoreOptions } from '../../store/postgres.ts'
import { SqliteStore, StoreOpenError, type SqliteStoreOptions } from '../../store/sqlite.ts'
import { startPostgres, type Postgres } from '../helpers/postgres.ts'

const MINUTE = 60_000
const HOUR = 3_600_000
const DAY = 24 * HOUR

let pg: Postgres
let dir: string
const stores: (PostgresStore | SqliteStore)[] = []

beforeAll(async () => {
  pg = await startPostgres()
}, 60_000)

afterAll(async () => {
  await pg?.close()
})

afterEach(async () => {
  for (const store of stores.splice(0).reverse()) await store.close()
  if (dir) rmSync(dir, { recursive: true, force: true })
})

async function openPg(url: string, opts: Partial<PostgresStoreOptions> = {}): Promise<PostgresStore> {
  const store = await PostgresStore.open({ url, ...opts })
  stores.push(store)
  return store
}

function openSqlite(opts: Partial<SqliteStoreOptions> = {}): SqliteStore {
  dir ??= mkdtempSync(path.join(tmpdir(), 'pulseboard-pg-vs-sqlite-'))
  const store = SqliteStore.open({ file: path.join(dir, `${stores.length}.db`), ...opts })
  stores.push(store)
  return store
}

async function close(store: PostgresStore): Promise<void> {
  stores.splice(stores.indexOf(store), 1)
  await store.close()
}

async function text(iterable: AsyncIterable<string>): Promise<string> {
  let out = ''
  for await (const chunk of iterable) out += chunk
  return out
}

function series(device: string, metric: string, n: number, ts: (i: number) => number, value: (i: number) => number): Reading[] {
  return Array.from({ length: n }, (_, i) => ({ device, metric, ts: ts(i), value: value(i) }))
}

/** Waits for `done`, polling every 50 ms, at most `ms`; fails saying what it waited for. */
async function until(what: string, done: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!(await done())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

type LogLine = { level: number; msg: string; code?: string }
function capture(): { logger: Logger; lines: LogLine[] } {
  const lines: LogLine[] = []
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(JSON.parse(chunk.toString()) as LogLine)
      done()
    },
  })
  return { logger: pino({ level: 'debug' }, stream), lines }
}

/** The two answers are the same: points exactly, buckets with the same starts, min and max, and means equal to 1e-9. */
function expectSameHistory(actual: DeviceHistory, expected: DeviceHistory): void {
  expect(Object.keys(actual.metrics)).toEqual(Object.keys(expected.metrics))
  for (const [name, e] of Object.entries(expected.metrics)) {
    const a = actual.metrics[name]!
    if ('points' in e) {
      expect(a).toEqual(e)
      continue
    }
    if (!('buckets' in a)) throw new Error(`${name}: expected buckets, got points`)
    expect(a.bucketMs).toBe(e.bucketMs)
    expect(a.buckets.map(([start, min, max]) => [start, min, max])).toEqual(e.buckets.map(([start, min, max]) => [start, min, max]))
    a.buckets.forEach(([, , , avg], i) => expect(Math.abs(avg - e.buckets[i]![3]) / Math.max(1, Math.abs(avg))).toBeLessThan(1e-9))
  }
}

describe('PostgresStore readings', () => {
  it('answers a 30-day range raw or in buckets as SqliteStore does, the interior from the rollups, one partition per day', async () => {
    const url = await pg.createDatabase()
    const store = await openPg(url, { retentionMs: 40 * DAY })
    const sqlite = openSqlite({ retentionMs: 40 * DAY })
    const t0 = Math.floor(Date.now() / DAY) * DAY - 30 * DAY + 17_000
    // 30 days at one reading per 30 s, with a peak, and a sparse second metric
    const data = [
      ...series('d', 'm', 30 * 2880, (i) => t0 + i * 30_000, (i) => Math.round(Math.sin(i / 500) * 1000) / 10 + (i === 77_777 ? 500 : 0)),
      ...series('d', 'sparse', 300, (i) => t0 + i * 2 * HOUR + 1234, (i) => i % 7),
    ]
    for (let i = 0; i < data.length; i += 10_000) {
      store.append(data.slice(i, i + 10_000))
      sqlite.append(data.slice(i, i + 10_000))
    }
    await store.flush()
    await sqlite.flush()
    expect(store.usage).toMatchObject({ queueDepth: 0, writeFailures: 0 })

    const partitions = await pg.sql<{ n: string }>(url, `SELECT count(*) AS n FROM pg_inherits WHERE inhparent = 'readings'::regclass`)
    expect(Number(partitions[0]!.n)).toBeGreaterThanOrEqual(31)

    // not aligned to minutes or hours, so the edges come from finer tiers
    const from = t0 + 3 * HOUR + 17 * MINUTE + 25_000
    const to = t0 + 28 * DAY + 5 * HOUR + 41 * MINUTE + 5_000
    const queries = [
      { from: t0 + 5 * HOUR, to: t0 + 6 * HOUR, maxPoints: 1000 }, // raw points
      { from, to, maxPoints: 200 }, // hourly rollups
      { from, to, maxPoints: 3000 }, // minute rollups
      { from: t0 + 2 * HOUR, to: t0 + 2 * DAY, maxPoints: 30_000 }, // raw buckets
      { from, to, maxPoints: 1 },
      { from: t0 - DAY, to: t0 + 31 * DAY },
    ]
    for (const q of queries) {
      const expected = await sqlite.query({ device: 'd', ...q })
      const actual = await store.query({ device: 'd', ...q })
      expectSameHistory(actual, expected)
    }
    const hourly = (await store.query({ device: 'd', metrics: ['m'], from, to, maxPoints: 200 })).metrics.m!
    expect('buckets' in hourly && hourly.bucketMs % HOUR === 0 && Math.max(...hourly.buckets.map(([, , max]) => max))).toBe(Math.round(Math.sin(77_777 / 500) * 1000) / 10 + 500)
    expect(await store.latest('d')).toEqual(await sqlite.latest('d'))
    expect(await store.query({ device: 'nobody', from, to })).toEqual(await sqlite.query({ device: 'nobody', from, to }))

    // proof that the interior comes from the rollups: without the raw rows the answer stays
    await pg.sql(url, 'DELETE FROM readings WHERE ts >= $1 AND ts < $2', [t0 + 2 * DAY, t0 + 27 * DAY])
    expect((await store.query({ device: 'd', metrics: ['m'], from, to, maxPoints: 200 })).metrics.m).toEqual(hourly)
  })

  it('lets two nodes write the same series at once: one row per series, every reading, rollups that add up, no deadlock', async () => {
    const url = await pg.createDatabase()
    const a = await openPg(url, { flushIntervalMs: 5 })
    const b = await openPg(url, { flushIntervalMs: 5 })
    const t0 = Math.floor(Date.now() / HOUR) * HOUR - HOUR
    const metrics = Array.from({ length: 40 }, (_, i) => `m${i}`)
    const all: Reading[] = []
    // each round both nodes write every series, node a the even milliseconds and node b the odd ones,
    // into the same minute buckets: their transactions meet on the same series and rollup rows
    for (let round = 0; round < 30; round++) {
      for (const [node, store] of [a, b].entries()) {
        const batch: Reading[] = []
        for (const [i, metric] of metrics.entries()) {
          for (let k = 0; k < 25; k++) batch.push({ device: i % 2 ? 'east' : 'west', metric, ts: t0 + round * 2000 + k * 2 + node, value: round + k / 4 + node })
        }
        store.append(batch)
        all.push(...batch)
      }
      await new Promise((resolve) => setTimeout(resolve, 3))
    }
    await Promise.all([a.flush(), b.flush()])
    expect([a.usage.writeFailures, b.usage.writeFailures]).toEqual([0, 0])
    expect([a.usage.queueDepth, b.usage.queueDepth]).toEqual([0, 0])

    const seriesRows = await pg.sql<{ device: string; metric: string }>(url, 'SELECT device, metric FROM series')
    expect(seriesRows).toHaveLength(metrics.length)
    expect(Number((await pg.sql<{ n: string }>(url, 'SELECT count(*) AS n FROM readings'))[0]!.n)).toBe(all.length)

    const expected = new Map<string, { sum: number; count: number; min: number; max: number }>()
    for (const r of all) {
      const key = `${r.device}/${r.metric}/${r.ts - (r.ts % MINUTE)}`
      const e = expected.get(key) ?? { sum: 0, count: 0, min: Infinity, max: -Infinity }
      expected.set(key, { sum: e.sum + r.value, count: e.count + 1, min: Math.min(e.min, r.value), max: Math.max(e.max, r.value) })
    }
    const rollups = await pg.sql<{ key: string; sum: number; count: string; min: number; max: number }>(
      url,
      `SELECT s.device || '/' || s.metric || '/' || r.start AS key, r.sum, r.count, r.min, r.max FROM rollup_1m r JOIN series s ON s.id = r.series_id`,
    )
    expect(rollups).toHaveLength(expected.size)
    for (const r of rollups) {
      const e = expected.get(r.key)!
      expect([Number(r.count), r.min, r.max]).toEqual([e.count, e.min, e.max])
      expect(r.sum).toBeCloseTo(e.sum, 6)
    }
    const hourly = await pg.sql<{ count: string }>(url, 'SELECT sum(count) AS count FROM rollup_1h')
    expect(Number(hourly[0]!.count)).toBe(all.length)
    // either node answers with what both wrote
    const q = { device: 'east', metrics: ['m1'], from: t0, to: t0 + HOUR }
    const seen = await a.query(q)
    expect(seen).toEqual(await b.query(q))
    expect('points' in seen.metrics.m1! && seen.metrics.m1.points).toHaveLength(30 * 50)
  })

  it('exports CSV byte for byte as SqliteStore does: quoting, number formats, ties, ranges', async () => {
    const url = await pg.createDatabase()
    const store = await openPg(url)
    const sqlite = openSqlite()
    const names = ['plain', 'temp, "inner"', ' padded', 'line\nbreak', 'ünïcødé €']
    const special = [0, -0, 1, -1, 0.1 + 0.2, 1 / 3, 1e21, 1e-7, 1.5e-7, 123e-20, 1e-6, 0.000001234, 1e15, 1e16, 123456789012345680000, 2 ** 53 + 2, Number.MAX_VALUE, -Number.MAX_VALUE, Number.MIN_VALUE, 1e300, -4.5e-300, 0.0001, 0.00001, 100, 1234.5678, 1e20, 1.7976931348623157e308, 5e-324, 22.5]
    let seed = 42
    const random = () => (seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31
    const t0 = Math.floor(Date.now() / DAY) * DAY - 2 * DAY - 7 * HOUR
    const readings: Reading[] = []
    for (let i = 0; i < 6000; i++) {
      // several metrics in one millisecond (ties ordered by the metric's place), over three days
      const ts = t0 + Math.floor(i / 3) * 60_000 + (i % 5 === 0 ? 0.6 : 0)
      const value = i < special.length ? special[i]! : (random() - 0.5) * 10 ** Math.floor(random() * 60 - 30)
      readings.push({ device: 'd', metric: names[i % names.length]!, ts, value })
    }
    // the later reading of one millisecond wins
    readings.push({ device: 'd', metric: 'plain', ts: t0, value: 99 }, { device: 'd', metric: 'plain', ts: t0, value: 100 })
    readings.push({ device: 'other', metric: 'plain', ts: t0 + 5, value: 7 })
    store.append(readings)
    sqlite.append(readings)
    await store.flush()
    await sqlite.flush()

    const exports = [
      { device: 'd' },
      { device: 'd', metrics: ['temp, "inner"', 'plain'] },
      { device: 'd', metrics: ['plain', 'nope'], from: t0 + DAY + 0.5, to: t0 + DAY + 3 * HOUR + 0.5 },
      { device: 'd', from: t0 + DAY - 0.5 },
      { device: 'd', to: t0 + 10 * MINUTE },
      { device: 'd', metrics: ['nope'] },
      { device: 'nobody' },
      { device: 'd', from: t0 + 100, to: t0 + 50 },
    ]
    for (const q of exports) {
      const expected = await text(sqlite.exportCsv(q))
      const actual = await text(store.exportCsv(q))
      expect(actual, JSON.stringify(q)).toBe(expected)
    }
    const full = await text(store.exportCsv({ device: 'd' }))
    expect(full.split('\r\n')).toHaveLength(6000 + 2)
    expect(full).toContain(`\r\n${t0},plain,100\r\n`)
  })

  it('streams a 200k-row export with backpressure: memory stays flat while the reader waits', async () => {
    const url = await pg.createDatabase()
    // one connection for reads: the export's is the one the next query gets
    const store = await openPg(url, { maxReadConnections: 1 })
    const t0 = Math.floor(Date.now() / DAY) * DAY - 3 * DAY
    const perMetric = 100_000
    const step = 2500
    // the series and each day's partitions through the store, the bulk straight into the table
    const seed: Reading[] = []
    for (const metric of ['power', 'voltage']) for (let day = 0; day < 4; day++) seed.push({ device: 'meter', metric, ts: t0 + day * DAY + 1, value: 0 })
    store.append(seed)
    await store.flush()
    await pg.sql(
      url,
      `INSERT INTO readings (series_id, ts, value) SELECT s.id, $1::bigint + g * $2::bigint, g / 7.0 FROM series s, generate_series(1, $3::int) g WHERE s.device = 'meter'`,
      [t0, step, perMetric],
    )
    const rows = 2 * perMetric + seed.length

    const memory = () => process.memoryUsage().heapUsed + process.memoryUsage().arrayBuffers
    const iterator = store.exportCsv({ device: 'meter' })[Symbol.asyncIterator]()
    expect((await iterator.next()).value).toBe('ts,metric,value\r\n')
    const first = await iterator.next()
    expect(first.done).toBe(false)
    // the reader waits: PostgreSQL's rows stay in the socket and the server, not in this process
    const buffers = process.memoryUsage().arrayBuffers
    let waitingPeak = buffers
    for (let i = 0; i < 20; i++) {
      await new Promise((resolve) => setTimeout(resolve, 25))
      waitingPeak = Math.max(waitingPeak, process.memoryUsage().arrayBuffers)
    }
    expect(waitingPeak - buffers, 'Buffers held while the reader waits').toBeLessThan(2 ** 20)

    const start = memory()
    let peak = start
    let lines = (first.value as string).split('\r\n').length - 1
    let chunks = 1
    let last = 0
    let ordered = true
    for (let next = await iterator.next(); !next.done; next = await iterator.next()) {
      const chunk = next.value as string
      chunks++
      expect(chunk.endsWith('\r\n')).toBe(true)
      for (let at = chunk.indexOf('\r\n'), from = 0; at !== -1; from = at + 2, at = chunk.indexOf('\r\n', from)) {
        const ts = Number(chunk.slice(from, chunk.indexOf(',', from)))
        if (ts < last) ordered = false
        last = ts
        lines++
      }
      if (chunks % 16 === 0) peak = Math.max(peak, memory())
    }
    expect(lines).toBe(rows)
    expect(ordered).toBe(true)
    expect(chunks).toBeGreaterThan(20)
    expect(peak - start, 'heap and Buffers grown while streaming').toBeLessThan(32 * 2 ** 20)
    // the connection went back to the pool in a clean state: the next query works
    expect(Object.keys(await store.latest('meter'))).toEqual(['power', 'voltage'])

    // an export its reader left open does not hold the store's close: its connection is cut
    const abandoned = store.exportCsv({ device: 'meter' })[Symbol.asyncIterator]()
    await abandoned.next()
    await abandoned.next()
    const closing = performance.now()
    await close(store)
    expect(performance.now() - closing).toBeLessThan(3000)
    await expect(async () => {
      for (let i = 0; i < 1000 && !(await abandoned.next()).done; i++);
    }).rejects.toThrow()
  })

  it('drops whole days past retention, makes the next days ahead, and skips readings that are already past it', async () => {
    const url = await pg.createDatabase()
    const now = Date.now()
    const today = Math.floor(now / DAY)
    const writer = await openPg(url, { retentionMs: 40 * DAY })
    writer.append(series('d', 'm', 20 * 24, (i) => now - 20 * DAY + i * HOUR, () => 1))
    await writer.flush()
    await close(writer)
    const days = async () =>
      (await pg.sql<{ start: string }>(url, `SELECT (regexp_match(pg_get_expr(c.relpartbound, c.oid), '\\d+'))[1] AS start FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'readings'::regclass`))
        .map((r) => Number(r.start) / DAY)
        .sort((x, y) => x - y)
    expect(await days()).toContain(today + 1)
    expect(Math.min(...(await days()))).toBe(Math.floor((now - 20 * DAY) / DAY))

    const { logger, lines } = capture()
    const store = await openPg(url, { retentionMs: 5 * DAY, logger })
    for (let steps = 0; (await store.prune(now)) > 0; steps++) expect(steps).toBeLessThan(5)
    const kept = await days()
    // every day that ends after the cutoff stays, today and tomorrow included
    expect(kept[0]).toBe(Math.floor((now - 5 * DAY) / DAY))
    expect(kept).toContain(today + 1)
    for (const table of ['rollup_1m', 'rollup_1h']) {
      const n = await pg.sql<{ n: string }>(url, `SELECT count(*) AS n FROM pg_inherits WHERE inhparent = '${table}'::regclass`)
      expect(Number(n[0]!.n), table).toBe(kept.length)
    }
    const left = await pg.sql<{ n: string }>(url, `SELECT count(*) AS n FROM pg_class WHERE relname ~ '^(readings|rollup_1m|rollup_1h)_[0-9]{8}$'`)
    expect(Number(left[0]!.n)).toBe(kept.length * 3)
    const m = (await store.query({ device: 'd', from: 0, to: now + DAY })).metrics.m!
    expect('points' in m && Math.min(...m.points.map(([ts]) => ts))).toBeGreaterThanOrEqual(kept[0]! * DAY)
    expect(lines.filter((l) => l.level >= 40)).toEqual([])

    // a reading whose day is past retention is counted, not written (its partition would go at once)
    store.append([{ device: 'd', metric: 'm', ts: now - 9 * DAY, value: 5 }, { device: 'd', metric: 'm', ts: now - HOUR + 1, value: 6 }])
    await store.flush()
    expect(store.usage).toMatchObject({ expired: 1, writeFailures: 0 })
    expect(await days()).toEqual(kept)
  })

  it('forgets a device on every node: its series, rows and record go, and it comes back as a new series', async () => {
    const url = await pg.createDatabase()
    const a = await openPg(url)
    const b = await openPg(url)
    const t0 = Math.floor(Date.now() / HOUR) * HOUR - HOUR
    b.append(series('gone', 'm', 5000, (i) => t0 + i, (i) => i))
    b.append(series('kept', 'm', 10, (i) => t0 + i, (i) => i))
    b.saveDevices([{ id: 'gone', snapshot: { v: 1 } }, { id: 'kept', snapshot: { v: 1 } }])
    await b.flush()
    const oldId = (await pg.sql<{ id: string }>(url, `SELECT id FROM series WHERE device = 'gone'`))[0]!.id

    a.forget('gone')
    await a.flush()
    expect((await b.query({ device: 'gone', from: t0, to: t0 + HOUR })).metrics).toEqual({})
    expect((await b.loadDevices()).map((d) => d.id)).toEqual(['kept'])
    // node b knew the old series: what it writes now starts a new one, seen by every node
    b.append(series('gone', 'm', 1, () => t0 + 6000, () => 42))
    await b.flush()
    expect((await a.query({ device: 'gone', from: t0, to: t0 + HOUR })).metrics).toEqual({ m: { points: [[t0 + 6000, 42]] } })
    const newId = (await pg.sql<{ id: string }>(url, `SELECT id FROM series WHERE device = 'gone'`))[0]!.id
    expect(newId).not.toBe(oldId)

    // retention deletes the forgotten rows in chunks of 10,000 at most (on whichever node takes the step)
    const count = async (sql: string) => Number((await pg.sql<{ n: string }>(url, sql, [oldId]))[0]!.n)
    await until('the forgotten series to be cleared', async () => (await a.prune()) >= 0 && (await count('SELECT count(*) AS n FROM series_forgotten WHERE series_id = $1')) === 0)
    expect(await count('SELECT count(*) AS n FROM readings WHERE series_id = $1')).toBe(0)
    expect(await count('SELECT count(*) AS n FROM rollup_1m WHERE series_id = $1')).toBe(0)
    expect(await count(`SELECT count(*) AS n FROM readings WHERE series_id <> $1`)).toBe(11)
  })
})

describe('PostgresStore message log', () => {
  const envelope = (topic: string, ts: number, extra: Partial<Envelope> = {}): Envelope => ({ topic, payload: `p${ts}`, ts, source: 'mqtt', qos: 0, retain: false, ...extra })

  it('pages newest first with a filter and before/beforeId as SqliteStore does', async () => {
    const store = await openPg(await pg.createDatabase())
    const sqlite = openSqlite()
    const topics = ['a/x/t', 'a/y/t', 'b/x/t', 'a/x/u', 'a/t', '$SYS/x', 'a%/_x']
    const t0 = Date.now() - 60_000
    const batch = Array.from({ length: 3000 }, (_, i) => envelope(topics[i % topics.length]!, t0 + Math.floor(i / 9)))
    store.log(batch)
    sqlite.log(batch)
    await store.flush()
    await sqlite.flush()
    const page = async (s: PostgresStore | SqliteStore, filter: string) => {
      const seen: LoggedEnvelope[] = []
      let cursor: { before?: number; beforeId?: number } = {}
      for (let pages = 0; pages < 1000; pages++) {
        const got = await s.messages({ filter, limit: 17, ...cursor })
        seen.push(...got)
        if (got.length < 17) return seen
        const last = got[got.length - 1]!
        cursor = { before: last.ts, beforeId: last.id }
      }
      throw new Error('more pages than messages')
    }
    for (const filter of ['a/+/t', '#', 'a/#', 'b/x/t', 'nothing/+', '$SYS/#', 'a%/_x', '+/+/t']) {
      const actual = await page(store, filter)
      const expected = await page(sqlite, filter)
      expect(actual.map(({ id: _id, ...e }) => e), filter).toEqual(expected.map(({ id: _id, ...e }) => e))
      expect(new Set(actual.map((m) => m.id)).size).toBe(actual.length)
    }
    expect(await store.messages({ before: t0 + 100, limit: 5000 })).toHaveLength((await sqlite.messages({ before: t0 + 100, limit: 5000 })).length)
    expect(await store.messages({ limit: 0 })).toEqual([])
    // a cursor within a millisecond: everything before its end, as SQLite compares
    const strip = (list: LoggedEnvelope[]) => list.map(({ id: _id, ...e }) => e)
    const within = await store.messages({ before: t0 + 10.5, limit: 5000 })
    expect(within.length).toBeGreaterThan(0)
    expect(strip(within)).toEqual(strip(await sqlite.messages({ before: t0 + 10.5, limit: 5000 })))
  })

  it('keeps every field: MQTT 5 properties in their order, payloads cut to 4 KiB, and text PostgreSQL cannot hold', async () => {
    const url = await pg.createDatabase()
    const store = await openPg(url)
    const properties: MessageProperties = {
      userProperties: { zeta: 'last first', site: 'lab', tag: ['b', 'a'], alpha: 'x' },
      contentType: 'application/json',
      payloadFormatIndicator: true,
      responseTopic: 'reply/to',
      correlationData: 'AAE=',
      messageExpiryInterval: 60,
    }
    const t0 = Date.now() - 1000
    store.log([
      envelope('t/props', t0, { properties, clientId: 'c5', qos: 1 }),
      envelope('t/text', t0 + 1, { payload: '€'.repeat(3000), clientId: 'c1', qos: 1, retain: true }),
      envelope('t/bin', t0 + 2, { payload: 'QUJD'.repeat(3000), encoding: 'base64', source: 'socket', qos: 2 }),
      envelope('t/nul', t0 + 3, { payload: 'a\u0000b', properties: { userProperties: { k: 'v\u0000' } } }),
    ])
    await store.flush()
    expect(store.usage.writeFailures).toBe(0)
    const [nul, bin, text, props] = await store.messages({ limit: 10 })
    expect(props).toEqual({ id: props!.id, topic: 't/props', payload: `p${t0}`, ts: t0, source: 'mqtt', qos: 1, retain: false, clientId: 'c5', properties })
    expect(Object.keys(props!.properties!.userProperties!)).toEqual(['zeta', 'site', 'tag', 'alpha'])
    expect(bin).toMatchObject({ topic: 't/bin', encoding: 'base64', source: 'socket', qos: 2, retain: false, payload: 'QUJD'.repeat(1024) })
    expect(bin).not.toHaveProperty('clientId')
    expect(bin).not.toHaveProperty('properties')
    expect(text).toMatchObject({ topic: 't/text', clientId: 'c1', qos: 1, retain: true, payload: '€'.repeat(1365) })
    expect(text).not.toHaveProperty('encoding')
    expect(nul).toMatchObject({ payload: 'a\uFFFDb', properties: { userProperties: { k: 'v\uFFFD' } } })
    // stored as json, not jsonb: the text as sent
    const raw = await pg.sql<{ p: string }>(url, `SELECT properties::text AS p FROM messages WHERE topic = 't/props'`)
    expect(raw[0]!.p).toBe(JSON.stringify(properties))
  })

  it('deletes messages past log retention and over the log bound', async () => {
    const store = await openPg(await pg.createDatabase(), { logRetentionMs: DAY, maxLogMessages: 100 })
    const now = Date.now()
    store.log(Array.from({ length: 50 }, (_, i) => envelope('old', now - 2 * DAY + i)))
    store.log(Array.from({ length: 250 }, (_, i) => envelope('new', now - MINUTE + i)))
    await store.flush()
    for (let steps = 0; (await store.prune(now)) > 0; steps++) expect(steps).toBeLessThan(5)
    const left = await store.messages({ limit: 1000 })
    expect(left).toHaveLength(100)
    expect(left.every((m) => m.topic === 'new' && m.ts >= now - MINUTE + 150)).toBe(true)
  })
})

describe('PostgresStore saved state and bounds', () => {
  it('keeps device snapshots (newest wins) and the formats across a reopen', async () => {
    const url = await pg.createDatabase()
    let store = await openPg(url)
    store.saveDevices([{ id: 'd1', snapshot: { v: 1 } }, { id: 'd2', snapshot: { v: 1 } }, { id: 'B', snapshot: { name: 'nul\u0000' } }])
    store.saveDevices([{ id: 'd1', snapshot: { v: 2 } }])
    store.saveDevices([{ id: 'd1', snapshot: { v: 3, name: 'kitchen', nested: { list: [1, 'two', null] } } }])
    store.saveFormats({ homie: { devices: ['x'] }, ha: { 'sensor/a': { unit: '°C' } } })
    expect(() => store.saveDevices([{ id: 'bad', snapshot: { n: 1n } }])).not.toThrow()
    await store.flush()
    await close(store)
    store = await openPg(url)
    expect(await store.loadDevices()).toEqual([
      { id: 'B', snapshot: { name: 'nul\uFFFD' } },
      { id: 'd1', snapshot: { v: 3, name: 'kitchen', nested: { list: [1, 'two', null] } } },
      { id: 'd2', snapshot: { v: 1 } },
    ])
    expect(await store.loadFormats()).toEqual({ homie: { devices: ['x'] }, ha: { 'sensor/a': { unit: '°C' } } })
    expect(await (await openPg(await pg.createDatabase())).loadFormats()).toBeUndefined()
  })

  it('drops the newest over the queue bound, counted and reported as store_queue', async () => {
    const hits: [LimitName, Record<string, unknown> | undefined][] = []
    const store = await openPg(await pg.createDatabase(), { maxQueue: 100, maxQueueBytes: 10_000, onLimit: (limit, detail) => hits.push([limit, detail]) })
    const t0 = Date.now() - MINUTE
    store.append(series('d', 'm', 150, (i) => t0 + i, (i) => i))
    store.log(Array.from({ length: 10 }, (_, i) => ({ topic: 't', payload: 'x'.repeat(2000), ts: t0 + i, source: 'mqtt' as const, qos: 0 as const, retain: false })))
    expect(store.usage).toMatchObject({ queueDepth: 100, dropped: 60 })
    expect(hits.map(([limit]) => limit)).toEqual(['store_queue', 'store_queue'])
    expect(hits[0]![1]).toMatchObject({ dropped: 50, reason: 'queue_full' })
    await store.flush()
    const m = (await store.query({ device: 'd', from: t0, to: t0 + 1000 })).metrics.m!
    expect('points' in m && m.points).toHaveLength(100)
    expect(Object.values(store.usage).every((v) => typeof v === 'number' && Number.isFinite(v))).toBe(true)
    expect(store.usage.dbBytes).toBeGreaterThan(0)
  })
})

describe('PostgresStore.open', () => {
  const openError = async (url: string): Promise<StoreOpenError> => {
    try {
      await openPg(url, { connectTimeoutMs: 5000 })
    } catch (err) {
      expect(err).toBeInstanceOf(StoreOpenError)
      const e = err as StoreOpenError
      expect(e.message).not.toMatch(/\n/)
      expect(e.message).not.toContain('secret')
      expect(e.message).toMatch(/--history/)
      return e
    }
    throw new Error(`expected ${url} to be refused`)
  }

  it('refuses an unreachable server, a missing database and a bad URL in one line, without the password', async () => {
    const started = performance.now()
    // a port nobody listens on
    const closed = await new Promise<number>((resolve) => {
      const server = createServer()
      server.listen(0, '127.0.0.1', () => {
        const { port } = server.address() as AddressInfo
        server.close(() => resolve(port))
      })
    })
    const unreachable = await openError(`postgres://pulse:secret@127.0.0.1:${closed}/history`)
    expect(unreachable.message).toBe(
      `postgres://pulse@127.0.0.1:${closed}/history cannot serve as the history store (connect ECONNREFUSED 127.0.0.1:${closed}); start PostgreSQL there or fix --history`,
    )
    expect(unreachable.file).toBe(`postgres://pulse@127.0.0.1:${closed}/history`)
    const missing = await openError(pg.url('no_such_db').replace('not-asked', 'secret'))
    expect(missing.message).toMatch(/database "no_such_db" does not exist.*; create the database \(createdb\) or fix --history$/)
    expect((await openError('mysql://u:secret@host/db')).message).toMatch(/is not a PostgreSQL URL/)
    expect(performance.now() - started).toBeLessThan(5000)
  })

  it('refuses a database of a newer schema, and one with tables of another program', async () => {
    const url = await pg.createDatabase()
    await close(await openPg(url))
    await pg.sql(url, `UPDATE pulseboard_meta SET value = '99' WHERE key = 'schema'`)
    expect((await openError(url)).message).toMatch(new RegExp(`newer Pulseboard \\(schema 99, this one knows ${POSTGRES_SCHEMA_VERSION}\\); upgrade Pulseboard or choose another database in --history$`))
    await pg.sql(url, `UPDATE pulseboard_meta SET value = '${POSTGRES_SCHEMA_VERSION}' WHERE key = 'schema'`)
    expect(await openPg(url)).toBeInstanceOf(PostgresStore)

    const foreign = await pg.createDatabase()
    await pg.sql(foreign, 'CREATE TABLE readings (x int)')
    expect((await openError(foreign)).message).toMatch(/holds tables of another program \(readings\)/)
    expect(await pg.sql(foreign, `SELECT 1 FROM pg_class WHERE relname = 'pulseboard_meta'`)).toEqual([])
  })
})

describe('PostgresStore when the database goes away', () => {
  it('keeps the live path going, queues within its bound, and writes the queue once the database is back', async () => {
    const url = await pg.createDatabase()
    const { logger, lines } = capture()
    const hits: string[] = []
    const store = await openPg(url, { logger, maxQueue: 5000, flushIntervalMs: 50, onLimit: (limit) => hits.push(limit) })
    const t0 = Date.now() - 10 * MINUTE
    store.append(series('d', 'm', 100, (i) => t0 + i, (i) => i))
    await store.flush()

    await pg.stop()
    try {
      // writes never throw and never wait, with the database gone
      const started = performance.now()
      store.append(series('d', 'm', 3000, (i) => t0 + 1000 + i, (i) => i))
      store.log([{ topic: 'during/outage', payload: 'x', ts: t0 + 5000, source: 'mqtt', qos: 0, retain: false }])
      expect(performance.now() - started).toBeLessThan(50)
      await until('a failed write', () => store.usage.writeFailing === 1)
      await until('a few retries', () => store.usage.writeFailures >= 3)
      // while it fails, the oldest make room for the newest
      store.append(series('d', 'm', 3000, (i) => t0 + 10_000 + i, (i) => i))
      expect(store.usage).toMatchObject({ queueDepth: 5000, dropped: 1001 })
      expect(hits).toEqual(['store_queue'])
      await expect(store.query({ device: 'd', from: t0, to: t0 + MINUTE })).rejects.toThrow()
    } finally {
      await pg.start()
    }
    await until('the queue to be written', () => store.usage.queueDepth === 0 && store.usage.writeFailing === 0, 15_000)
    const m = (await store.query({ device: 'd', from: t0, to: t0 + MINUTE })).metrics.m!
    if (!('points' in m)) throw new Error('expected points')
    // the first 100, then the newest 5000 of what was queued meanwhile: the oldest 1001 readings went
    expect(m.points).toHaveLength(100 + 3000 - 1001 + 3000)
    expect(m.points[100]![0]).toBe(t0 + 1000 + 1001)
    expect(m.points.at(-1)![0]).toBe(t0 + 10_000 + 2999)
    expect(store.usage.dropped).toBe(1001)
    expect(await store.messages({ filter: 'during/#', limit: 10 })).toHaveLength(1)
    const errors = lines.filter((l) => l.level >= 50)
    expect(errors).toHaveLength(1)
    expect(errors[0]!.msg).toMatch(/writing to PostgreSQL failed/)
    expect(lines.some((l) => l.level === 30 && /writing works again/.test(l.msg))).toBe(true)
  }, 40_000)
})
