import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { pino, type Logger } from 'pino'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import type { Envelope, Reading } from '../../protocol/index.ts'
import type { LimitName } from '../../protocol/limits.ts'
import { MAX_LOGGED_PAYLOAD_BYTES, type LoggedEnvelope } from '../../store/history.ts'
import { SqliteStore, StoreOpenError, literalPrefix, type SqliteDatabase, type SqliteStoreOptions } from '../../store/sqlite.ts'

const Database = createRequire(import.meta.url)('better-sqlite3') as new (file: string) => SqliteDatabase

const MINUTE = 60_000
const HOUR = 3_600_000
const DAY = 24 * HOUR

let dir: string
const open: SqliteStore[] = []

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'pulseboard-sqlite-'))
})

afterEach(async () => {
  vi.useRealTimers()
  for (const store of open.splice(0)) await store.close()
  rmSync(dir, { recursive: true, force: true })
})

function openStore(opts: Partial<SqliteStoreOptions> = {}): SqliteStore {
  const store = SqliteStore.open({ file: join(dir, 'pulseboard.db'), ...opts })
  open.push(store)
  return store
}

async function reopen(store: SqliteStore, opts: Partial<SqliteStoreOptions> = {}): Promise<SqliteStore> {
  await store.close()
  open.splice(open.indexOf(store), 1)
  return openStore(opts)
}

async function collect(iterable: AsyncIterable<string>): Promise<string[]> {
  const chunks: string[] = []
  for await (const chunk of iterable) chunks.push(chunk)
  return chunks
}

function series(device: string, metric: string, n: number, ts: (i: number) => number, value: (i: number) => number): Reading[] {
  return Array.from({ length: n }, (_, i) => ({ device, metric, ts: ts(i), value: value(i) }))
}

/** A pino logger whose lines land in an array. */
type LogLine = { level: number; msg: string; code?: string }

function capture(): { logger: Logger; lines: LogLine[] } {
  const lines: LogLine[] = []
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(JSON.parse(chunk.toString()) as LogLine)
      done()
    },
  })
  const logger: Logger = pino({ level: 'debug' }, stream)
  return { logger, lines }
}

