// The SQLite store in a real `pulseboard start`, stopped the ways a server is stopped: kill -9
// in the middle of ingest, SIGTERM, and a data directory whose database is not ours.
import { createHash } from 'node:crypto'
import { closeSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import path from 'node:path'
import mqtt, { type MqttClient } from 'mqtt'
import { afterEach, describe, expect, it, onTestFinished } from 'vitest'
import type { DeviceHistory } from '../../protocol/index.ts'
import { killAll, pulseboard, type Child } from '../helpers/process.ts'
import { startStack, within } from '../helpers/stack.ts'

interface Db {
  exec(sql: string): unknown
  pragma(sql: string, opts?: { simple: boolean }): unknown
  prepare(sql: string): { pluck(): { all(...params: unknown[]): unknown[]; get(...params: unknown[]): unknown } }
  close(): void
}
const Database = createRequire(import.meta.url)('better-sqlite3') as new (file: string, opts?: { readonly?: boolean }) => Db

afterEach(async () => {
  await killAll()
})

function tempDir(): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'pulseboard-store-'))
  onTestFinished(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

interface Server {
  child: Child
  httpUrl: string
  mqttUrl: string
  json<T>(route: string): Promise<T>
}

/** `pulseboard start --data-dir dir` on free ports of 127.0.0.1, once it prints its addresses. */
async function startServer(dataDir: string): Promise<Server> {
  const child = pulseboard(['start', '--port', '0', '--mqtt-port', '0', '--host', '127.0.0.1', '--log-level', 'warn', '--data-dir', dataDir])
  const exited = child.exited.then((code) => {
    throw new Error(`pulseboard start exited (${code}) before printing its addresses: ${child.stderr.values.join('\n')}`)
  })
  const lines = await Promise.race([child.stdout.until('pulseboard start to print its banner', (l) => l.some((x) => x.startsWith('Press Ctrl-C')), 30_000), exited])
  const text = lines.join('\n')
  const httpUrl = `http://127.0.0.1:${/http:\/\/127\.0\.0\.1:(\d+)\//.exec(text)![1]}`
  const mqttUrl = `mqtt://127.0.0.1:${/mqtt:\/\/127\.0\.0\.1:(\d+)/.exec(text)![1]}`
  return {
    child,
    httpUrl,
    mqttUrl,
    async json<T>(route: string) {
      const res = await fetch(httpUrl + route)
      expect(res.status, `GET ${route}`).toBe(200)
      return (await res.json()) as T
    },
  }
}

async function connect(url: string, clientId: string): Promise<MqttClient> {
  const client = mqtt.connect(url, { clientId, reconnectPeriod: 0, connectTimeout: 5000 })
  // the server goes away under it: that is the test, not an error
  client.on('error', () => {})
  onTestFinished(() => client.endAsync(true))
  await within(5000, `MQTT client ${clientId} to connect`, new Promise((resolve, reject) => {
    client.once('connect', resolve)
    client.once('error', reject)
  }))
  return client
}

/**
 * Publishes `{"seq": i, "ts": t0 + i}` to devices/<device>/telemetry at QoS 1, one every
 * `everyMs`, and notes when the broker acknowledged each: seq and ts are known, and unique.
 */
function ingest(client: MqttClient, device: string, everyMs: number) {
  const t0 = Date.now() - 60_000
  const acked = new Map<number, number>()
  let sent = 0
  const publish = () => {
    const seq = sent++
    client.publish(`devices/${device}/telemetry`, JSON.stringify({ seq, ts: t0 + seq }), { qos: 1 }, (err) => {
      if (!err) acked.set(seq, Date.now())
    })
  }
  const timer = setInterval(publish, everyMs)
  return {
    t0,
    acked,
    get sent() {
      return sent
    },
    /** Resolves once `n` have been acknowledged. */
    until(what: string, n: number, ms = 10_000) {
      let check: NodeJS.Timeout | undefined
      return within(ms, what, new Promise<void>((resolve) => {
        check = setInterval(() => acked.size >= n && resolve(), 10)
      })).finally(() => clearInterval(check))
    },
    stop() {
      clearInterval(timer)
    },
  }
}

/** The `seq` values the history API has for a device. */
async function storedSeqs(server: Server, device: string): Promise<number[]> {
  const res = await fetch(`${server.httpUrl}/api/devices/${device}/history?metrics=seq&from=0&to=${Date.now() + 60_000}&maxPoints=100000`)
  if (res.status === 404) throw new Error(`device ${device} is unknown after the restart: it was never saved`)
  expect(res.status).toBe(200)
  const history = (await res.json()) as DeviceHistory
  const seq = history.metrics.seq
  if (!seq || !('points' in seq)) throw new Error(`expected raw points of seq, got ${JSON.stringify(seq)?.slice(0, 200)}`)
  return seq.points.map(([, value]) => value)
}

describe('pulseboard start with --data-dir, stopped hard', () => {
  it('after kill -9 in the middle of ingest, opens cleanly and has every reading acknowledged more than 1 s before the kill', async () => {
    const dataDir = tempDir()
    const first = await startServer(dataDir)
    const device = await connect(first.mqttUrl, 'crash-meter')
    // up to 1,000 readings/s for a second or two (well within the registry's first 5 s save of
    // its devices); the kill comes while they flow
    const feed = ingest(device, 'meter', 1)
    await feed.until('1,500 readings to be acknowledged', 1500)
    const killedAt = Date.now()
    first.child.process.kill('SIGKILL')
    expect(await first.child.exited).toBe('SIGKILL')
    feed.stop()
    const acked = new Map(feed.acked)

    const second = await startServer(dataDir)
    expect(second.child.stderr.values, 'nothing said on stderr at start').toEqual([])
    const health = await second.json<{ status: string; usage: Record<string, number> }>('/api/health')
    expect(health.status).toBe('ok')
    const old = [...acked].filter(([, at]) => at < killedAt - 1000).map(([seq]) => seq)
    expect(old.length).toBeGreaterThan(300)

    // first what the file holds, read beside the server (WAL lets a reader in): the store's own bound
    const db = new Database(path.join(dataDir, 'pulseboard.db'), { readonly: true })
    const inFile = new Set(
      db.prepare("SELECT r.value FROM readings r JOIN series s ON s.id = r.series_id WHERE s.device = 'meter' AND s.metric = 'seq'").pluck().all() as number[],
    )
    db.close()
    const lost = [...acked].filter(([seq]) => !inFile.has(seq))
    const lostWindow = lost.length === 0 ? 0 : killedAt - Math.min(...lost.map(([, at]) => at))
    console.info(`kill -9: ${feed.sent} sent, ${acked.size} acknowledged, ${inFile.size} in the file; ${lost.length} acknowledged lost, from the last ${lostWindow} ms`)
    expect(old.filter((seq) => !inFile.has(seq)), 'readings acknowledged more than 1 s before the kill, in the file').toEqual([])
    expect([...inFile].every((seq) => Number.isInteger(seq) && seq >= 0 && seq < feed.sent), 'nothing that was never sent').toBe(true)

    // then what users see: the device is listed, and its history is what the file holds
    const res = await fetch(`${second.httpUrl}/api/devices/meter`)
    expect(res.status, 'the device is known after the restart, though it first reported less than 5 s before the kill').toBe(200)
    expect(await res.json()).toMatchObject({ id: 'meter', online: false })
    const stored = await storedSeqs(second, 'meter')
    expect(new Set(stored)).toEqual(inFile)
    expect(await second.child.kill()).toBe(0)
  }, 60_000)

  it('on SIGTERM writes out every reading the broker acknowledged before it stopped', async () => {
    const dataDir = tempDir()
    const first = await startServer(dataDir)
    const device = await connect(first.mqttUrl, 'term-meter')
    const feed = ingest(device, 'meter', 2)
    await feed.until('300 readings to be acknowledged', 300)
    // a burst acknowledged just before the signal (younger than the registry's 100 ms batch), and
    // the feed still publishing when it arrives: every one acknowledged until the broker stops counts
    const burst = await connect(first.mqttUrl, 'term-burst')
    const burstT0 = Date.now() - 30_000
    await Promise.all(Array.from({ length: 50 }, (_, i) => burst.publishAsync('devices/burst/telemetry', JSON.stringify({ seq: i, ts: burstT0 + i }), { qos: 1 })))
    first.child.process.kill('SIGTERM')
    expect(await within(10_000, 'pulseboard start to exit on SIGTERM', first.child.exited)).toBe(0)
    feed.stop()
    const acked = [...feed.acked.keys()]

    const second = await startServer(dataDir)
    const stored = new Set(await storedSeqs(second, 'meter'))
    const missing = acked.filter((seq) => !stored.has(seq))
    console.info(`SIGTERM: ${feed.sent} sent, ${acked.length} acknowledged, ${stored.size} stored, ${missing.length} acknowledged missing; burst ${(await storedSeqs(second, 'burst').catch(() => [])).length}/50 stored`)
    expect((await storedSeqs(second, 'burst')).sort((a, b) => a - b), 'the burst acknowledged right before SIGTERM').toEqual(Array.from({ length: 50 }, (_, i) => i))
    expect(missing, 'acknowledged readings missing after SIGTERM').toEqual([])
    expect(await second.child.kill()).toBe(0)
  }, 60_000)
})

describe('pulseboard start on a database that is not its own', { timeout: 45_000 }, () => {
  const sha = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex')

  /** Starts on `dataDir` and expects it refused; `emptyWal`: an empty WAL and its index may be left (SQLite opened the file). */
  async function refused(dataDir: string, line: (file: string) => string | RegExp = notOurs, emptyWal = false): Promise<void> {
    const file = path.join(dataDir, 'pulseboard.db')
    const before = sha(file)
    const child = pulseboard(['start', '--port', '0', '--mqtt-port', '0', '--host', '127.0.0.1', '--data-dir', dataDir])
    expect(await within(30_000, 'pulseboard start to exit', child.exited)).toBe(1)
    expect(child.stdout.values.filter((l) => l.includes('is running')), 'it never started').toEqual([])
    expect(child.stderr.values, 'one line on stderr').toHaveLength(1)
    const expected = line(file)
    if (typeof expected === 'string') expect(child.stderr.values[0]).toBe(expected)
    else expect(child.stderr.values[0]).toMatch(expected)
    // left exactly as it was: nothing written into it, no schema added to someone else's file
    expect(sha(file)).toBe(before)
    const left = readdirSync(dataDir).filter((f) => f !== 'pulseboard.db')
    const harmless = (f: string) => emptyWal && (f === 'pulseboard.db-shm' || (f === 'pulseboard.db-wal' && statSync(path.join(dataDir, f)).size === 0))
    expect(left.filter((f) => !harmless(f)), 'files left beside it').toEqual([])
  }
  const notOurs = (file: string) => `pulseboard start: ${file} is not a Pulseboard database (or is damaged); move it aside or choose another --data-dir`
  const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')

  it('exits 1 with one line naming the file and the fix when pulseboard.db is garbage', async () => {
    const dataDir = tempDir()
    writeFileSync(path.join(dataDir, 'pulseboard.db'), Buffer.from(Array.from({ length: 64 * 1024 }, (_, i) => (i * 7919 + 13) % 256)))
    await refused(dataDir)
  })

  it("exits 1 with one line naming the file and the fix when pulseboard.db is another program's SQLite database", async () => {
    const dataDir = tempDir()
    const db = new Database(path.join(dataDir, 'pulseboard.db'))
    db.exec("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO users (name) VALUES ('ada')")
    db.pragma('user_version = 3')
    db.close()
    await refused(dataDir)
  })

  it('exits 1 with one line naming the file and the fix when pulseboard.db is damaged where the broker keeps its state', async () => {
    const dataDir = tempDir()
    const stack = await startStack({ dataDir })
    const client = await stack.mqtt()
    for (let i = 0; i < 300; i++) client.publish(`config/${i}`, JSON.stringify({ setpoint: i, note: 'x'.repeat(200) }), { qos: 1, retain: true })
    await client.publishAsync('config/last', '1', { qos: 1, retain: true })
    await stack.close()
    // the first page of the broker's retained messages, overwritten as a bad sector would
    const file = path.join(dataDir, 'pulseboard.db')
    const db = new Database(file, { readonly: true })
    const root = db.prepare("SELECT rootpage FROM sqlite_master WHERE name = 'mqtt_retained'").pluck().get() as number
    const pageSize = db.pragma('page_size', { simple: true }) as number
    db.close()
    const fd = openSync(file, 'r+')
    writeSync(fd, Buffer.alloc(pageSize, 0xa5), 0, pageSize, (root - 1) * pageSize)
    closeSync(fd)
    await refused(dataDir, (f) => new RegExp(`^pulseboard start: ${escape(f)} is damaged \\(SQLITE_CORRUPT[^)]*\\); move it aside or choose another --data-dir$`), true)
  })
})
