import { describe, expect, it } from 'vitest'
import { parseDuration } from '../../simulators/duration.ts'
import { staggerMs, resolveFleetOptions } from '../../simulators/fleet.ts'
import {
  FORMATS,
  esphome,
  formatFor,
  generic,
  homie,
  tasmota,
  tasmotaUptime,
  type DeviceContext,
  type DeviceInfo,
} from '../../simulators/formats.ts'
import {
  PROFILES,
  accumulateEnergy,
  batteryAt,
  humidityAt,
  motionAt,
  powerAt,
  pressureAt,
  profileFor,
  sample,
  temperatureAt,
} from '../../simulators/models.ts'
import { RateMeter } from '../../simulators/rate.ts'

const HOUR = 3_600_000
const DAY = 24 * HOUR
// Midnight UTC, 2024-01-01.
const T0 = Date.UTC(2024, 0, 1)
const SEEDS = [1, 42, 0xdeadbeef, 123_456]

function correlation(xs: number[], ys: number[]): number {
  const mean = (v: number[]) => v.reduce((a, b) => a + b, 0) / v.length
  const mx = mean(xs)
  const my = mean(ys)
  let sxy = 0
  let sxx = 0
  let syy = 0
  for (let i = 0; i < xs.length; i++) {
    sxy += (xs[i]! - mx) * (ys[i]! - my)
    sxx += (xs[i]! - mx) ** 2
    syy += (ys[i]! - my) ** 2
  }
  return sxy / Math.sqrt(sxx * syy)
}

describe('parseDuration', () => {
  it.each([
    ['1s', 1000],
    ['500ms', 500],
    ['2m', 120_000],
    ['1h', 3_600_000],
    ['250', 250],
    ['1.5s', 1500],
    [' 10 S ', 10_000],
    ['0', 0],
  ])('%j is %d ms', (text, ms) => expect(parseDuration(text)).toBe(ms))

  it.each(['', 's', '-1s', '1d', '1 s s', 'abc', '1e3', '0x10', 'Infinity', '9'.repeat(400)])('%j is null', (text) =>
    expect(parseDuration(text)).toBeNull(),
  )
})

