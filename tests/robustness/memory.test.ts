import net from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import mqtt from 'mqtt'
import { io } from 'socket.io-client'
import { WebSocket } from 'ws'
import { collect, within } from '../helpers/stack.ts'
import { canary, closed, startTarget, type Health, type Target } from './server.ts'

let target: Target
afterEach(async () => {
  await target?.close()
})

const json = (o: unknown) => JSON.stringify(o)
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Waits until `/api/health` satisfies `ok`. */
async function healthUntil(what: string, ok: (h: Awaited<ReturnType<Target['health']>>) => boolean, ms = 10_000) {
  await within(ms, what, (async () => {
    while (!ok(await target.health())) await sleep(50)
  })())
}

describe('every structure input can grow is bounded', () => {
  // history is in SQLite by default, in memory with --no-store: both are bounded by the metric cap
  const stores = [
    { mode: 'the database', args: [], points: (h: Health) => h.usage.readings },
    { mode: 'memory (--no-store)', args: ['--no-store'], points: (h: Health) => h.usage.historyPoints },
  ]

  it.each(stores)('caps metrics per device: 40 publishes of 512 new keys each, history in $mode', async ({ args, points }) => {
    target = await startTarget(args)
    const client = await target.mqtt()
    for (let i = 0; i < 40; i++) {
      const keys = Object.fromEntries(Array.from({ length: 512 }, (_, k) => [`m${i}_${k}`, k]))
      await client.publishAsync('devices/amp/telemetry', json(keys), { qos: 1 })
    }
    await healthUntil('the metric cap to be hit', (h) => h.limits.device_metrics! > 0)
    const device = (await (await fetch(`${target.httpUrl}/api/devices/amp`)).json()) as { metrics: object }
    expect(Object.keys(device.metrics)).toHaveLength(64)
    // the database is written every 200 ms
    await healthUntil('one point of each of the 64 metrics kept', (h) => points(h) === 64)
    await sleep(500)
    expect(points(await target.health())).toBe(64)
    await canary(target)
  })

  it.each(stores)('does not make a device of chat text typed on /, history in $mode', async ({ args, points }) => {
    target = await startTarget(args)
    const chat = io(target.httpUrl, { transports: ['websocket'], reconnection: false })
    for (let i = 0; i < 40; i++) {
      const keys = Object.fromEntries(Array.from({ length: 512 }, (_, k) => [`c${i}_${k}`, k]))
      await chat.emitWithAck('message', json(keys))
    }
    chat.disconnect()
    expect(await (await fetch(`${target.httpUrl}/api/devices`)).json()).toEqual([])
    await sleep(500)
    expect(points(await target.health())).toBe(0)
    await canary(target)
  })

  it('keeps at most --max-topics of 50,000 distinct topics', async () => {
    target = await startTarget()
    const clients = await Promise.all(Array.from({ length: 5 }, () => target.mqtt()))
    await Promise.all(
      clients.map(async (client, c) => {
        for (let i = 0; i < 10_000; i++) client.publish(`flood/${c}/${i}`, 'x')
        await client.publishAsync(`flood/${c}/done`, 'x', { qos: 1 })
      }),
    )
    await healthUntil('the topic index to fill', (h) => h.usage.topics === 10_000)
    expect((await target.health()).limits.topics).toBeGreaterThan(0)
    await canary(target)
  })

  it('forgets the least recently seen device at the 10,000-device cap and keeps answering meanwhile', async () => {
    target = await startTarget(['--max-devices', '10000'])
    const clients = await Promise.all(Array.from({ length: 4 }, () => target.mqtt()))
    const slowest = { ms: 0 }
    let flooding = true
    const probe = (async () => {
      while (flooding) {
        const t0 = performance.now()
        await target.health()
        slowest.ms = Math.max(slowest.ms, performance.now() - t0)
        await sleep(20)
      }
    })()
    await Promise.all(
      clients.map(async (client, c) => {
        for (let i = 0; i < 7500; i++) client.publish(`devices/d${c}-${i}/telemetry`, '{"t":1}')
        await client.publishAsync('done', 'x', { qos: 1 })
      }),
    )
    await healthUntil('devices to be evicted', (h) => h.limits.devices! >= 20_000)
    flooding = false
    await probe
    expect((await target.health()).usage.devices).toBe(10_000)
    // each eviction scanned every device before: health checks waited 10 s; now they wait for the flood only
    expect(slowest.ms, 'the slowest /api/health during the flood').toBeLessThan(5000)
    await canary(target)
  })

  it('cuts off /live subscribers that stop reading but answer pings', async () => {
    target = await startTarget(['--max-socket-lag', '3s'])
    // ten raw engine.io clients: open, join /live, then never read again, but write a pong every second
    const stuck = await Promise.all(Array.from({ length: 10 }, () => stuckSubscriber(target)))
    const device = await target.mqtt()
    const payload = 'x'.repeat(200 * 1024)
    for (let i = 0; i < 100; i++) {
      device.publish(`big/${i % 10}`, payload)
      await sleep(20)
    }
    await healthUntil('the ten stuck clients to be disconnected', (h) => h.limits.socket_lag! >= 10, 15_000)
    const health = await target.health()
    expect(health.limits.socket_backlog).toBeGreaterThanOrEqual(10)
    expect(health.bridge.laggedOut).toBe(10)
    for (const s of stuck) s.close()
    await canary(target)
  })

  it('frees the wills of clients that disconnect', async () => {
    target = await startTarget()
    const will = { topic: 'devices/w/status', payload: Buffer.alloc(60 * 1024, 'w'), qos: 0 as const, retain: false }
    for (let batch = 0; batch < 6; batch++) {
      const clients = await Promise.all(Array.from({ length: 500 }, (_, i) => target.mqtt({ clientId: `will-${batch}-${i}`, will })))
      await Promise.all(clients.map((c) => c.endAsync()))
    }
    await healthUntil('every will freed', (h) => h.usage.wills === 0 && h.mqtt.clients === 0)
    await canary(target)
  })

  it('keeps retained messages within --max-retained-bytes', async () => {
    target = await startTarget(['--max-retained-bytes', '8MiB'])
    const client = await target.mqtt()
    const payload = Buffer.alloc(100 * 1024, 'r')
    for (let i = 0; i < 300; i++) await client.publishAsync(`keep/${i}`, payload, { retain: true, qos: 1 })
    const health = await target.health()
    expect(health.usage.retainedBytes).toBeLessThanOrEqual(8 * 2 ** 20)
    expect(health.usage.retained).toBeGreaterThan(50)
    expect(health.limits.retained).toBeGreaterThan(0)
    // what was kept is still delivered; what was not kept was still delivered live
    const late = await target.mqtt()
    const got = collect<string>((push) => late.on('message', (topic) => push(topic)))
    await late.subscribeAsync('keep/#')
    await got.until('the kept retained messages', (v) => v.length === health.usage.retained)
    await canary(target)
  })

  it("keeps an offline session's queue within --max-queued and the total within --max-queued-total-bytes", async () => {
    target = await startTarget(['--max-queued', '100', '--max-queued-total-bytes', '4MiB'])
    const sleeper = await target.mqtt({ clientId: 'sleeper', clean: false })
    await sleeper.subscribeAsync('q/#', { qos: 1 })
    await sleeper.endAsync()
    const many = await Promise.all(Array.from({ length: 30 }, (_, i) => target.mqtt({ clientId: `sleeper-${i}`, clean: false })))
    for (const c of many) await c.subscribeAsync('big/#', { qos: 1 })
    await Promise.all(many.map((c) => c.endAsync()))

    const publisher = await target.mqtt()
    for (let i = 0; i < 150; i++) await publisher.publishAsync('q/x', 'small', { qos: 1 })
    expect((await target.health()).limits.session_queue).toBe(50)
    // 30 sessions × 100 × 2 KiB would be 6 MiB: the total is reached first
    for (let i = 0; i < 100; i++) await publisher.publishAsync('big/x', Buffer.alloc(2048, 'q'), { qos: 1 })
    const health = await target.health()
    expect(health.usage.queuedBytes).toBeLessThanOrEqual(4 * 2 ** 20)
    expect(health.limits.queued_bytes).toBeGreaterThan(0)

    // listening before it connects: the queue arrives right behind the CONNACK
    const back = mqtt.connect(target.mqttUrl, { clientId: 'sleeper', clean: false, reconnectPeriod: 0 })
    const got = collect<string>((push) => back.on('message', (topic) => push(topic)))
    await got.until('the 100 queued messages', (v) => v.length === 100)
    await sleep(200)
    expect(got.values).toHaveLength(100)
    await back.endAsync()
    await canary(target)
  })

  it('closes MQTT connections over --max-connections at once', async () => {
    target = await startTarget(['--max-connections', '100'])
    const sockets = await Promise.all(
      Array.from({ length: 150 }, () => new Promise<net.Socket>((resolve) => {
        const s = net.connect(target.mqttPort, '127.0.0.1', () => resolve(s))
        s.on('error', () => {})
      })),
    )
    await healthUntil('50 connections refused', (h) => h.limits.connections === 50)
    for (const s of sockets) s.destroy()
    await sleep(100)
    await canary(target)
  })

  it('caps a keepalive of 0 to --max-keepalive', async () => {
    target = await startTarget(['--max-keepalive', '1'])
    const idle = await target.mqtt({ keepalive: 0 })
    // [MQTT-3.1.2-24] 1.5 × the capped keepalive of silence ends the connection
    await closed(idle, 4000)
    expect((await target.health()).limits.keepalive).toBe(1)
    await canary(target)
  })
})

/** A `/live` client that stops reading after the handshake, yet keeps answering heartbeats blindly. */
async function stuckSubscriber(t: Target): Promise<{ close(): void }> {
  const ws = new WebSocket(`ws://127.0.0.1:${t.port}/socket.io/?EIO=4&transport=websocket`)
  await within(5000, 'the raw engine.io open packet', new Promise<void>((resolve) => ws.once('message', () => resolve())))
  ws.send('40/live,{"devices":false}')
  await within(5000, 'the /live connect packet', new Promise<void>((resolve) => ws.once('message', () => resolve())))
  const tcp = (ws as unknown as { _socket: net.Socket })._socket
  tcp.pause()
  const pong = setInterval(() => ws.send('3'), 1000)
  return {
    close() {
      clearInterval(pong)
      ws.terminate()
    },
  }
}
