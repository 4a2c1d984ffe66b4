import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import type { DeviceState, Reading } from '../../protocol/index.ts'
import { collect, startStack, within, type Stack } from '../helpers/stack.ts'
import { killAll, pulseboard } from '../helpers/process.ts'

let stack: Stack
beforeEach(async () => {
  stack = await startStack()
})
afterEach(async () => {
  await killAll()
  await stack.close()
})

/** A `/live` client that keeps the latest state of every device. */
async function watchDevices() {
  const latest = new Map<string, DeviceState>()
  let updates!: ReturnType<typeof collect<DeviceState[]>>
  let readings!: ReturnType<typeof collect<Reading>>
  const live = await stack.live({
    setup(socket) {
      updates = collect<DeviceState[]>((push) => {
        const apply = (devices: DeviceState[]) => (devices.forEach((d) => latest.set(d.id, d)), push(devices))
        socket.on('devices', apply)
        socket.on('device', apply)
      })
      readings = collect<Reading>((push) => socket.on('readings', (batch) => batch.forEach(push)))
    },
  })
  const all = () => [...latest.values()]
  return { live, latest, all, readings, until: (what: string, ok: () => boolean, ms = 15_000) => updates.until(what, ok, ms) }
}

describe('pulseboard simulate against a running stack', () => {
  it('shows 20 mixed devices online with metrics and units; a relay command comes back as a reading; kill -9 turns them offline', async () => {
    const view = await watchDevices()
    const sim = pulseboard(['simulate', '--devices', '20', '--format', 'mixed', '--interval', '500ms', '--keepalive', '2', '--url', stack.mqttUrl])
    const hasUnits = (d: DeviceState) => Object.values(d.metrics).some((m) => m.unit)
    // a device says online at connect, then publishes its first readings within one interval
    await view.until('20 online devices with readings', () => view.all().filter((d) => d.online && hasUnits(d)).length === 20)

    const res = await fetch(`${stack.httpUrl}/api/devices`)
    const devices = (await res.json()) as DeviceState[]
    expect(devices).toHaveLength(20)
    // an ESPHome node is read from its state topics (esphome) or, once its discovery configs
    // arrived first, as Home Assistant entities (homeassistant): both are right
    const expected: Record<string, string[]> = { generic: ['generic'], tasmota: ['tasmota'], esphome: ['esphome', 'homeassistant'], homie: ['homie'] }
    for (const d of devices) {
      expect(expected[d.id.split('-')[1]!], d.id).toContain(d.format)
      expect(d.online, d.id).toBe(true)
      expect(hasUnits(d), `${d.id} has metrics with units`).toBe(true)
    }

    // each format's relay, switched from a /live client, reports its new state as a reading
    for (const id of ['sim-generic-1', 'sim-tasmota-2', 'sim-esphome-3', 'sim-homie-4']) {
      const device = view.latest.get(id)!
      const relay = device.commands.find((c) => /relay|power/i.test(c))!
      const before = device.metrics[relay]!.value
      const ack = await view.live.emitWithAck('command', { device: id, name: relay, value: before === 1 ? 0 : 1 })
      expect(ack, `${id} ${relay}`).toMatchObject({ ok: true })
      await view.readings.until(`${id} ${relay} to switch to ${1 - before}`, (r) =>
        r.some((x) => x.device === id && x.metric === relay && x.value === 1 - before),
      )
    }

    sim.process.kill('SIGKILL')
    // keepalive 2 s: the broker gives up after 1.5x, then publishes the wills
    await view.until('all 20 offline after kill -9', () => view.all().every((d) => !d.online), 3000 + 2000)
  })

  it('disconnects cleanly on Ctrl-C, and every device shows offline at once', async () => {
    const view = await watchDevices()
    const sim = pulseboard(['simulate', '--devices', '4', '--url', stack.mqttUrl])
    await view.until('4 online devices', () => view.all().filter((d) => d.online).length === 4)
    sim.process.kill('SIGINT')
    expect(await sim.exited).toBe(0)
    await view.until('all offline', () => view.all().every((d) => !d.online), 2000)
    expect(sim.stderr.values.at(-1)).toMatch(/^Stopped\. 0\/4 devices connected/)
  })

  it('takes several brokers in one --url, and goes on to the next when one refuses', async () => {
    const view = await watchDevices()
    const sim = pulseboard(['simulate', '--devices', '2', '--url', `mqtt://127.0.0.1:1,${stack.mqttUrl}`])
    await view.until('2 online devices', () => view.all().filter((d) => d.online).length === 2)
    expect(sim.stderr.values[0]).toBe(`Connecting 2 mixed devices to mqtt://127.0.0.1:1 (failing over to ${stack.mqttUrl}) ...`)
    // repeated, it says how to give several, and does nothing
    const twice = pulseboard(['simulate', '--url', 'mqtt://127.0.0.1:1', '--url', stack.mqttUrl])
    expect(await within(15_000, 'simulate to refuse', twice.exited)).toBe(2)
    expect(twice.stderr.values.join('\n')).toContain('--url is given once; several brokers go in it separated by commas')
  })

  it('says in one line when the broker cannot be reached', async () => {
    const sim = pulseboard(['simulate', '--devices', '2', '--url', 'mqtt://127.0.0.1:1'])
    expect(await within(15_000, 'simulate to give up', sim.exited)).toBe(1)
    expect(sim.stderr.values.at(-1)).toMatch(/^pulseboard simulate: cannot connect to mqtt:\/\/127\.0\.0\.1:1: .*ECONNREFUSED.*; is "pulseboard start" running\?/)
  })
})
