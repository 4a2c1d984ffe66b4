import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { Registry } from '../../devices/registry.ts'
import type { DeviceState, Envelope, Reading } from '../../protocol/index.ts'

/** A message as the bridge hands it to the registry. */
const message = (topic: string, payload: string, clientId = 'c1', ts = Date.now()): Envelope => ({ topic, payload, ts, source: 'mqtt', clientId, qos: 0, retain: false })

let registry: Registry
/** Every batch the registry emitted. */
let updates: { changed: DeviceState[]; readings: Reading[]; valuesOnly: DeviceState[] }[]

beforeEach(() => {
  vi.useFakeTimers()
  registry = new Registry()
  updates = []
  registry.on('update', (changed, readings, valuesOnly) => updates.push({ changed, readings, valuesOnly }))
})
afterEach(() => {
  registry.close()
  vi.useRealTimers()
})

describe('registry batches', () => {
  it('sends changes and readings together once per 100 ms, and value-only changes apart', () => {
    registry.ingest(message('devices/a/telemetry', '{"t":1}'))
    registry.ingest(message('devices/a/telemetry', '{"t":2}'))
    expect(updates).toEqual([])
    vi.advanceTimersByTime(100)
    expect(updates).toHaveLength(1)
    expect(updates[0]!.changed.map((d) => d.id)).toEqual(['a'])
    expect(updates[0]!.readings.map((r) => r.value)).toEqual([1, 2])

    registry.ingest(message('devices/a/telemetry', '{"t":3}'))
    vi.advanceTimersByTime(100)
    // same metrics, same state: only the value moved
    expect(updates[1]).toMatchObject({ changed: [], valuesOnly: [{ id: 'a' }], readings: [{ value: 3 }] })
  })
})

describe('presence', () => {
  it('is online while its client is connected and offline at once when it drops', () => {
    registry.ingest(message('devices/a/telemetry', '{"t":1}', 'esp-a'))
    expect(registry.get('a')).toMatchObject({ online: true, clientId: 'esp-a' })
    registry.clientDisconnected('esp-a')
    expect(registry.get('a')!.online).toBe(false)
    registry.clientConnected('esp-a', { topic: 'devices/a/status', payload: 'offline' })
    expect(registry.get('a')).toMatchObject({ online: true, will: { topic: 'devices/a/status', payload: 'offline' } })
    expect(registry.usage.wills).toBe(1)
    registry.clientDisconnected('esp-a')
    expect(registry.usage.wills).toBe(0)
  })

  it('follows a status topic over the connection', () => {
    registry.ingest(message('devices/a/telemetry', '{"t":1}'))
    registry.ingest(message('devices/a/status', 'offline'))
    expect(registry.get('a')!.online).toBe(false)
    registry.ingest(message('devices/a/status', 'online'))
    expect(registry.get('a')!.online).toBe(true)
  })

  it('turns stale after 3 × its usual interval of silence, and fresh on its next message', () => {
    for (let i = 0; i < 4; i++) {
      registry.ingest(message('devices/a/telemetry', '{"t":1}', 'c', Date.now()))
      vi.advanceTimersByTime(1000)
    }
    expect(registry.get('a')!.stale).toBe(false)
    vi.advanceTimersByTime(4000)
    expect(registry.get('a')!.stale).toBe(true)
    registry.ingest(message('devices/a/telemetry', '{"t":1}'))
    expect(registry.get('a')!.stale).toBe(false)
  })

  it('counts takeovers of the client id a device publishes through', () => {
    registry.ingest(message('devices/a/telemetry', '{"t":1}', 'twin'))
    registry.clientTakenOver('twin')
    registry.clientTakenOver('twin')
    expect(registry.get('a')!.takeovers).toBe(2)
  })
})

