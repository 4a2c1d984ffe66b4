import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import type { DeviceState, Reading } from '../../protocol/index.ts'
import { collect, mqttMessages, startStack, within, type LiveClient, type Stack } from '../helpers/stack.ts'

let stack: Stack
beforeEach(async () => {
  stack = await startStack()
})
afterEach(async () => {
  await stack.close()
})

/** Latest state of every device a `/live` client has heard of, from the snapshot and the updates. */
function deviceView(live: LiveClient) {
  const latest = new Map<string, DeviceState>()
  const updates = collect<DeviceState>((push) => {
    const apply = (devices: DeviceState[]) => devices.forEach((d) => (latest.set(d.id, d), push(d)))
    live.on('devices', apply)
    live.on('device', apply)
  })
  return {
    latest,
    until: (what: string, ok: (d: DeviceState | undefined) => boolean, id: string) =>
      updates.until(what, () => ok(latest.get(id))),
  }
}

/** Waits for the registry's batched update after which `ok` holds. */
function registryUpdate(what: string, ok: () => boolean): Promise<unknown> {
  const { registry } = stack.app.bridge
  return collect((push) => registry.on('update', push)).until(what, ok)
}

async function getJson<T>(path: string): Promise<{ status: number; body: T }> {
  const res = await fetch(stack.httpUrl + path)
  return { status: res.status, body: (await res.json()) as T }
}

describe('device registry', () => {
  it('lists a generic device with its metrics over REST and /live', async () => {
    const live = await stack.live()
    const view = deviceView(live)
    const readings = collect<Reading>((push) => live.on('readings', (batch) => batch.forEach(push)))
    const device = await stack.mqtt({ clientId: 'esp-kitchen' })

    await device.publishAsync('devices/kitchen/telemetry', JSON.stringify({ temperature: 21.5, env: { humidity: 40 } }))

    await view.until('the kitchen device', (d) => d?.metrics.temperature?.value === 21.5, 'kitchen')
    await readings.until('two readings', (r) => r.length === 2)
    expect(readings.values.map((r) => [r.device, r.metric, r.value])).toEqual([
      ['kitchen', 'temperature', 21.5],
      ['kitchen', 'env.humidity', 40],
    ])
    const { status, body } = await getJson<DeviceState[]>('/api/devices')
    expect(status).toBe(200)
    expect(body).toEqual([
      expect.objectContaining({
        id: 'kitchen',
        name: 'kitchen',
        format: 'generic',
        online: true,
        stale: false,
        clientId: 'esp-kitchen',
        topics: ['devices/kitchen/telemetry'],
        metrics: {
          temperature: { value: 21.5, ts: expect.any(Number) },
          'env.humidity': { value: 40, ts: expect.any(Number) },
        },
      }),
    ])
    expect((await getJson('/api/devices/kitchen')).body).toEqual(body[0])
    expect(await getJson('/api/devices/nope')).toEqual({ status: 404, body: { error: { code: 'E_UNKNOWN_DEVICE', message: 'no device "nope" is known' } } })
    expect(await getJson('/api/devices/%E0%A4%A')).toEqual({
      status: 400,
      body: { error: { code: 'E_INVALID_REQUEST', message: 'malformed percent-encoding in /api/devices/%E0%A4%A' } },
    })
  })

  it('sends the snapshot to a client that connects later', async () => {
    const device = await stack.mqtt()
    await device.publishAsync('tele/plug/SENSOR', JSON.stringify({ ENERGY: { Power: 35 } }))
    await registryUpdate('the registry to learn the plug', () => stack.app.bridge.registry.get('plug') !== undefined)
    let snapshot: Promise<DeviceState[]> | undefined
    await stack.live({ setup: (live) => (snapshot = new Promise((r) => live.once('devices', r))) })
    expect(await within(5000, 'the devices snapshot', snapshot!)).toEqual([
      expect.objectContaining({
        id: 'plug',
        format: 'tasmota',
        metrics: { 'ENERGY.Power': expect.objectContaining({ value: 35, unit: 'W' }) },
      }),
    ])
  })

  it('turns a device offline when its connection drops, and back online when it returns', async () => {
    const live = await stack.live()
    const view = deviceView(live)
    const will = { topic: 'devices/porch/status', payload: Buffer.from('offline'), qos: 1 as const, retain: true }
    const device = await stack.mqtt({ clientId: 'porch-esp', will })
    await device.publishAsync('devices/porch/telemetry', '{"lux":120}')
    await view.until('porch online', (d) => d?.online === true, 'porch')
    expect(view.latest.get('porch')!.will).toEqual({ topic: 'devices/porch/status', payload: 'offline' })

    device.stream.destroy()
    await view.until('porch offline after its connection dropped', (d) => d?.online === false, 'porch')

    const again = await stack.mqtt({ clientId: 'porch-esp' })
    await view.until('porch online after reconnecting', (d) => d?.online === true, 'porch')
    await again.endAsync()
    await view.until('porch offline after a clean disconnect', (d) => d?.online === false, 'porch')
  })

  it('labels a Homie property from its announced $name on the first value', async () => {
    const device = await stack.mqtt()
    await device.publishAsync('homie/5/boiler/$state', 'ready')
    await device.publishAsync('homie/5/boiler/water/temp/$name', 'Water temperature')
    await device.publishAsync('homie/5/boiler/water/temp/$unit', '°C')
    await device.publishAsync('homie/5/boiler/water/temp', '61.5')
    await registryUpdate('the boiler temperature', () => stack.app.bridge.registry.get('boiler')?.metrics['water.temp'] !== undefined)
    expect(stack.app.bridge.registry.get('boiler')!.metrics['water.temp']).toMatchObject({ value: 61.5, unit: '°C', label: 'Water temperature' })
  })

  it('follows status topics: Tasmota LWT', async () => {
    const live = await stack.live()
    const view = deviceView(live)
    const bridgeClient = await stack.mqtt()
    await bridgeClient.publishAsync('tele/sonoff/LWT', 'Online', { retain: true })
    await view.until('sonoff online', (d) => d?.online === true, 'sonoff')
    await bridgeClient.publishAsync('tele/sonoff/LWT', 'Offline', { retain: true })
    await view.until('sonoff offline', (d) => d?.online === false, 'sonoff')
  })

  it('marks a device stale when it stops publishing without disconnecting', async () => {
    const live = await stack.live()
    const view = deviceView(live)
    const device = await stack.mqtt()
    for (let i = 0; i < 4; i++) {
      await device.publishAsync('devices/pulse/telemetry', String(i))
      await new Promise((r) => setTimeout(r, 300)) // the device's own publish interval
    }
    await view.until('pulse stale', (d) => d?.stale === true, 'pulse')
    expect(view.latest.get('pulse')!.online).toBe(true)
    await device.publishAsync('devices/pulse/telemetry', '5')
    await view.until('pulse fresh again', (d) => d?.stale === false, 'pulse')
  })

  it('keeps history per metric and a summary per topic', async () => {
    const device = await stack.mqtt()
    for (const v of [1, 2, 3]) await device.publishAsync('devices/h/telemetry', JSON.stringify({ t: v, u: v * 10 }))
    await device.publishAsync('some/raw', Buffer.from([0xff, 0x00]))
    await registryUpdate('three points', () => stack.app.bridge.registry.get('h')?.metrics.t?.value === 3)

    const { body } = await getJson<{ metrics: Record<string, { points: [number, number][] }> }>('/api/devices/h/history?metrics=t')
    expect(Object.keys(body.metrics)).toEqual(['t'])
    expect(body.metrics.t!.points.map(([, v]) => v)).toEqual([1, 2, 3])
    const since = body.metrics.t!.points[2]![0]
    const later = await getJson<{ metrics: Record<string, { points: [number, number][] }> }>(`/api/devices/h/history?since=${since}`)
    expect(later.body.metrics.u!.points.map(([, v]) => v).at(-1)).toBe(30)

    const topics = await getJson<{ topic: string; count: number; payload: string; encoding?: string }[]>('/api/topics')
    expect(topics.body).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ topic: 'devices/h/telemetry', count: 3, payload: '{"t":3,"u":30}' }),
        expect.objectContaining({ topic: 'some/raw', count: 1, payload: '/wA=', encoding: 'base64' }),
      ]),
    )
  })
})