describe('sensor models', () => {
  it('are deterministic for a seed and a time, and differ between seeds', () => {
    const t = T0 + 12 * HOUR + 1234
    for (const seed of SEEDS) {
      expect(temperatureAt(seed, t)).toBe(temperatureAt(seed, t))
      expect(pressureAt(seed, t)).toBe(pressureAt(seed, t))
      expect(sample(PROFILES[4]!, seed, t, { relay: true, energy: 1 })).toEqual(
        sample(PROFILES[4]!, seed, t, { relay: true, energy: 1 }),
      )
    }
    expect(temperatureAt(1, t)).not.toBe(temperatureAt(2, t))
  })

  it('cycles temperature daily: warmest in the afternoon, coldest before dawn', () => {
    for (const seed of SEEDS) {
      for (let day = 0; day < 5; day++) {
        const midnight = T0 + day * DAY
        const afternoon = temperatureAt(seed, midnight + 15 * HOUR)
        const night = temperatureAt(seed, midnight + 3 * HOUR)
        expect(afternoon - night).toBeGreaterThan(3)
        expect(afternoon).toBeLessThan(32)
        expect(night).toBeGreaterThan(10)
      }
      // Noise but no jumps: a second apart, readings agree within a tenth of a degree.
      expect(Math.abs(temperatureAt(seed, T0 + 1000) - temperatureAt(seed, T0))).toBeLessThan(0.1)
    }
  })

  it('anti-correlates humidity with temperature and keeps it in range', () => {
    for (const seed of SEEDS) {
      const times = Array.from({ length: 96 }, (_, i) => T0 + i * 15 * 60_000)
      const temps = times.map((t) => temperatureAt(seed, t))
      const hums = times.map((t) => humidityAt(seed, t))
      expect(correlation(temps, hums)).toBeLessThan(-0.8)
      for (const h of hums) {
        expect(h).toBeGreaterThanOrEqual(5)
        expect(h).toBeLessThanOrEqual(99)
      }
    }
  })

  it('walks pressure slowly around 1013 hPa', () => {
    for (const seed of SEEDS) {
      const values = Array.from({ length: 24 * 14 }, (_, i) => pressureAt(seed, T0 + i * HOUR))
      for (const p of values) {
        expect(p).toBeGreaterThan(1000)
        expect(p).toBeLessThan(1026)
      }
      for (let i = 1; i < values.length; i++) expect(Math.abs(values[i]! - values[i - 1]!)).toBeLessThan(2)
      // It does wander: over two weeks the range is several hPa.
      expect(Math.max(...values) - Math.min(...values)).toBeGreaterThan(4)
    }
  })

  it('drains the battery until it is swapped', () => {
    for (const seed of SEEDS) {
      let drops = 0
      let swaps = 0
      let previous = batteryAt(seed, T0)
      for (let minute = 1; minute <= 24 * 60; minute++) {
        const level = batteryAt(seed, T0 + minute * 60_000)
        expect(level).toBeGreaterThanOrEqual(5)
        expect(level).toBeLessThanOrEqual(100)
        if (level < previous) drops++
        else if (level > previous) {
          // A swap starts again near 100 %.
          expect(level).toBeGreaterThan(99)
          swaps++
        }
        previous = level
      }
      expect(drops).toBeGreaterThan(24 * 60 - 5)
      // 0.1–0.3 % a minute: a battery lasts 5 to 16 hours here.
      expect(swaps).toBeGreaterThanOrEqual(1)
      expect(swaps).toBeLessThanOrEqual(5)
    }
  })

  it('reports motion occasionally, in events of a few seconds', () => {
    for (const seed of SEEDS) {
      const seconds = Array.from({ length: 6 * 3600 }, (_, i) => motionAt(seed, T0 + i * 1000))
      const active = seconds.filter(Boolean).length / seconds.length
      expect(active).toBeGreaterThan(0.01)
      expect(active).toBeLessThan(0.2)
      let events = 0
      for (let i = 1; i < seconds.length; i++) if (seconds[i] && !seconds[i - 1]) events++
      expect(events).toBeGreaterThan(50)
    }
  })

  it('draws power only with the relay on, and meters energy', () => {
    for (const seed of SEEDS) {
      expect(powerAt(seed, T0, false)).toBe(0)
      const on = powerAt(seed, T0, true)
      expect(on).toBeGreaterThan(15)
      expect(on).toBeLessThan(225)
    }
    expect(accumulateEnergy(0, 1000, HOUR)).toBeCloseTo(1, 12)
    expect(accumulateEnergy(2.5, 60, 30 * 60_000)).toBeCloseTo(2.53, 12)
    expect(accumulateEnergy(1, 500, -10)).toBe(1)
  })

  it('samples only the sensors a device has, rounded as a device reports', () => {
    const plug = sample(['power'], 7, T0, { relay: true, energy: 12.34567 })
    expect(Object.keys(plug).sort()).toEqual(['current', 'energy', 'power', 'relay', 'voltage'])
    expect(plug.energy).toBe(12.346)
    const climate = sample(['temperature', 'humidity', 'pressure'], 7, T0, { relay: false, energy: 0 })
    expect(Object.keys(climate).sort()).toEqual(['humidity', 'pressure', 'relay', 'temperature'])
    expect(String(climate.temperature)).toMatch(/^\d+(\.\d)?$/)
  })

  it('hands out varied sensor sets by index, each with something to measure', () => {
    const sets = new Set(Array.from({ length: 20 }, (_, i) => profileFor(i).join(',')))
    expect(sets.size).toBe(PROFILES.length)
    for (const profile of PROFILES) expect(profile.some((s) => s !== 'motion')).toBe(true)
    // Mixed formats cycle by 4, profiles by 5: each format meets several sensor sets.
    const genericSets = new Set([0, 4, 8, 12].map((i) => profileFor(i).join(',')))
    expect(genericSets.size).toBe(4)
  })
})

