import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import type { DeviceState, Envelope, LiveAuth, Reading } from '../../protocol/index.ts'
import { emptyConfig } from '../../auth/config.ts'
import { quickHash } from '../helpers/secrets.ts'
import { collect, envelopes, startStack, within, type Stack } from '../helpers/stack.ts'

/** `/live` views: a client is sent what it shows, set in the handshake and changed with `view`. */

let stack: Stack
beforeEach(async () => {
  stack = await startStack()
})
afterEach(async () => {
  await stack.close()
})

/** A `/live` client and everything it is sent, from the first event on. */
async function watch(auth: LiveAuth) {
  let seen!: { readings: ReturnType<typeof collect<Reading>>; snapshots: ReturnType<typeof collect<DeviceState[]>>; changes: ReturnType<typeof collect<DeviceState>>; messages: ReturnType<typeof envelopes> }
  const socket = await stack.live({
    auth,
    setup: (s) => {
      seen = {
        readings: collect<Reading>((push) => s.on('readings', (batch) => batch.forEach(push))),
        snapshots: collect<DeviceState[]>((push) => s.on('devices', push)),
        changes: collect<DeviceState>((push) => s.on('device', (batch) => batch.forEach(push))),
        messages: envelopes(s),
      }
    },
  })
  return { socket, ...seen }
}

/** Three devices that have reported once, so the registry knows them. */
async function threeDevices() {
  const device = await stack.mqtt({ clientId: 'views-publisher' })
  const marker = await watch({ view: { filters: [], devices: false, readings: true } })
  for (const id of ['a', 'b', 'c']) await device.publishAsync(`devices/${id}/telemetry`, JSON.stringify({ t: 1 }))
  await marker.readings.until('a reading of each device', (v) => new Set(v.map((r) => r.device)).size === 3)
  marker.socket.disconnect()
  return device
}

/** Publishes a reading `n` of each device, then waits for `done`. */
async function round(device: Awaited<ReturnType<typeof threeDevices>>, n: number, done: () => Promise<unknown>) {
  for (const id of ['a', 'b', 'c']) await device.publishAsync(`devices/${id}/telemetry`, JSON.stringify({ t: n }))
  await done()
}