describe('SqliteStore readings', () => {
  it('round-trips readings, the later of one millisecond winning, and keeps them across a reopen', async () => {
    let store = openStore()
    store.append([
      { device: 'd1', metric: 'temp', ts: 1000, value: 20 },
      { device: 'd1', metric: 'hum', ts: 1000, value: 50 },
      { device: 'd2', metric: 'temp', ts: 1500, value: 7 },
      { device: 'd1', metric: 'temp', ts: 2000, value: 21 },
      { device: 'd1', metric: 'temp', ts: 2000, value: 22 },
    ])
    expect(store.usage.queueDepth).toBe(5)
    await store.flush()
    expect(store.usage.queueDepth).toBe(0)
    const expected = { temp: { points: [[1000, 20], [2000, 22]] }, hum: { points: [[1000, 50]] } }
    expect((await store.query({ device: 'd1', from: 0, to: 10_000 })).metrics).toEqual(expected)
    expect((await store.query({ device: 'd1', metrics: ['hum', 'nope'], from: 0, to: 10_000 })).metrics).toEqual({ hum: expected.hum })
    expect(await store.latest('d1')).toEqual({ temp: { ts: 2000, value: 22 }, hum: { ts: 1000, value: 50 } })
    store = await reopen(store)
    expect((await store.query({ device: 'd1', from: 0, to: 10_000 })).metrics).toEqual(expected)
    expect(store.usage).toMatchObject({ series: 3, readings: 5 })
    expect(Object.values(store.usage).every((v) => typeof v === 'number' && Number.isFinite(v))).toBe(true)
    expect(store.usage.dbBytes).toBeGreaterThan(0)
  })

  it('answers raw points when they fit and buckets that keep the peaks when not, at most maxPoints, starting at whole multiples', async () => {
    const store = openStore()
    // 100 ms apart over 500 s: buckets from the raw rows; 1 s apart over 2 days: from the rollups
    store.append(series('d', 'fast', 5000, (i) => 1_700_000_000_000 + i * 100, (i) => (i === 1234 ? 99 : i === 4321 ? -99 : 1)))
    store.append(series('d', 'slow', 2 * 86_400, (i) => 1_700_000_000_000 + i * 1000, (i) => (i === 100_000 ? 1e6 : i % 10)))
    await store.flush()
    const raw = await store.query({ device: 'd', metrics: ['fast'], from: 1_700_000_000_000, to: 1_700_000_000_900 })
    expect(raw.metrics.fast).toEqual({ points: Array.from({ length: 10 }, (_, i) => [1_700_000_000_000 + i * 100, i === 1234 ? 99 : 1]) })
    for (const [metric, maxPoints] of [['fast', 100], ['fast', 7], ['slow', 1000], ['slow', 30], ['slow', 1]] as const) {
      const m = (await store.query({ device: 'd', metrics: [metric], from: 0, to: 2e12, maxPoints })).metrics[metric]!
      if (!('buckets' in m)) throw new Error(`expected buckets for ${metric} at ${maxPoints}`)
      expect(m.buckets.length).toBeGreaterThan(0)
      expect(m.buckets.length).toBeLessThanOrEqual(maxPoints)
      expect(Number.isInteger(m.bucketMs)).toBe(true)
      for (const [start] of m.buckets) {
        expect(Number.isInteger(start)).toBe(true)
        expect(start % m.bucketMs).toBe(0)
      }
      expect(Math.max(...m.buckets.map(([, , max]) => max))).toBe(metric === 'fast' ? 99 : 1e6)
      expect(Math.min(...m.buckets.map(([, min]) => min))).toBe(metric === 'fast' ? -99 : 0)
    }
    // the rollups are stored with integer keys, not REAL ones
    const types = store.db.prepare<string>('SELECT DISTINCT typeof(start) FROM rollup_1m UNION SELECT DISTINCT typeof(start) FROM rollup_1h').pluck().all()
    expect(types).toEqual(['integer'])
    expect(store.db.prepare<number>('SELECT count(*) FROM rollup_1m WHERE start % 60000 != 0').pluck().get()).toBe(0)
  })

  it('answers a long range from the rollups, with buckets equal to what the raw data gives, edges included', async () => {
    const store = openStore()
    const t0 = Date.UTC(2024, 0, 1)
    // 20 days at one reading per 10 s
    const data = series('d', 'm', 20 * 8640, (i) => t0 + i * 10_000, (i) => Math.round(Math.sin(i / 500) * 1000) / 10 + (i === 77_777 ? 500 : 0))
    store.append(data)
    await store.flush()
    // not aligned to minutes or hours, so the edges come from finer tiers
    const from = t0 + 3 * HOUR + 17 * MINUTE + 25_000
    const to = t0 + 18 * DAY + 5 * HOUR + 41 * MINUTE + 5_000
    for (const maxPoints of [200, 3000]) {
      const m = (await store.query({ device: 'd', from, to, maxPoints })).metrics.m!
      if (!('buckets' in m)) throw new Error('expected buckets')
      expect(m.bucketMs % (maxPoints === 200 ? HOUR : MINUTE)).toBe(0)
      expect(m.buckets.length).toBeLessThanOrEqual(maxPoints)
      const inRange = data.filter((r) => r.ts >= from && r.ts <= to)
      const expected = new Map<number, number[]>()
      for (const r of inRange) {
        const start = r.ts - (r.ts % m.bucketMs)
        expected.set(start, [...(expected.get(start) ?? []), r.value])
      }
      expect(m.buckets.map(([start]) => start)).toEqual([...expected.keys()])
      for (const [start, min, max, avg] of m.buckets) {
        const values = expected.get(start)!
        expect([min, max]).toEqual([Math.min(...values), Math.max(...values)])
        expect(avg).toBeCloseTo(values.reduce((a, b) => a + b, 0) / values.length, 6)
      }
    }
    // proof that the interior comes from the rollups: without the raw rows the answer stays
    const before = (await store.query({ device: 'd', from, to, maxPoints: 200 })).metrics.m
    store.db.prepare('DELETE FROM readings WHERE ts >= ? AND ts < ?').run(t0 + 2 * DAY, t0 + 17 * DAY)
    expect((await store.query({ device: 'd', from, to, maxPoints: 200 })).metrics.m).toEqual(before)
  })

  it('exports 50k rows as CSV in order, streamed in chunks, with RFC 4180 quoting', async () => {
    const store = openStore()
    const odd = 'temp, "inner"'
    const readings: Reading[] = []
    for (let i = 0; i < 25_000; i++) {
      readings.push({ device: 'd', metric: 'plain', ts: 1000 + i * 2, value: i })
      readings.push({ device: 'd', metric: odd, ts: 1001 + i * 2, value: -i })
    }
    store.append(readings)
    store.append([{ device: 'other', metric: 'plain', ts: 1500, value: 1 }])
    await store.flush()
    const chunks = await collect(store.exportCsv({ device: 'd' }))
    expect(chunks.length).toBeGreaterThan(3)
    const lines = chunks.join('').split('\r\n')
    expect(lines.pop()).toBe('')
    expect(lines[0]).toBe('ts,metric,value')
    expect(lines).toHaveLength(50_001)
    expect(lines[1]).toBe('1000,plain,0')
    expect(lines[2]).toBe('1001,"temp, ""inner""",0')
    expect(lines[50_000]).toBe('50999,"temp, ""inner""",-24999')
    const ts = lines.slice(1).map((l) => Number(l.split(',')[0]))
    expect(ts.every((t, i) => i === 0 || t > ts[i - 1]!)).toBe(true)
    const part = (await collect(store.exportCsv({ device: 'd', metrics: ['plain'], from: 1010, to: 1020 }))).join('')
    expect(part).toBe('ts,metric,value\r\n1010,plain,5\r\n1012,plain,6\r\n1014,plain,7\r\n1016,plain,8\r\n1018,plain,9\r\n1020,plain,10\r\n')
  })
})