describe('fleet scheduling and options', () => {
  it('cycles formats for mixed fleets', () => {
    expect([0, 1, 2, 3, 4].map((i) => formatFor(i, 'mixed'))).toEqual(['generic', 'tasmota', 'esphome', 'homie', 'generic'])
    expect(formatFor(3, 'tasmota')).toBe('tasmota')
  })

  it('staggers first publishes evenly over one interval', () => {
    expect(Array.from({ length: 4 }, (_, i) => staggerMs(i, 4, 1000))).toEqual([0, 250, 500, 750])
    expect(staggerMs(999, 1000, 10)).toBeLessThan(10)
  })

  it('fills defaults and names the field of a bad option', () => {
    expect(resolveFleetOptions({ devices: undefined })).toMatchObject({
      url: 'mqtt://127.0.0.1:1883',
      devices: 5,
      intervalMs: 1000,
      format: 'mixed',
      prefix: 'sim',
      keepalive: 10,
    })
    expect(() => resolveFleetOptions({ intervalMs: 1 })).toThrow(/^invalid fleet options: intervalMs: /)
    expect(() => resolveFleetOptions({ url: 'http://x' })).toThrow(/url: must be a broker URL/)
    expect(() => resolveFleetOptions({ format: 'zigbee' as 'generic' })).toThrow(/format/)
  })

  it('takes several broker URLs of one kind, for failover', () => {
    expect(resolveFleetOptions({ url: ['mqtt://10.0.0.1:1883', 'mqtt://10.0.0.2'] }).url).toEqual(['mqtt://10.0.0.1:1883', 'mqtt://10.0.0.2'])
    expect(resolveFleetOptions({ url: ['mqtts://10.0.0.1:8883', 'mqtts://10.0.0.2:8883'] }).url).toHaveLength(2)
    expect(resolveFleetOptions({ url: ['wss://a.example/mqtt', 'wss://b.example/mqtt'] }).url).toHaveLength(2)
    expect(() => resolveFleetOptions({ url: [] })).toThrow(/url: needs at least one broker URL/)
    expect(() => resolveFleetOptions({ url: ['mqtt://a:1883', 'http://b'] })).toThrow(/url\.1: must be a broker URL/)
    expect(() => resolveFleetOptions({ url: ['mqtt://a:1883', 'ws://b:80/mqtt'] })).toThrow(/url: every URL must use one scheme \(mqtt:\/\/\), got ws:\/\/b:80\/mqtt/)
    expect(() => resolveFleetOptions({ url: ['ws://a/mqtt', 'ws://b/'] })).toThrow(/the same path/)
    expect(() => resolveFleetOptions({ url: ['mqtt://u:p@a', 'mqtt://b'] })).toThrow(/the same user name and password/)
    expect(() => resolveFleetOptions({ url: ['mqtts://a.example', 'mqtts://b.example'] })).toThrow(/MQTT over TLS to several hosts/)
    expect(() => resolveFleetOptions({ url: Array.from({ length: 17 }, (_, i) => `mqtt://10.0.0.${i}`) })).toThrow(/at most 16/)
  })

  it('measures messages per second over a sliding second', () => {
    const meter = new RateMeter(1000, 10, 0)
    for (let t = 0; t < 3000; t += 10) meter.record(1, t)
    expect(meter.perSecond(3000)).toBeCloseTo(100, -1)
    // Nothing for a second: the window has slid past every message.
    expect(meter.perSecond(4100)).toBe(0)
    meter.record(50, 4200)
    expect(meter.perSecond(4250)).toBeCloseTo(50, -1)
  })
})

