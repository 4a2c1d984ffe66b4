// A device that sleeps between reports (a deep-sleep ESP32): it connects, publishes and
// disconnects on a schedule. devices/presence.ts shows it asleep, with when its next report is
// due, until it misses about 3× its interval; then offline. Its rules need no minimum interval:
// two short sessions (connect, report, go, within 30 s each) make a sleeper, and the interval is
// the measured gap between reports, so a 1.2 s schedule shows all of it within seconds.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import mqtt from 'mqtt'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import type { DeviceState } from '../../protocol/index.ts'
import { startStack, within, type Stack } from '../helpers/stack.ts'

let stack: Stack
let dataDir: string
const device = (id: string) => fetch(`${stack.httpUrl}/api/devices/${id}`).then((res) => res.json() as Promise<DeviceState>)
beforeEach(async () => {
  dataDir = mkdtempSync(path.join(tmpdir(), 'pulseboard-store-presence-'))
  stack = await startStack({ dataDir })
})
afterEach(async () => {
  await stack.close()
  rmSync(dataDir, { recursive: true, force: true })
})

const INTERVAL_MS = 1200
/** A device reads its sensor after it connects: this long between CONNACK and its PUBLISH. */
const AWAKE_MS = 300
const REPORTS = 4

/** One wake-up: connect, read the sensor, publish, disconnect. Resolves when it is gone. */
async function report(url: string, n: number): Promise<void> {
  const client = mqtt.connect(url, { clientId: 'sleeper-esp32', reconnectPeriod: 0, connectTimeout: 5000 })
  await within(5000, 'the sleeper to connect', new Promise((resolve, reject) => {
    client.once('connect', resolve)
    client.once('error', reject)
  }))
  await new Promise((resolve) => setTimeout(resolve, AWAKE_MS))
  await client.publishAsync('devices/sleeper/telemetry', JSON.stringify({ battery: 4.2 - n / 100 }), { qos: 1 })
  await client.endAsync()
}

interface Sample {
  at: number
  state: DeviceState | null
}

describe('a sleeping device', () => {
  it('is asleep with nextReport between its reports, never online and asleep at once, and offline after it misses about 3 intervals', async () => {
    const samples: Sample[] = []
    let sampling = true
    const sampler = (async () => {
      while (sampling) {
        const res = await fetch(`${stack.httpUrl}/api/devices`)
        const list = (await res.json()) as DeviceState[]
        if (!Array.isArray(list)) throw new Error(`GET /api/devices answered ${res.status} ${JSON.stringify(list)}`)
        samples.push({ at: Date.now(), state: list.find((d) => d.id === 'sleeper') ?? null })
        await new Promise((resolve) => setTimeout(resolve, 40))
      }
    })()
    // the device's own schedule: it wakes every INTERVAL_MS
    const reportedAt: number[] = []
    for (let n = 0; n < REPORTS; n++) {
      const wake = Date.now()
      await report(stack.mqttUrl, n)
      reportedAt.push(Date.now())
      if (n < REPORTS - 1) await new Promise((resolve) => setTimeout(resolve, Math.max(0, wake + INTERVAL_MS - Date.now())))
    }
    const stoppedAt = Date.now()
    // the gaps between reports as the server saw them: what its interval is measured from
    const seenAt = async () => ((await (await fetch(`${stack.httpUrl}/api/devices/sleeper`)).json()) as DeviceState).lastSeen!
    const lastSeen = await seenAt()
    const gaps = (ts: number[]) => ts.slice(1).map((t, i) => t - ts[i]!)
    // then it stops reporting: offline once it missed about 3 × its interval
    const offline = await within(3 * INTERVAL_MS + 8000, 'the sleeper to be shown offline', (async () => {
      for (;;) {
        const last = samples.at(-1)
        if (last && last.at > stoppedAt && last.state && !last.state.asleep && !last.state.online) return last
        await new Promise((resolve) => setTimeout(resolve, 20))
      }
    })())
    sampling = false
    await sampler

    const seen = samples.filter((s): s is { at: number; state: DeviceState } => s.state !== null)
    const reports = [...new Set(seen.map((s) => s.state.lastSeen!))].sort((a, b) => a - b)
    expect(reports, 'each report seen by the server').toHaveLength(REPORTS)
    expect(reports.at(-1)).toBe(lastSeen)
    const [minGap, maxGap] = [Math.min(...gaps(reports)), Math.max(...gaps(reports))]
    const asleep = seen.filter((s) => s.state.asleep)
    // asleep between the second and the last report, each time with when the next is due
    expect(asleep.length, 'samples that showed it asleep').toBeGreaterThan(5)
    expect(asleep.every((s) => s.state.lastSeen! >= reports[1]!), 'asleep only once two reports made it a sleeper').toBe(true)
    for (const { state } of asleep) {
      expect(state, 'an asleep device is not online').toMatchObject({ online: false, stale: false })
      expect(state.nextReport, 'nextReport while asleep').toBeTypeOf('number')
      // due one interval, as measured between its reports, after the last
      expect(state.nextReport! - state.lastSeen!).toBeGreaterThanOrEqual(minGap - 1)
      expect(state.nextReport! - state.lastSeen!).toBeLessThanOrEqual(maxGap + 1)
    }
    for (const r of [1, 2]) {
      expect(asleep.some((s) => s.state.lastSeen === reports[r]), `asleep after report ${r + 1}`).toBe(true)
    }
    // awake and connected, before it publishes: online, so not asleep
    const both = seen.filter((s) => s.state.online && s.state.asleep)
    expect(both, 'samples that showed it online and asleep at once').toEqual([])
    expect(seen.some((s) => s.state.online && s.at > reportedAt[2]! && s.at < reportedAt[3]!), 'online while awake').toBe(true)

    // offline after about 3 × the interval without a report (the check runs once a second)
    const silentFor = offline.at - lastSeen
    expect(silentFor).toBeGreaterThan(3 * minGap)
    expect(silentFor).toBeLessThan(3 * maxGap + 2500)
    expect(offline.state).not.toHaveProperty('nextReport')
    expect(samples.filter((s) => s.at > stoppedAt && s.at < lastSeen + 3 * minGap).every((s) => s.state?.asleep), 'asleep until then').toBe(true)
  }, 25_000)

  it('is still asleep, due at the same time, after a restart, and sleeps again after its next report', async () => {
    for (let n = 0; n < 3; n++) {
      const wake = Date.now()
      await report(stack.mqttUrl, n)
      if (n < 2) await new Promise((resolve) => setTimeout(resolve, Math.max(0, wake + INTERVAL_MS - Date.now())))
    }
    const before = await within(2000, 'the sleeper to be shown asleep', (async () => {
      for (;;) {
        const d = await device('sleeper')
        if (d.asleep) return d
        await new Promise((resolve) => setTimeout(resolve, 20))
      }
    })())
    await stack.close()
    stack = await startStack({ dataDir })
    const after = await device('sleeper')
    expect(after).toMatchObject({ asleep: true, online: false, nextReport: before.nextReport, lastSeen: before.lastSeen })
    await report(stack.mqttUrl, 3)
    const again = await within(2000, 'the sleeper asleep again after its report', (async () => {
      for (;;) {
        const d = await device('sleeper')
        if (d.asleep && d.lastSeen! > before.lastSeen!) return d
        await new Promise((resolve) => setTimeout(resolve, 20))
      }
    })())
    expect(again.nextReport).toBeGreaterThan(again.lastSeen!)
  }, 20_000)
})