describe('commands', () => {
  it('publishes a command where a generic device listens, and acknowledges where it went', async () => {
    const device = await stack.mqtt()
    await device.subscribeAsync('devices/relay-1/commands', { qos: 1 })
    const received = mqttMessages(device)
    await device.publishAsync('devices/relay-1/telemetry', '{"relay":false}')
    const live = await stack.live()

    const ack = await live.emitWithAck('command', { device: 'relay-1', name: 'relay', value: true })

    expect(ack).toEqual({ ok: true, topic: 'devices/relay-1/commands', payload: '{"name":"relay","value":true}' })
    await received.until('the command at the device', (v) => v.length > 0)
    expect(received.values[0]).toMatchObject({ topic: 'devices/relay-1/commands', payload: '{"name":"relay","value":true}', qos: 1 })
  })

  it('names the error for an unknown device, an unknown command and a malformed request', async () => {
    const device = await stack.mqtt()
    await device.publishAsync('homie/5/lamp/$state', 'ready')
    await device.publishAsync('homie/5/lamp/light/power', 'true')
    const live = await stack.live()

    expect(await live.emitWithAck('command', { device: 'ghost', name: 'x', value: 1 })).toMatchObject({ ok: false, error: { code: 'E_UNKNOWN_DEVICE' } })
    expect(await live.emitWithAck('command', { device: 'lamp', name: 'light.nope', value: 1 })).toMatchObject({ ok: false, error: { code: 'E_UNKNOWN_COMMAND' } })
    expect(await live.emitWithAck('command', { device: 'lamp' } as never)).toMatchObject({ ok: false, error: { code: 'E_INVALID_MESSAGE' } })
  })
})
