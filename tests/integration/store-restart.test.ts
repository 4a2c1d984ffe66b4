// What a data directory keeps across a restart of the whole stack (broker, bridge, registry,
// store, HTTP), what the API refuses, and what a full disk does to a running server.
import { mkdtempSync, rmSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import path from 'node:path'
import mqtt, { type IClientOptions, type IConnackPacket, type MqttClient } from 'mqtt'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import type { DeviceHistory, DeviceState, Envelope, MetricHistory } from '../../protocol/index.ts'
import { SqliteStore, type SqliteDatabase } from '../../store/sqlite.ts'
import { envelopes, mqttMessages, startStack, within, type Stack } from '../helpers/stack.ts'

const Database = createRequire(import.meta.url)('better-sqlite3') as new (file: string) => SqliteDatabase

let dataDir: string
let stack: Stack | undefined
const clients: MqttClient[] = []

beforeEach(() => {
  dataDir = mkdtempSync(path.join(tmpdir(), 'pulseboard-store-restart-'))
})
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.endAsync(true)))
  await stack?.close()
  stack = undefined
  rmSync(dataDir, { recursive: true, force: true })
})

/** The stack on the test's data directory; the one before is closed first, as a restart does. */
async function restart(): Promise<Stack> {
  await stack?.close()
  stack = await startStack({ dataDir })
  return stack
}

/** An MQTT client of the current stack, with the CONNACK it got. */
async function connect(opts: IClientOptions = {}): Promise<{ client: MqttClient; connack: IConnackPacket }> {
  const client = mqtt.connect(stack!.mqttUrl, { reconnectPeriod: 0, connectTimeout: 5000, ...opts })
  clients.push(client)
  const connack = await within(5000, `MQTT client ${opts.clientId ?? ''} to connect`, new Promise<IConnackPacket>((resolve, reject) => {
    client.once('connect', resolve)
    client.once('error', reject)
  }))
  return { client, connack }
}

async function get<T>(route: string, status = 200): Promise<T> {
  const res = await fetch(stack!.httpUrl + route)
  const body = res.headers.get('content-type')?.includes('json') ? ((await res.json()) as T) : (undefined as T)
  expect(res.status, `GET ${route}: ${JSON.stringify(body)}`).toBe(status)
  return body
}