describe('firmware formats', () => {
  const dev: DeviceInfo = { id: 'sim-x-1', sensors: ['temperature', 'humidity', 'pressure', 'motion', 'power'] }
  const ctx: DeviceContext = { now: Date.UTC(2024, 0, 1, 12), uptimeMs: 90_061_000, intervalMs: 1000, rssi: 70 }
  const s = sample(dev.sensors, 1, ctx.now, { relay: true, energy: 1.2345 })

  it('sets wills and clean offline messages, retained at QoS 1', () => {
    expect(generic.will(dev)).toEqual({ topic: 'devices/sim-x-1/status', payload: 'offline', qos: 1, retain: true })
    expect(tasmota.will(dev)).toEqual({ topic: 'tele/sim-x-1/LWT', payload: 'Offline', qos: 1, retain: true })
    expect(esphome.will(dev)).toEqual({ topic: 'sim-x-1/status', payload: 'offline', qos: 1, retain: true })
    expect(homie.will(dev)).toEqual({ topic: 'homie/sim-x-1/$state', payload: 'lost', qos: 1, retain: true })
    expect(homie.offline(dev).payload).toBe('disconnected')
  })

  it('publishes telemetry at QoS 0', () => {
    for (const format of Object.values(FORMATS)) {
      for (const m of format.telemetry(dev, s, null, ctx)) expect(m.qos).toBe(0)
    }
  })

  it('encodes generic telemetry as a JSON object of numbers, with on/off states as booleans', () => {
    const [m] = generic.telemetry(dev, s, null, ctx)
    const body = JSON.parse(m!.payload) as Record<string, unknown>
    const { units, ...values } = body
    expect(Object.keys(values)).toEqual(['temperature', 'humidity', 'pressure', 'motion', 'power', 'energy', 'relay'])
    for (const [k, v] of Object.entries(values)) expect(typeof v, k).toBe(k === 'relay' || k === 'motion' ? 'boolean' : 'number')
    expect(units).toMatchObject({ temperature: '°C', humidity: '%', power: 'W' })
    expect(body.relay).toBe(true)
  })

  it('encodes Tasmota SENSOR and STATE like the firmware', () => {
    const [sensor, state] = tasmota.telemetry(dev, s, null, ctx)
    expect(sensor!.topic).toBe('tele/sim-x-1/SENSOR')
    expect(JSON.parse(sensor!.payload)).toMatchObject({
      Time: '2024-01-01T12:00:00',
      BME280: { Temperature: s.temperature, Humidity: s.humidity, Pressure: s.pressure },
      ENERGY: { Power: Math.round(s.power!), Total: 1.235, Voltage: expect.any(Number), Current: s.current },
      TempUnit: 'C',
      PressureUnit: 'hPa',
    })
    expect(JSON.parse(state!.payload)).toMatchObject({ Uptime: '1T01:01:01', POWER: 'ON', Wifi: { RSSI: 70 } })
    expect(tasmotaUptime(60_000)).toBe('0T00:01:00')
  })

  it('publishes ESPHome and Homie binary states only when they change', () => {
    const still = { ...s, motion: false }
    const moved = { ...s, motion: true }
    const motion = (format: typeof esphome, previous: typeof s) =>
      format.telemetry(dev, moved, previous, ctx).filter((m) => m.topic.includes('motion'))
    expect(motion(esphome, moved)).toEqual([])
    expect(motion(esphome, still).map((m) => [m.topic, m.payload])).toEqual([['sim-x-1/binary_sensor/motion/state', 'ON']])
    expect(motion(homie, moved)).toEqual([])
    expect(motion(homie, still).map((m) => [m.topic, m.payload])).toEqual([['homie/sim-x-1/env/motion', 'true']])
    // ...so the birth carries the current state.
    const isMotion = (topic: string) => topic.endsWith('motion/state') || topic.endsWith('env/motion')
    for (const format of [esphome, homie]) {
      expect(format.birth(dev, still, ctx).filter((m) => isMotion(m.topic))).toHaveLength(1)
    }
  })

  it.each([
    [generic, 'devices/sim-x-1/commands', '{"name":"relay","value":1}', { kind: 'relay', value: true }],
    [generic, 'devices/sim-x-1/commands', '{"name":"relay","value":false}', { kind: 'relay', value: false }],
    [generic, 'devices/sim-x-1/commands', '{"name":"relay","value":"ON"}', { kind: 'relay', value: true }],
    [generic, 'devices/sim-x-1/commands', '{"name":"relay","value":"off"}', { kind: 'relay', value: false }],
    [generic, 'devices/sim-x-1/commands', '{"name":"interval","value":500}', { kind: 'interval', ms: 500, unit: 'ms' }],
    [generic, 'devices/sim-x-1/commands', '{"name":"interval","value":"2s"}', { kind: 'interval', ms: 2000, unit: 'ms' }],
    [tasmota, 'cmnd/sim-x-1/POWER', 'TOGGLE', { kind: 'relay', value: 'toggle' }],
    [tasmota, 'cmnd/sim-x-1/power', '1', { kind: 'relay', value: true }],
    [tasmota, 'cmnd/sim-x-1/POWER', '', { kind: 'relay', value: 'query' }],
    [tasmota, 'cmnd/sim-x-1/TelePeriod', '30', { kind: 'interval', ms: 30_000, unit: 's' }],
    [tasmota, 'cmnd/sim-x-1/interval', '250', { kind: 'interval', ms: 250, unit: 'ms' }],
    [esphome, 'sim-x-1/switch/relay/command', 'OFF', { kind: 'relay', value: false }],
    [esphome, 'sim-x-1/switch/relay/command', 'TOGGLE', { kind: 'relay', value: 'toggle' }],
    [esphome, 'sim-x-1/number/interval/command', '750', { kind: 'interval', ms: 750, unit: 'ms' }],
    [homie, 'homie/sim-x-1/power/relay/set', 'true', { kind: 'relay', value: true }],
    [homie, 'homie/sim-x-1/config/interval/set', '2000', { kind: 'interval', ms: 2000, unit: 'ms' }],
  ])('%# %s reads %s %j', (format, topic, payload, command) => {
    expect(format.parseCommand(dev, topic, payload)).toEqual(command)
  })

  it.each([
    [generic, 'devices/sim-x-1/commands', 'not json'],
    [generic, 'devices/sim-x-1/commands', '{"name":"relay","value":7}'],
    [generic, 'devices/sim-x-1/commands', '{"name":"interval","value":1}'],
    [generic, 'devices/sim-x-1/commands', 'null'],
    [generic, 'devices/other/commands', '{"name":"relay","value":1}'],
    [tasmota, 'cmnd/sim-x-1/POWER', 'MAYBE'],
    [tasmota, 'cmnd/sim-x-1/TelePeriod', '0x10'],
    [tasmota, 'cmnd/sim-x-1/Restart', '1'],
    [esphome, 'sim-x-1/switch/relay/command', '1'],
    [esphome, 'sim-x-1/number/interval/command', ''],
    [homie, 'homie/sim-x-1/power/relay/set', 'ON'],
    [homie, 'homie/sim-x-1/config/interval/set', '-5'],
  ])('%# %s ignores %s %j', (format, topic, payload) => {
    expect(format.parseCommand(dev, topic, payload)).toBeNull()
  })
})