describe('SqliteStore message log', () => {
  const envelope = (topic: string, ts: number, extra: Partial<Envelope> = {}): Envelope => ({ topic, payload: `p${ts}`, ts, source: 'mqtt', qos: 0, retain: false, ...extra })

  it('pages newest first with a filter and before/beforeId, never repeating or skipping within a millisecond', async () => {
    const store = openStore()
    const topics = ['a/x/t', 'a/y/t', 'b/x/t', 'a/x/u', 'a/t']
    store.log(Array.from({ length: 3000 }, (_, i) => envelope(topics[i % 5]!, 1000 + Math.floor(i / 9))))
    await store.flush()
    for (const [filter, count] of [['a/+/t', 1200], ['#', 3000], ['a/#', 2400], ['b/x/t', 600], ['nothing/+', 0]] as const) {
      const seen: LoggedEnvelope[] = []
      let cursor: { before?: number; beforeId?: number } = {}
      for (;;) {
        const page = await store.messages({ filter, limit: 17, ...cursor })
        seen.push(...page)
        if (page.length < 17) break
        const last = page[page.length - 1]!
        cursor = { before: last.ts, beforeId: last.id }
      }
      expect(seen.length, filter).toBe(count)
      expect(new Set(seen.map((m) => m.id)).size).toBe(count)
      for (let i = 1; i < seen.length; i++) expect(seen[i - 1]!.ts * 1e6 + seen[i - 1]!.id).toBeGreaterThan(seen[i]!.ts * 1e6 + seen[i]!.id)
    }
    const older = await store.messages({ before: 1100, limit: 5000 })
    expect(older).toHaveLength(900)
    expect(older.every((m) => m.ts < 1100)).toBe(true)
    expect(literalPrefix('a/+/t')).toBe('a')
    expect(literalPrefix('a/b/#')).toBe('a/b')
    expect(literalPrefix('a/b')).toBe('a/b')
  })

  it('keeps every field, and payloads cut to 4 KiB with their encoding', async () => {
    const store = openStore()
    store.log([
      envelope('t/text', 1, { payload: '€'.repeat(3000), clientId: 'c1', qos: 1, retain: true }),
      envelope('t/bin', 2, { payload: 'QUJD'.repeat(3000), encoding: 'base64', source: 'socket', qos: 2 }),
    ])
    await store.flush()
    const [bin, text] = await store.messages({ limit: 10 })
    expect(bin).toMatchObject({ topic: 't/bin', ts: 2, encoding: 'base64', source: 'socket', qos: 2, retain: false, payload: 'QUJD'.repeat(1024) })
    expect(bin).not.toHaveProperty('clientId')
    expect(text).toMatchObject({ topic: 't/text', ts: 1, clientId: 'c1', qos: 1, retain: true, source: 'mqtt' })
    expect(text).not.toHaveProperty('encoding')
    expect(Buffer.byteLength(text!.payload)).toBeLessThanOrEqual(MAX_LOGGED_PAYLOAD_BYTES)
    expect(text!.payload).toBe('€'.repeat(1365))
  })
})