/** Polls `probe` every 50 ms until `ok`; a timeout names what was expected and what was last seen. */
async function until<T>(what: string, probe: () => Promise<T>, ok: (value: T) => boolean, ms = 5000): Promise<T> {
  const deadline = Date.now() + ms
  let last: T | undefined
  for (;;) {
    last = await probe()
    if (ok(last)) return last
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}; last saw ${JSON.stringify(last)?.slice(0, 300)}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

function points(m: MetricHistory | undefined): [number, number][] {
  if (!m || !('points' in m)) throw new Error(`expected raw points, got ${JSON.stringify(m)?.slice(0, 200)}`)
  return m.points
}

const history = (device: string, query = '') => get<DeviceHistory>(`/api/devices/${device}/history?from=0&to=${Date.now() + 60_000}&maxPoints=100000${query}`)

describe('a restart on the same data directory', () => {
  it('keeps 500 readings for the history API, the retained messages, and the devices with their last values', async () => {
    await restart()
    const base = Date.now() - 10 * 60_000
    const devices = ['d0', 'd1', 'd2', 'd3', 'd4']
    // 5 devices × 50 messages × 2 metrics, each with its own time and value
    const temperature = (d: number, i: number) => 15 + d + i / 10
    const humidity = (d: number, i: number) => 40 + ((d * 7 + i) % 30)
    const lastSeen = new Map<string, [number, number]>()
    await Promise.all(
      devices.map(async (id, d) => {
        const { client } = await connect({ clientId: `restart-${id}` })
        for (let i = 0; i < 50; i++) {
          const before = Date.now()
          await client.publishAsync(`devices/${id}/telemetry`, JSON.stringify({ temperature: temperature(d, i), humidity: humidity(d, i), ts: base + i * 1000 }), { qos: 1 })
          if (i === 49) lastSeen.set(id, [before, Date.now()])
        }
      }),
    )
    const { client: admin } = await connect({ clientId: 'restart-admin' })
    await admin.publishAsync('site/notice', 'maintenance at 10:00', { qos: 1, retain: true })
    const count = async () => (await Promise.all(devices.map(async (id) => Object.values((await history(id)).metrics).reduce((n, m) => n + points(m).length, 0)))).reduce((a, b) => a + b)
    await until('all 500 readings in the history API', count, (n) => n === 500)
    for (const c of clients.splice(0)) await c.endAsync()
    await until('the devices to go offline', () => get<DeviceState[]>('/api/devices'), (list) => list.length === 5 && list.every((d) => !d.online))

    await restart()
    const expected = (d: number) => ({
      temperature: Array.from({ length: 50 }, (_, i) => [base + i * 1000, temperature(d, i)]),
      humidity: Array.from({ length: 50 }, (_, i) => [base + i * 1000, humidity(d, i)]),
    })
    let total = 0
    for (const [d, id] of devices.entries()) {
      const { metrics } = await history(id)
      expect({ temperature: points(metrics.temperature), humidity: points(metrics.humidity) }, id).toEqual(expected(d))
      total += points(metrics.temperature).length + points(metrics.humidity).length
    }
    expect(total).toBe(500)

    const listed = await get<DeviceState[]>('/api/devices')
    expect(listed.map((d) => d.id)).toEqual(devices)
    for (const [d, device] of listed.entries()) {
      expect(device, device.id).toMatchObject({
        online: false,
        stale: false,
        asleep: false,
        metrics: {
          temperature: { value: temperature(d, 49), ts: base + 49_000 },
          humidity: { value: humidity(d, 49), ts: base + 49_000 },
        },
      })
      const [from, to] = lastSeen.get(device.id)!
      expect(device.lastSeen, `${device.id} lastSeen`).toBeGreaterThanOrEqual(from)
      expect(device.lastSeen, `${device.id} lastSeen`).toBeLessThanOrEqual(to)
      expect(device).not.toHaveProperty('clientId')
    }

    const { client: late } = await connect({ clientId: 'restart-late' })
    const received = mqttMessages(late)
    await late.subscribeAsync('site/#', { qos: 1 })
    await received.until('the retained notice after the restart', (v) => v.length > 0)
    expect(received.values).toEqual([{ topic: 'site/notice', payload: 'maintenance at 10:00', qos: 1, retain: true }])
  })

  it('delivers a QoS 1 message queued for an offline persistent session, once, after the restart', async () => {
    await restart()
    const session = { clientId: 'alarm-panel', clean: false } as const
    const first = await connect(session)
    expect(first.connack.sessionPresent).toBe(false)
    await first.client.subscribeAsync('alarms/#', { qos: 1 })
    await first.client.endAsync()

    const { client: sensor } = await connect({ clientId: 'door-sensor' })
    await sensor.publishAsync('alarms/door', 'open', { qos: 1 })
    await restart()

    const second = await connect(session)
    expect(second.connack.sessionPresent, 'the session survived the restart').toBe(true)
    const got = mqttMessages(second.client)
    await got.until('the queued alarm', (v) => v.some((m) => m.topic === 'alarms/door'))
    // a live message behind it on the same session: once it is here, a duplicate would have been too
    const { client: sensor2 } = await connect({ clientId: 'door-sensor-2' })
    await sensor2.publishAsync('alarms/window', 'closed', { qos: 1 })
    await got.until('the live alarm behind it', (v) => v.some((m) => m.topic === 'alarms/window'))
    expect(got.values).toEqual([
      { topic: 'alarms/door', payload: 'open', qos: 1, retain: false },
      { topic: 'alarms/window', payload: 'closed', qos: 1, retain: false },
    ])
    await second.client.endAsync()

    // acknowledged, so gone from the database too: a further restart does not send it again
    await restart()
    const third = await connect(session)
    expect(third.connack.sessionPresent).toBe(true)
    const again = mqttMessages(third.client)
    const { client: sensor3 } = await connect({ clientId: 'door-sensor-3' })
    await sensor3.publishAsync('alarms/marker', 'm', { qos: 1 })
    await again.until('the marker', (v) => v.some((m) => m.topic === 'alarms/marker'))
    expect(again.values.map((m) => m.topic)).toEqual(['alarms/marker'])
  })

  it('keeps a rename and a forget', async () => {
    await restart()
    const { client } = await connect({ clientId: 'rename-forget' })
    await client.publishAsync('devices/keep/telemetry', '{"temperature":21}', { qos: 1 })
    await client.publishAsync('devices/gone/telemetry', '{"temperature":5}', { qos: 1 })
    await until('both devices with a point each', async () => [(await history('keep')).metrics, (await history('gone')).metrics].map((m) => m.temperature), (m) => m.every((t) => t !== undefined))

    const renamed = await fetch(`${stack!.httpUrl}/api/devices/keep`, { method: 'PATCH', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'Kitchen sensor' }) })
    expect(renamed.status).toBe(200)
    expect(await renamed.json()).toMatchObject({ id: 'keep', name: 'Kitchen sensor', renamed: true })
    const deleted = await fetch(`${stack!.httpUrl}/api/devices/gone`, { method: 'DELETE' })
    expect(deleted.status).toBe(204)
    await get('/api/devices/gone', 404)
    await client.endAsync()
    clients.splice(clients.indexOf(client), 1)

    await restart()
    const listed = await get<DeviceState[]>('/api/devices')
    expect(listed.map((d) => d.id)).toEqual(['keep'])
    expect(listed[0]).toMatchObject({ name: 'Kitchen sensor', renamed: true, metrics: { temperature: { value: 21 } } })
    expect(points((await history('keep')).metrics.temperature).map(([, v]) => v)).toEqual([21])
    const unknown = await get<{ error: { code: string } }>('/api/devices/gone/history', 404)
    expect(unknown.error.code).toBe('E_UNKNOWN_DEVICE')

    // it comes back as a new device, without the points it had
    const { client: back } = await connect({ clientId: 'rename-forget-2' })
    await back.publishAsync('devices/gone/telemetry', '{"temperature":99}', { qos: 1 })
    const again = await until('the device back with its new point', () => get<DeviceHistory>('/api/devices/gone/history', 200).catch(() => null), (h) => h?.metrics.temperature !== undefined)
    expect(points(again!.metrics.temperature).map(([, v]) => v)).toEqual([99])
    expect(await get<DeviceState>('/api/devices/gone')).toMatchObject({ name: 'gone' })
  })

  it('skips a broker record that does not parse, counted, and serves the rest', async () => {
    await restart()
    const { client } = await connect({ clientId: 'bad-record' })
    await client.publishAsync('site/a', 'first', { qos: 1, retain: true })
    await client.publishAsync('site/b', 'second', { qos: 1, retain: true })
    await client.endAsync()
    clients.splice(clients.indexOf(client), 1)
    await stack!.close()
    stack = undefined
    // damaged the way a bad sector or a hand edit would leave it: SQLite reads it, JSON does not
    const db = new Database(path.join(dataDir, 'pulseboard.db'))
    expect(db.prepare("UPDATE mqtt_retained SET packet = '{\"cmd\":\"publish\",' WHERE topic = 'site/a'").run().changes).toBe(1)
    db.close()

    await restart()
    const { client: late } = await connect({ clientId: 'bad-record-late' })
    const received = mqttMessages(late)
    await late.subscribeAsync('site/#', { qos: 1 })
    await received.until('the retained message that parses', (v) => v.length > 0)
    await late.publishAsync('site/marker', 'm', { qos: 1 })
    await received.until('the marker', (v) => v.some((m) => m.topic === 'site/marker'))
    expect(received.values.map((m) => [m.topic, m.payload])).toEqual([['site/b', 'second'], ['site/marker', 'm']])
    const health = await get<{ usage: Record<string, number> }>('/api/health')
    expect(health.usage.brokerWriteErrors, 'the skipped record is counted').toBe(1)
  })

  it('answers a bad parameter with a 400 that names it', async () => {
    await restart()
    const { client } = await connect({ clientId: 'bad-params' })
    await client.publishAsync('devices/p/telemetry', '{"t":1}', { qos: 1 })
    await until('device p', () => get<DeviceState[]>('/api/devices'), (l) => l.some((d) => d.id === 'p'))
    const bad: [route: string, code: string, names: string][] = [
      ['/api/messages?limit=0', 'E_INVALID_REQUEST', 'limit'],
      ['/api/messages?limit=abc', 'E_INVALID_REQUEST', 'limit'],
      ['/api/messages?topic=a/%23/b', 'E_INVALID_FILTER', 'topic'],
      ['/api/messages?beforeId=5', 'E_INVALID_REQUEST', 'beforeId'],
      ['/api/messages?before=-1', 'E_INVALID_REQUEST', 'before'],
      ['/api/devices/p/history?from=2000&to=1000', 'E_INVALID_REQUEST', 'from'],
      ['/api/devices/p/history?maxPoints=0', 'E_INVALID_REQUEST', 'maxPoints'],
      ['/api/devices/p/export.csv?from=2000&to=1000', 'E_INVALID_REQUEST', 'from'],
    ]
    for (const [route, code, names] of bad) {
      const res = await fetch(stack!.httpUrl + route)
      const body = (await res.json()) as { error: { code: string; message: string } }
      expect({ route, status: res.status, code: body.error.code }).toEqual({ route, status: 400, code })
      expect(body.error.message, route).toContain(names)
    }
    const patch = await fetch(`${stack!.httpUrl}/api/devices/p`, { method: 'PATCH', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: '' }) })
    expect(patch.status).toBe(400)
    expect(((await patch.json()) as { error: { message: string } }).error.message).toContain('name')
  })
})