describe('eviction', () => {
  it('forgets the least recently seen device, not the least recently created', () => {
    const small = new Registry({ maxDevices: 3 })
    const forgotten: string[] = []
    small.on('forget', (id) => forgotten.push(id))
    for (const id of ['a', 'b', 'c']) small.ingest(message(`devices/${id}/telemetry`, '1'))
    small.ingest(message('devices/a/telemetry', '2')) // a is seen again
    small.ingest(message('devices/d/telemetry', '1'))
    expect(forgotten).toEqual(['b'])
    expect(small.list().map((d) => d.id).sort()).toEqual(['a', 'c', 'd'])
    small.close()
  })

  it('takes constant time per eviction: 100,000 devices through a 50,000-device registry', () => {
    vi.useRealTimers()
    const big = new Registry({ maxDevices: 50_000 })
    const started = performance.now()
    for (let i = 0; i < 100_000; i++) big.ingest(message(`devices/d${i}/telemetry`, '1', `c${i}`))
    // a scan of every device per eviction would be 2.5 billion steps here, many minutes; linear
    // eviction takes about 3 s, and the bound leaves room for a machine busy with other work
    expect(performance.now() - started).toBeLessThan(40_000)
    expect(big.usage.devices).toBe(50_000)
    big.close()
  }, 60_000)

  it('caps metrics per device', () => {
    const keys = Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`m${i}`, i]))
    registry.ingest(message('devices/a/telemetry', JSON.stringify(keys)))
    expect(Object.keys(registry.get('a')!.metrics)).toHaveLength(64)
  })
})

describe('commands', () => {
  it('builds each firmware format’s command, and names what cannot be sent', () => {
    registry.ingest(message('devices/relay/telemetry', '{"relay":0}'))
    registry.ingest(message('stat/plug/POWER', 'OFF'))
    expect(registry.command('relay', 'relay', true)).toEqual({ topic: 'devices/relay/commands', payload: '{"name":"relay","value":true}' })
    expect(registry.command('plug', 'POWER', 1)).toEqual({ topic: 'cmnd/plug/POWER', payload: 'ON' })
    expect(registry.command('ghost', 'x', 1)).toBeUndefined()
    expect(registry.command('plug', 'a/b', 1)).toMatchObject({ error: 'E_UNKNOWN_COMMAND' })
  })

  it('restores what discovery taught it from a snapshot', () => {
    registry.ingest(message('homeassistant/sensor/kitchen/temp/config', JSON.stringify({ state_topic: 'k/t', name: 'Temp', device: { identifiers: ['kitchen'] }, unit_of_measurement: '°C' })))
    const restored = new Registry({}, JSON.parse(JSON.stringify(registry.formats())) as ReturnType<Registry['formats']>)
    restored.ingest(message('k/t', '21.5'))
    expect(restored.get('kitchen')?.metrics).toMatchObject({ Temp: { value: 21.5, unit: '°C' } })
    restored.close()
  })
})

describe("another node's devices", () => {
  it('mirrors their shared state: listed, commanded, offline with their client, never stale by its own clock, and this node\'s once it hears from them', () => {
    const origin = new Registry()
    origin.ingest(message('devices/relay/telemetry', '{"relay":0,"t":20}', 'esp-relay', Date.now() - 1000))
    origin.ingest(message('devices/relay/telemetry', '{"relay":0,"t":21}', 'esp-relay'))
    // as it crosses Redis: plain JSON
    const shared = JSON.parse(JSON.stringify([{ id: 'relay', snapshot: origin.snapshot('relay') }])) as { id: string; snapshot: unknown }[]
    origin.close()
    const mirrored: DeviceState[][] = []
    registry.on('update', (_changed, _readings, _values, _stored, devices) => mirrored.push(devices))

    registry.mirror([...shared, { id: 'bogus', snapshot: { state: 'not one' } }])
    vi.advanceTimersByTime(100)
    expect(updates, 'nothing of its own to save, store or share').toEqual([{ changed: [], readings: [], valuesOnly: [] }])
    expect(mirrored.at(-1)!.map((d) => d.id)).toEqual(['relay'])
    expect(registry.list().map((d) => d.id)).toEqual(['relay'])
    expect(registry.get('relay')).toMatchObject({ online: true, clientId: 'esp-relay', metrics: { t: { value: 21 } } })
    expect(registry.command('relay', 'relay', true)).toEqual({ topic: 'devices/relay/commands', payload: '{"name":"relay","value":true}' })

    // its last-seen time moves as often as its node shares it: that node says when it is stale
    vi.advanceTimersByTime(10_000)
    expect(registry.get('relay')!.stale).toBe(false)
    registry.clientDisconnected('esp-relay')
    expect(registry.get('relay')!.online).toBe(false)
    vi.advanceTimersByTime(100)
    expect(mirrored.at(-1)!.map((d) => d.id)).toEqual(['relay'])

    registry.ingest(message('devices/relay/telemetry', '{"t":22}', 'esp-relay'))
    vi.advanceTimersByTime(100)
    expect(updates.at(-1)!.changed.map((d) => d.id), 'heard from here: this node\'s').toEqual(['relay'])
    expect(updates.at(-1)!.readings.map((r) => r.value)).toEqual([22])
  })
})