describe('SqliteStore saved state', () => {
  it('coalesces device snapshots (newest wins), keeps them and the formats across a reopen, and forget drops a device', async () => {
    let store = openStore()
    store.saveDevices([{ id: 'd1', snapshot: { v: 1 } }, { id: 'd2', snapshot: { v: 1 } }])
    store.saveDevices([{ id: 'd1', snapshot: { v: 2 } }])
    store.saveDevices([{ id: 'd1', snapshot: { v: 3, name: 'kitchen' } }])
    store.saveFormats({ homie: { devices: ['x'] } })
    // a snapshot that is not JSON is logged and skipped, never thrown at the registry
    expect(() => store.saveDevices([{ id: 'bad', snapshot: { n: 1n } }])).not.toThrow()
    // recent, so that retention leaves them alone
    const t0 = Math.floor(Date.now() / HOUR) * HOUR - HOUR
    store.append(series('d2', 'm', 100, (i) => t0 + i, (i) => i))
    store.append(series('d1', 'm', 10, (i) => t0 + i, (i) => i))
    await store.flush()
    store = await reopen(store)
    expect(await store.loadDevices()).toEqual([{ id: 'd1', snapshot: { v: 3, name: 'kitchen' } }, { id: 'd2', snapshot: { v: 1 } }])
    expect(await store.loadFormats()).toEqual({ homie: { devices: ['x'] } })

    store.forget('d2')
    await store.flush()
    expect((await store.loadDevices()).map((d) => d.id)).toEqual(['d1'])
    expect((await store.query({ device: 'd2', from: t0, to: t0 + 1000 })).metrics).toEqual({})
    while (store.prune() > 0);
    expect(store.db.prepare<number>('SELECT count(*) FROM readings').pluck().get()).toBe(10)
    expect(store.db.prepare<number>('SELECT count(*) FROM rollup_1m').pluck().get()).toBe(1)
    expect(store.db.prepare<number>('SELECT count(*) FROM series_forgotten').pluck().get()).toBe(0)
    // the device comes back as a new series, without the old points
    store.append(series('d2', 'm', 1, () => t0 + 5000, () => 42))
    await store.flush()
    expect((await store.query({ device: 'd2', from: t0, to: t0 + 10_000 })).metrics).toEqual({ m: { points: [[t0 + 5000, 42]] } })
  })
})

describe('SqliteStore bounds', () => {
  it('deletes readings, rollups and messages past retention or the log bound, in chunks', async () => {
    const now = Date.now()
    const store = openStore({ retentionMs: 10 * DAY, logRetentionMs: DAY, maxLogMessages: 100 })
    // 15,000 old readings: more than one retention step deletes
    store.append(series('d', 'old', 15_000, (i) => now - 20 * DAY + i * 1000, () => 1))
    store.append(series('d', 'new', 50, (i) => now - HOUR + i * 1000, () => 2))
    store.log(Array.from({ length: 50 }, (_, i) => ({ topic: 'old', payload: '', ts: now - 2 * DAY + i, source: 'mqtt', qos: 0, retain: false })))
    store.log(Array.from({ length: 250 }, (_, i) => ({ topic: 'new', payload: '', ts: now - MINUTE + i, source: 'mqtt', qos: 0, retain: false })))
    await store.flush()
    const first = store.prune(now)
    expect(first).toBeLessThanOrEqual(10_000)
    expect(first).toBeGreaterThan(0)
    let steps = 1
    while (store.prune(now) > 0) steps++
    expect(steps).toBeGreaterThan(1)
    const count = (sql: string) => store.db.prepare<number>(sql).pluck().get()
    expect(count('SELECT count(*) FROM readings')).toBe(50)
    expect(count("SELECT count(*) FROM rollup_1m r JOIN series s ON s.id = r.series_id WHERE s.metric = 'old'")).toBe(0)
    expect(count("SELECT count(*) FROM rollup_1h r JOIN series s ON s.id = r.series_id WHERE s.metric = 'old'")).toBe(0)
    const messages = await store.messages({ limit: 1000 })
    expect(messages).toHaveLength(100)
    expect(messages.every((m) => m.topic === 'new')).toBe(true)
    expect(store.usage).toMatchObject({ readings: 50, messages: 100 })
  })

  it('drops the newest over the queue bound, counted and reported', async () => {
    const hits: [LimitName, Record<string, unknown> | undefined][] = []
    const store = openStore({ maxQueue: 100, onLimit: (limit, detail) => hits.push([limit, detail]) })
    store.append(series('d', 'm', 150, (i) => i, (i) => i))
    store.log([{ topic: 't', payload: 'x', ts: 1, source: 'mqtt', qos: 0, retain: false }])
    expect(store.usage).toMatchObject({ queueDepth: 100, dropped: 51 })
    expect(hits.map(([limit]) => limit)).toEqual(['store_queue', 'store_queue'])
    expect(hits[0]![1]).toMatchObject({ dropped: 50, reason: 'queue_full' })
    await store.flush()
    const m = (await store.query({ device: 'd', from: 0, to: 1000 })).metrics.m!
    expect('points' in m && m.points.map(([ts]) => ts)).toEqual(Array.from({ length: 100 }, (_, i) => i))
  })

  it('bounds the bytes of queued messages', async () => {
    const store = openStore({ maxQueueBytes: 10_000 })
    store.log(Array.from({ length: 10 }, (_, i) => ({ topic: 't', payload: 'x'.repeat(2000), ts: i, source: 'mqtt', qos: 0, retain: false })))
    expect(store.usage.queueDepth).toBe(4)
    expect(store.usage.queueBytes).toBeLessThanOrEqual(10_000)
    expect(store.usage.dropped).toBe(6)
  })
})