describe('/live views', () => {
  it('sends a client that shows one device that device\'s readings and state, and nothing else', async () => {
    const device = await threeDevices()
    const page = await watch({ view: { filters: [], devices: ['b'], readings: ['b'] } })
    const all = await watch({ view: { devices: true } })
    await page.snapshots.until('the snapshot', (v) => v.length === 1)
    expect(page.snapshots.values[0]!.map((d) => d.id)).toEqual(['b'])

    await round(device, 2, () => all.readings.until('every device\'s reading of round 2', (v) => v.filter((r) => r.value === 2).length === 3))
    await page.readings.until('b\'s reading of round 2', (v) => v.some((r) => r.value === 2))
    // the next round has come to the client that sees everything: anything for a or c would have come before
    await round(device, 3, () => all.readings.until('round 3', (v) => v.filter((r) => r.value === 3).length === 3))
    await page.readings.until('b\'s reading of round 3', (v) => v.some((r) => r.value === 3))
    expect(new Set(page.readings.values.map((r) => r.device))).toEqual(new Set(['b']))
    // b's own changes may still be held (values go at most once a second); nothing of a or c came
    expect(page.changes.values.filter((d) => d.id !== 'b')).toEqual([])
    expect(page.messages.values).toEqual([])
    expect(all.messages.values.length).toBeGreaterThan(0)
  })

  it('changes the view without reconnecting: acknowledged with the view as applied, a snapshot after it', async () => {
    const device = await threeDevices()
    const client = await watch({ view: { filters: [], devices: false, readings: false } })
    const order: string[] = []
    client.socket.on('devices', () => order.push('devices'))
    // a callback, as the dashboard's: a promise's continuation runs after what came in the same read
    const ack = await new Promise((resolve) =>
      client.socket.emit('view', { filters: 'devices/c/#', devices: ['c', 'a', 'c'], readings: [] }, (a) => {
        order.push('ack')
        resolve(a)
      }),
    )
    expect(ack).toEqual({ ok: true, view: { filters: ['devices/c/#'], devices: ['a', 'c'], readings: false } })
    await client.snapshots.until('the snapshot of a and c', (v) => v.length === 1)
    expect(order).toEqual(['ack', 'devices'])
    expect(client.snapshots.values[0]!.map((d) => d.id).sort()).toEqual(['a', 'c'])

    // readings default to the devices shown
    expect(await client.socket.emitWithAck('view', { filters: [], devices: ['a'] })).toEqual({ ok: true, view: { filters: [], devices: ['a'], readings: ['a'] } })
    await round(device, 5, () => client.readings.until('a\'s reading', (v) => v.some((r) => r.device === 'a' && r.value === 5)))
    expect(new Set(client.readings.values.map((r) => r.device))).toEqual(new Set(['a']))
    // the snapshot comes again only when the devices shown changed
    expect(client.snapshots.values).toHaveLength(2)
  })

  it('sends a device whose only news is new values at most once a second: the overview\'s bounded rate', async () => {
    const device = await stack.mqtt({ clientId: 'pacer' })
    const client = await watch({ view: { filters: [], devices: ['pacer'], readings: ['pacer'] } })
    const started = Date.now()
    // 20 readings a second for 2.5 s
    for (let n = 1; n <= 50; n++) {
      await device.publishAsync('devices/pacer/telemetry', JSON.stringify({ n }))
      await new Promise((r) => setTimeout(r, 50))
    }
    await client.readings.until('the 50th reading', (v) => v.some((r) => r.value === 50))
    const seconds = (Date.now() - started) / 1000
    const states = client.changes.values.filter((d) => d.id === 'pacer')
    // the first (a new device) comes at once; then values at most once a second
    expect(states.length).toBeGreaterThanOrEqual(2)
    expect(states.length).toBeLessThanOrEqual(Math.ceil(seconds) + 1)
    expect(client.readings.values.filter((r) => r.metric === 'n')).toHaveLength(50)
  })

  it('narrows a view to the devices its principal may see: named ones, every one, and topic filters', async () => {
    // viewers may read device a only; anonymous clients (the devices here, and a dashboard of everything) are operators
    await stack.close()
    stack = await startStack({
      access: { ...emptyConfig(), tokens: { wall: { role: 'viewer', secret: quickHash('wall-secret-1') } }, anonymous: { role: 'operator' }, roles: { viewer: [{ access: 'read', topic: 'devices/a/#' }] } },
    })
    const device = await threeDevices()
    const token = 'pbt_wall.wall-secret-1'
    const page = await watch({ token, view: { filters: [], devices: ['a', 'b'], readings: ['a', 'b'] } })
    const all = await watch({ view: { devices: true } })
    await page.snapshots.until('the snapshot', (v) => v.length === 1)
    expect(page.snapshots.values[0]!.map((d) => d.id)).toEqual(['a'])
    // a view is applied as far as the rules allow, and says so
    expect(await page.socket.emitWithAck('view', { filters: ['devices/a/#'], devices: ['a', 'b', 'c'], readings: ['c', 'a'] })).toEqual({
      ok: true,
      view: { filters: ['devices/a/#'], devices: ['a'], readings: ['a'] },
    })
    expect(await page.socket.emitWithAck('view', { filters: ['#'] })).toMatchObject({ ok: false, error: { code: 'E_NOT_AUTHORIZED' } })
    // every device, for one who may not read `#`, is none through the live events (the API lists its own)
    const wall = await watch({ token, view: { filters: [] } })
    expect(await wall.socket.emitWithAck('view', { filters: [], devices: true, readings: true })).toEqual({ ok: true, view: { filters: [], devices: false, readings: false } })

    await round(device, 4, () => all.readings.until('every device\'s reading of round 4', (v) => v.filter((r) => r.value === 4).length === 3))
    await page.readings.until('a\'s reading of round 4', (v) => v.some((r) => r.value === 4))
    await page.messages.until('a\'s message of round 4', (v) => v.some((e) => e.payload.includes('4')))
    await round(device, 5, () => all.readings.until('round 5', (v) => v.filter((r) => r.value === 5).length === 3))
    await page.readings.until('a\'s reading of round 5', (v) => v.some((r) => r.value === 5))
    expect(new Set(page.readings.values.map((r) => r.device))).toEqual(new Set(['a']))
    expect(page.changes.values.filter((d) => d.id !== 'a')).toEqual([])
    expect(new Set(page.messages.values.map((e) => e.topic))).toEqual(new Set(['devices/a/telemetry']))
    expect(wall.readings.values).toEqual([])
    expect(wall.changes.values).toEqual([])
    expect(wall.snapshots.values).toEqual([])
  })

  it('answers a bad view with a named error and keeps the one it had', async () => {
    const client = await watch({ view: { filters: ['x'], devices: false } })
    expect(await client.socket.emitWithAck('view', { filters: ['a/#/b'] })).toMatchObject({ ok: false, error: { code: 'E_INVALID_FILTER' } })
    expect(await client.socket.emitWithAck('view', { devices: 'all' } as never)).toMatchObject({ ok: false, error: { code: 'E_INVALID_MESSAGE' } })
    expect(await client.socket.emitWithAck('view', { readings: Array.from({ length: 65 }, (_, i) => `d${i}`) })).toMatchObject({ ok: false, error: { code: 'E_INVALID_MESSAGE' } })
    const publisher = await stack.mqtt()
    await publisher.publishAsync('x', 'still')
    await client.messages.until('x, on the filters it had', (v) => v.some((e: Envelope) => e.topic === 'x'))
  })

  it('refuses a handshake whose view is not one', async () => {
    const refusal = (auth: LiveAuth) => within(5000, 'the refusal', stack.live({ auth }).then(() => null, (err: Error & { data?: { code?: string } }) => err.data?.code))
    expect(await refusal({ view: { devices: 'yes' } as never })).toBe('E_INVALID_MESSAGE')
    expect(await refusal({ view: { filters: ['#', ''] } })).toBe('E_INVALID_FILTER')
  })

  it('still reads the shapes before views: top-level filters and devices, and view.devices alone', async () => {
    const device = await threeDevices()
    const legacy = await watch({ filters: 'devices/a/#', devices: false })
    const dashboard = await watch({ view: { devices: true } })
    await dashboard.snapshots.until('every device', (v) => v.length === 1 && v[0]!.length === 3)
    await round(device, 7, () => dashboard.readings.until('every device\'s reading', (v) => v.filter((r) => r.value === 7).length === 3))
    await legacy.messages.until('a\'s message', (v) => v.some((e) => e.topic === 'devices/a/telemetry' && e.payload.includes('7')))
    expect(new Set(legacy.messages.values.map((e) => e.topic))).toEqual(new Set(['devices/a/telemetry']))
    expect(legacy.readings.values).toEqual([])
    expect(legacy.snapshots.values).toEqual([])
    await dashboard.messages.until('every message', (v) => v.filter((e) => e.payload.includes('7')).length === 3)
  })
})