describe('a full disk while running', () => {
  it('keeps the live path serving, counts the failure in /api/health, and writes what was queued once there is room', async () => {
    await restart()
    const store = stack!.app.store
    if (!(store instanceof SqliteStore)) throw new Error('expected the SQLite store with dataDir')
    const { client: device } = await connect({ clientId: 'full-disk' })
    await device.publishAsync('devices/meter/telemetry', JSON.stringify({ power: 1 }), { qos: 1 })
    await until('the first reading stored', async () => (await history('meter')).metrics.power, (m) => m !== undefined)

    // The database may not grow: every insert that needs a page fails with SQLITE_FULL, as on a full
    // disk. (A read-only directory does not stop root, and SQLite's page limit is per connection:
    // this is the server's own connection, which the broker's persistence shares.)
    store.db.pragma(`max_page_count = ${Number(store.db.pragma('page_count', { simple: true }))}`)
    const subscriber = (await connect({ clientId: 'full-disk-watch' })).client
    await subscriber.subscribeAsync('devices/#', { qos: 1 })
    const overMqtt = mqttMessages(subscriber)
    const live = await stack!.live()
    const overLive = envelopes(live)
    const t0 = Date.now() - 60_000
    for (let i = 0; i < 3000; i++) device.publish('devices/meter/telemetry', JSON.stringify({ power: i, ts: t0 + i }), { qos: 1 })
    await device.publishAsync('devices/meter/telemetry', JSON.stringify({ power: 3000, ts: t0 + 3000 }), { qos: 1 })
    await device.publishAsync('devices/meter/config', 'x'.repeat(100_000), { qos: 1, retain: true })

    type Health = { usage: Record<string, number> }
    const failing = await until('the store to report failing writes', () => get<Health>('/api/health'), (h) => h.usage.writeFailing === 1 && (h.usage.writeFailures ?? 0) >= 2)
    expect(failing.usage).toMatchObject({ dropped: 0 })
    expect(failing.usage.queueDepth).toBeGreaterThanOrEqual(3001)
    expect(failing.usage.brokerWriteErrors, 'the retained message could not be written').toBeGreaterThanOrEqual(1)
    // live: MQTT subscribers, /live sockets and the registry all got the readings
    await overMqtt.until('the last reading over MQTT', (v) => v.some((m) => m.payload.includes('"power":3000')))
    await overLive.until('the last reading on /live', (v: Envelope[]) => v.some((e) => e.payload.includes('"power":3000')))
    await until('the registry to show the last value', () => get<DeviceState>('/api/devices/meter'), (d) => d.metrics.power?.value === 3000)
    // the retained message is served from memory
    const { client: late } = await connect({ clientId: 'full-disk-late' })
    const retained = mqttMessages(late)
    await late.subscribeAsync('devices/meter/config')
    await retained.until('the retained config', (v) => v.length === 1 && v[0]!.payload.length === 100_000 && v[0]!.retain)
    // reads still answer from what was written
    expect(points((await history('meter')).metrics.power).length).toBe(1)

    store.db.pragma('max_page_count = 1073741823')
    const healed = await until('the queue to drain once there is room', () => get<Health>('/api/health'), (h) => h.usage.writeFailing === 0 && h.usage.queueDepth === 0)
    expect(healed.usage.dropped).toBe(0)
    expect(points((await history('meter')).metrics.power).map(([, v]) => v)).toEqual([...Array.from({ length: 3001 }, (_, i) => i), 1])
  })
})