describe('SqliteStore write failures', () => {
  it('keeps the queue through a full disk, logs once, counts, and resumes by itself', async () => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval', 'setTimeout', 'clearTimeout'] })
    const { logger, lines } = capture()
    const hits: string[] = []
    const store = openStore({ logger, maxQueue: 30_000, onLimit: (limit) => hits.push(limit) })
    store.append(series('d', 'm', 10, (i) => i, (i) => i))
    await store.flush()
    // no room to grow: the next inserts hit SQLITE_FULL
    const pages = store.db.pragma('page_count', { simple: true })
    store.db.pragma(`max_page_count = ${Number(pages)}`)
    store.append(series('d', 'm', 20_000, (i) => 1000 + i, (i) => i))
    store.saveDevices([{ id: 'd', snapshot: { big: 'x'.repeat(100_000) } }])
    await expect(store.flush()).resolves.toBeUndefined()
    vi.advanceTimersByTime(1000) // five more ticks, five more failures
    expect(store.usage.writeFailures).toBeGreaterThanOrEqual(6)
    expect(store.usage).toMatchObject({ queueDepth: 20_000, writeFailing: 1, dropped: 0 })
    expect(lines.filter((l) => l.level >= 50)).toHaveLength(1)
    expect(lines.find((l) => l.level >= 50)).toMatchObject({ code: 'SQLITE_FULL' })
    // while it fails, the oldest make room for the newest
    store.append(series('d', 'm', 15_000, (i) => 100_000 + i, (i) => i))
    expect(store.usage).toMatchObject({ queueDepth: 30_000, dropped: 5000 })
    expect(hits).toEqual(['store_queue'])

    store.db.pragma('max_page_count = 1073741823')
    vi.advanceTimersByTime(200)
    expect(store.usage).toMatchObject({ queueDepth: 0, writeFailing: 0 })
    expect(lines.some((l) => l.level === 30 && /works again/.test(l.msg))).toBe(true)
    expect(store.db.prepare<number>('SELECT count(*) FROM readings').pluck().get()).toBe(10 + 15_000 + 15_000)
    expect(((await store.loadDevices())[0]!.snapshot as { big: string }).big).toHaveLength(100_000)
  })

  it('counts writes to a read-only database as failures, and still answers reads', async () => {
    const writer = openStore()
    writer.append(series('d', 'm', 5, (i) => i, (i) => i))
    await writer.flush()
    const reader = SqliteStore.open({ file: join(dir, 'pulseboard.db'), readonly: true, logger: capture().logger })
    open.push(reader)
    reader.append(series('d', 'm', 5, (i) => 10 + i, (i) => i))
    await reader.flush()
    expect(reader.usage).toMatchObject({ writeFailures: 1, queueDepth: 5 })
    expect((await reader.query({ device: 'd', from: 0, to: 100 })).metrics.m).toEqual({ points: [[0, 0], [1, 1], [2, 2], [3, 3], [4, 4]] })
  })
})

describe('SqliteStore.open', () => {
  const openError = (file: string, opts: Partial<SqliteStoreOptions> = {}): StoreOpenError => {
    try {
      openStore({ file, ...opts })
    } catch (err) {
      expect(err).toBeInstanceOf(StoreOpenError)
      const e = err as StoreOpenError
      expect(e.message).not.toMatch(/\n/)
      expect(e.message.startsWith(file)).toBe(true)
      expect(e.message).toContain('--data-dir')
      return e
    }
    throw new Error(`expected ${file} to be refused`)
  }

  it('refuses a file that is not SQLite', () => {
    const file = join(dir, 'notes.db')
    writeFileSync(file, 'these are my notes, not a database\n'.repeat(100))
    expect(openError(file).message).toMatch(/is not a Pulseboard database \(or is damaged\); move it aside or choose another --data-dir$/)
  })

  it("refuses another program's SQLite database, and one of a newer schema", () => {
    const foreign = join(dir, 'foreign.db')
    const db = new Database(foreign)
    db.exec('CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)')
    db.pragma('user_version = 7')
    db.close()
    expect(openError(foreign).message).toMatch(/is not a Pulseboard database/)

    const unversioned = join(dir, 'unversioned.db')
    const other = new Database(unversioned)
    other.exec('CREATE TABLE readings (x)')
    other.close()
    expect(openError(unversioned).message).toMatch(/is not a Pulseboard database/)

    const newer = join(dir, 'newer.db')
    openStore({ file: newer }).db.pragma('user_version = 99')
    expect(openError(newer).message).toMatch(/newer Pulseboard \(schema 99/)
  })

  it('upgrades a file of schema 1 in place, keeping its messages, and logs MQTT 5 properties after', async () => {
    const file = join(dir, 'schema1.db')
    const store = openStore({ file })
    store.log([{ topic: 'old/topic', payload: 'kept', ts: 1000, source: 'mqtt', qos: 0, retain: false }])
    await store.close()
    // the file as schema 1 wrote it: no properties column
    const db = new Database(file)
    db.exec('ALTER TABLE messages DROP COLUMN properties')
    db.pragma('user_version = 1')
    db.close()

    const upgraded = openStore({ file })
    expect(upgraded.db.pragma('user_version', { simple: true })).toBe(2)
    const properties = { userProperties: { site: 'lab', tag: ['a', 'b'] }, contentType: 'application/json', correlationData: 'AAE=' }
    upgraded.log([{ topic: 'new/topic', payload: '{}', ts: 2000, source: 'mqtt', qos: 1, retain: false, properties }])
    await upgraded.flush()
    const logged = await upgraded.messages({ limit: 10 })
    expect(logged.map((e) => [e.topic, e.properties])).toEqual([
      ['new/topic', properties],
      ['old/topic', undefined],
    ])
  })

  it("shares the file with the broker's mqtt_ tables", async () => {
    const file = join(dir, 'shared.db')
    const db = new Database(file)
    db.exec('CREATE TABLE mqtt_retained (topic TEXT PRIMARY KEY, packet BLOB)')
    db.close()
    const store = openStore({ file })
    store.append([{ device: 'd', metric: 'm', ts: 1, value: 1 }])
    await store.flush()
    expect(store.db.prepare<string>("SELECT name FROM sqlite_master WHERE name = 'mqtt_retained'").pluck().get()).toBe('mqtt_retained')
    expect(await reopen(store, { file })).toBeInstanceOf(SqliteStore)
  })

  // Tests run as root in CI, and chmod does not stop root: a directory that cannot be created
  // (its parent is a regular file) and a read-only open of a file without our tables provoke the
  // same refusal without relying on permissions.
  it('refuses a data directory that cannot be written', () => {
    const plain = join(dir, 'plain-file')
    writeFileSync(plain, 'x')
    expect(openError(join(plain, 'pulseboard.db')).message).toMatch(/cannot be opened for writing \(.*\); make --data-dir writable or choose another --data-dir$/)
    expect(openError(join(dir, 'missing.db'), { readonly: true }).message).toMatch(/cannot be opened for writing/)
    const empty = join(dir, 'empty.db')
    new Database(empty).close()
    expect(openError(empty, { readonly: true }).message).toMatch(/cannot be opened for writing/)
  })
})
