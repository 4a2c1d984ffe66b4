import { spawn } from 'node:child_process'
import net from 'node:net'
import { fileURLToPath } from 'node:url'
import { Aedes } from 'aedes'
import { connect, type MqttClient } from 'mqtt'
import { afterEach, describe, expect, it } from 'vitest'
import { createFleet, type Fleet, type FleetDevice, type FleetOptions } from '../../simulators/fleet.ts'

const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url))

/** Run in reverse order after each test, whatever happened. */
let cleanups: (() => Promise<void> | void)[] = []

afterEach(async () => {
  const pending = cleanups.reverse()
  cleanups = []
  for (const cleanup of pending) await cleanup()
})

async function startBroker(): Promise<string> {
  const broker = await Aedes.createBroker()
  const server = net.createServer(broker.handle)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  cleanups.push(async () => {
    // aedes closes the connections it still has, so server.close() does not wait on them.
    await new Promise<void>((resolve) => broker.close(() => resolve()))
    await new Promise<void>((resolve) => server.close(() => resolve()))
  })
  const { port } = server.address() as net.AddressInfo
  return `mqtt://127.0.0.1:${port}`
}

async function startFleet(url: string, opts: FleetOptions = {}): Promise<Fleet> {
  const fleet = createFleet({ url, devices: 8, format: 'mixed', intervalMs: 100, ...opts })
  cleanups.push(() => fleet.close())
  await fleet.start()
  return fleet
}

interface Received {
  topic: string
  payload: string
  retain: boolean
  at: number
}

/** A real MQTT client that records every message and lets a test wait for one. */
class Recorder {
  readonly messages: Received[] = []
  readonly #waiters = new Set<() => void>()

  private constructor(readonly client: MqttClient) {
    client.on('message', (topic, payload, packet) => {
      this.messages.push({ topic, payload: payload.toString('utf8'), retain: packet.retain, at: Date.now() })
      for (const wake of this.#waiters) wake()
    })
  }

  static async start(url: string, filter = '#'): Promise<Recorder> {
    const client = connect(url, { reconnectPeriod: 0 })
    cleanups.push(() => client.endAsync(true))
    await new Promise<void>((resolve, reject) => {
      client.once('connect', () => resolve())
      client.once('error', reject)
    })
    const recorder = new Recorder(client)
    await client.subscribeAsync(filter, { qos: 1 })
    return recorder
  }

  /** Where the record ends now, to wait only for what arrives after it. */
  mark(): number {
    return this.messages.length
  }

  /** The first message from `since` on that `match`es; fails after `timeoutMs` saying what was expected. */
  waitFor(what: string, match: (m: Received) => boolean, since = 0, timeoutMs = 5_000): Promise<Received> {
    return this.waitForMany(what, match, 1, since, timeoutMs).then((found) => found[0]!)
  }

  waitForMany(
    what: string,
    match: (m: Received) => boolean,
    count: number,
    since = 0,
    timeoutMs = 5_000,
  ): Promise<Received[]> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        const found = this.messages.slice(since).filter(match)
        if (found.length < count) return false
        done()
        resolve(found.slice(0, count))
        return true
      }
      const timer = setTimeout(() => {
        done()
        const seen = [...new Set(this.messages.slice(since).map((m) => m.topic))].slice(-15)
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; recent topics: ${seen.join(', ')}`))
      }, timeoutMs)
      const wake = (): void => void check()
      const done = (): void => {
        clearTimeout(timer)
        this.#waiters.delete(wake)
      }
      this.#waiters.add(wake)
      check()
    })
  }

  async publish(topic: string, payload: string): Promise<void> {
    await this.client.publishAsync(topic, payload, { qos: 1 })
  }
}

/** Waits for a fleet event, failing with what was expected. */
function waitForEvent(fleet: Fleet, event: 'connect' | 'disconnect', deviceId: string, timeoutMs = 5_000): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      fleet.off(event, listener)
      reject(new Error(`timed out after ${timeoutMs} ms waiting for fleet event ${event} of ${deviceId}`))
    }, timeoutMs)
    const listener = (id: string): void => {
      if (id !== deviceId) return
      clearTimeout(timer)
      fleet.off(event, listener)
      resolve()
    }
    fleet.on(event, listener)
  })
}

const is = (topic: string, payload?: string) => (m: Received) =>
  m.topic === topic && (payload === undefined || m.payload === payload)

function json(m: Received): Record<string, unknown> {
  return JSON.parse(m.payload) as Record<string, unknown>
}

/** Where each firmware says online, offline (clean) and lost (will). */
function availability(d: FleetDevice): { topic: string; online: string; offline: string; will: string } {
  switch (d.format) {
    case 'generic':
      return { topic: `devices/${d.id}/status`, online: 'online', offline: 'offline', will: 'offline' }
    case 'tasmota':
      return { topic: `tele/${d.id}/LWT`, online: 'Online', offline: 'Offline', will: 'Offline' }
    case 'esphome':
      return { topic: `${d.id}/status`, online: 'online', offline: 'offline', will: 'offline' }
    case 'homie':
      return { topic: `homie/${d.id}/$state`, online: 'ready', offline: 'disconnected', will: 'lost' }
  }
}

/** A topic the device publishes on every tick. */
function periodicTopic(d: FleetDevice): string {
  const sensor = d.sensors.includes('temperature') ? 'temperature' : 'power'
  switch (d.format) {
    case 'generic':
      return `devices/${d.id}/telemetry`
    case 'tasmota':
      return `tele/${d.id}/STATE`
    case 'esphome':
      return `${d.id}/sensor/${sensor}/state`
    case 'homie':
      return sensor === 'temperature' ? `homie/${d.id}/env/temperature` : `homie/${d.id}/power/power`
  }
}

const NUMBER = /^-?\d+(\.\d+)?$/

describe('simulator fleet', () => {
  it('names devices by prefix, format and number, cycling formats and sensor sets', async () => {
    const url = await startBroker()
    const fleet = createFleet({ url, devices: 8 })
    cleanups.push(() => fleet.close())
    expect(fleet.devices.map((d) => d.id)).toEqual([
      'sim-generic-1',
      'sim-tasmota-2',
      'sim-esphome-3',
      'sim-homie-4',
      'sim-generic-5',
      'sim-tasmota-6',
      'sim-esphome-7',
      'sim-homie-8',
    ])
    // Two devices of one format get different sensor sets.
    expect(fleet.devices[0]!.sensors).not.toEqual(fleet.devices[4]!.sensors)
    expect(() => createFleet({ url, devices: 0 })).toThrow(/devices/)
    expect(() => createFleet({ url, prefix: 'Has Space' })).toThrow(/prefix/)
  })

  it('publishes every device in its firmware format, with online retained', async () => {
    const url = await startBroker()
    const recorder = await Recorder.start(url)
    const fleet = await startFleet(url)
    const checks = fleet.devices.map(async (d) => {
      const id = d.id
      const numbers = d.sensors.filter((s) => s !== 'motion')
      switch (d.format) {
        case 'generic': {
          await recorder.waitFor(`${id} online`, is(`devices/${id}/status`, 'online'))
          const t = json(await recorder.waitFor(`${id} telemetry`, is(`devices/${id}/telemetry`)))
          const states = ['relay', 'motion']
          const { units, ...values } = t
          for (const [key, value] of Object.entries(values)) expect(typeof value, key).toBe(states.includes(key) ? 'boolean' : 'number')
          expect(units).toMatchObject({ temperature: '°C' })
          expect(typeof t.relay).toBe('boolean')
          for (const s of numbers) expect(t).toHaveProperty(s)
          if (d.sensors.includes('power')) expect(t).toHaveProperty('energy')
          break
        }
        case 'tasmota': {
          await recorder.waitFor(`${id} LWT Online`, is(`tele/${id}/LWT`, 'Online'))
          const sensor = json(await recorder.waitFor(`${id} SENSOR`, is(`tele/${id}/SENSOR`)))
          expect(sensor.Time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$/)
          if (d.sensors.includes('power')) {
            expect(sensor.ENERGY).toEqual({
              Power: expect.any(Number),
              Total: expect.any(Number),
              Voltage: expect.any(Number),
              Current: expect.any(Number),
            })
          }
          if (d.sensors.includes('pressure')) {
            expect(sensor.BME280).toEqual({
              Temperature: expect.any(Number),
              Humidity: expect.any(Number),
              Pressure: expect.any(Number),
            })
            expect(sensor).toMatchObject({ TempUnit: 'C', PressureUnit: 'hPa' })
          }
          const state = json(await recorder.waitFor(`${id} STATE`, is(`tele/${id}/STATE`)))
          expect(state).toMatchObject({ POWER: d.relay ? 'ON' : 'OFF', Wifi: { RSSI: expect.any(Number) } })
          expect(state.Uptime).toMatch(/^\d+T\d\d:\d\d:\d\d$/)
          break
        }
        case 'esphome': {
          await recorder.waitFor(`${id} online`, is(`${id}/status`, 'online'))
          await recorder.waitFor(`${id} relay state`, is(`${id}/switch/relay/state`, d.relay ? 'ON' : 'OFF'))
          for (const s of numbers) {
            const m = await recorder.waitFor(`${id} ${s} state`, is(`${id}/sensor/${s}/state`))
            expect(m.payload).toMatch(NUMBER)
          }
          const temperature = d.sensors.includes('temperature')
          const key = temperature ? 'temperature' : 'power'
          const configTopic = `homeassistant/sensor/${id}/${key}/config`
          const config = json(await recorder.waitFor(`${id} ${key} discovery`, is(configTopic)))
          expect(config).toMatchObject({
            name: temperature ? 'Temperature' : 'Power',
            state_topic: `${id}/sensor/${key}/state`,
            unit_of_measurement: temperature ? '°C' : 'W',
            device_class: key,
            availability_topic: `${id}/status`,
            device: { identifiers: [id], name: id },
          })
          const relay = json(await recorder.waitFor(`${id} switch discovery`, is(`homeassistant/switch/${id}/relay/config`)))
          expect(relay).toMatchObject({
            state_topic: `${id}/switch/relay/state`,
            command_topic: `${id}/switch/relay/command`,
            availability_topic: `${id}/status`,
          })
          break
        }
        case 'homie': {
          const base = `homie/${id}`
          await recorder.waitFor(`${id} $homie`, is(`${base}/$homie`, '4.0.0'))
          await recorder.waitFor(`${id} $state ready`, is(`${base}/$state`, 'ready'))
          const nodes = (await recorder.waitFor(`${id} $nodes`, is(`${base}/$nodes`))).payload.split(',')
          expect(nodes).toEqual(expect.arrayContaining(['power', 'config']))
          const properties = await recorder.waitFor(`${id} power/$properties`, is(`${base}/power/$properties`))
          expect(properties.payload.split(',')).toContain('relay')
          await recorder.waitFor(`${id} relay settable`, is(`${base}/power/relay/$settable`, 'true'))
          await recorder.waitFor(`${id} relay datatype`, is(`${base}/power/relay/$datatype`, 'boolean'))
          await recorder.waitFor(`${id} relay value`, is(`${base}/power/relay`, String(d.relay)))
          const value = await recorder.waitFor(`${id} periodic value`, is(periodicTopic(d)))
          expect(value.payload).toMatch(NUMBER)
          break
        }
      }
    })
    await Promise.all(checks)

    // The birth was retained: a client that subscribes now still sees every device online.
    const late = await Recorder.start(url)
    await Promise.all(
      fleet.devices.map(async (d) => {
        const a = availability(d)
        const m = await late.waitFor(`retained ${a.topic} = ${a.online}`, is(a.topic))
        expect(m).toMatchObject({ payload: a.online, retain: true })
      }),
    )
    expect(fleet.status()).toMatchObject({ devices: 8, connected: 8 })
    expect(fleet.status().published).toBeGreaterThan(0)
    expect(fleet.status().messagesPerSecond).toBeGreaterThan(0)
  })

  it('spreads the first publishes of the devices over one interval', async () => {
    const url = await startBroker()
    const recorder = await Recorder.start(url)
    const fleet = await startFleet(url, { format: 'generic', intervalMs: 400 })
    const firsts = await Promise.all(
      fleet.devices.map((d) => recorder.waitFor(`${d.id} telemetry`, is(`devices/${d.id}/telemetry`))),
    )
    const times = firsts.map((m) => m.at)
    // Staggered by 50 ms each: 350 ms between the first and the last, not one burst.
    expect(Math.max(...times) - Math.min(...times)).toBeGreaterThan(200)
  })

  it('sets a will in each format that announces the device offline when its connection drops', async () => {
    const url = await startBroker()
    const recorder = await Recorder.start(url)
    const fleet = await startFleet(url)
    const since = recorder.mark()
    await Promise.all(
      fleet.devices.map(async (d) => {
        const a = availability(d)
        const reconnected = waitForEvent(fleet, 'connect', d.id)
        d.client!.stream.destroy()
        await recorder.waitFor(`${d.id} will: ${a.topic} = ${a.will}`, is(a.topic, a.will), since)
        // mqtt.js reconnects and the device announces itself again.
        await reconnected
        await recorder.waitFor(`${d.id} online again`, is(a.topic, a.online), since)
      }),
    )
  })

  it('relies on wills alone when the simulator process is killed with SIGKILL', async () => {
    const url = await startBroker()
    const recorder = await Recorder.start(url)
    const script = `
      import { createFleet } from './simulators/fleet.ts'
      const fleet = createFleet({ url: ${JSON.stringify(url)}, devices: 4, prefix: 'killed' })
      await fleet.start()
      process.stdout.write('ready\\n')
    `
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let output = ''
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
    cleanups.push(async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
      await exited
    })
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`timed out waiting for the child fleet to print ready; output: ${output}`)),
        15_000,
      )
      const onData = (chunk: Buffer): void => {
        output += chunk.toString()
        if (output.includes('ready')) {
          clearTimeout(timer)
          resolve()
        }
      }
      child.stdout.on('data', onData)
      child.stderr.on('data', onData)
      child.once('exit', (code) => reject(new Error(`child fleet exited with ${code} before ready: ${output}`)))
    })
    const ids = ['killed-generic-1', 'killed-tasmota-2', 'killed-esphome-3', 'killed-homie-4']
    const wills: [string, string][] = [
      [`devices/${ids[0]}/status`, 'offline'],
      [`tele/${ids[1]}/LWT`, 'Offline'],
      [`${ids[2]}/status`, 'offline'],
      [`homie/${ids[3]}/$state`, 'lost'],
    ]
    const since = recorder.mark()
    child.kill('SIGKILL')
    await exited
    await Promise.all(
      wills.map(([topic, payload]) => recorder.waitFor(`will ${topic} = ${payload}`, is(topic, payload), since)),
    )
    // Wills are retained, so a dashboard that connects later also sees the devices offline.
    const late = await Recorder.start(url)
    await Promise.all(
      wills.map(async ([topic, payload]) => {
        const m = await late.waitFor(`retained ${topic} = ${payload}`, is(topic))
        expect(m).toMatchObject({ payload, retain: true })
      }),
    )
  })

  it('flips the relay on a command in each format and publishes the new state', async () => {
    const url = await startBroker()
    const recorder = await Recorder.start(url)
    const fleet = await startFleet(url)
    await Promise.all(
      fleet.devices.map(async (d) => {
        const id = d.id
        for (const target of [!d.relay, d.relay]) {
          const since = recorder.mark()
          const on = target ? 'ON' : 'OFF'
          switch (d.format) {
            case 'generic': {
              await recorder.publish(`devices/${id}/commands`, JSON.stringify({ name: 'relay', value: target ? 1 : 'OFF' }))
              const withRelay = (m: Received) => m.topic === `devices/${id}/telemetry` && json(m).relay === target
              const m = await recorder.waitFor(`${id} telemetry with relay ${on}`, withRelay, since)
              // A metering plug draws nothing with its relay off.
              if (d.sensors.includes('power') && !target) expect(json(m).power).toBe(0)
              break
            }
            case 'tasmota':
              await recorder.publish(`cmnd/${id}/POWER`, target ? 'ON' : '0')
              await recorder.waitFor(`${id} stat/POWER ${on}`, is(`stat/${id}/POWER`, on), since)
              await recorder.waitFor(`${id} stat/RESULT`, is(`stat/${id}/RESULT`, JSON.stringify({ POWER: on })), since)
              break
            case 'esphome':
              await recorder.publish(`${id}/switch/relay/command`, target ? 'ON' : 'TOGGLE')
              await recorder.waitFor(`${id} relay state ${on}`, is(`${id}/switch/relay/state`, on), since)
              break
            case 'homie':
              await recorder.publish(`homie/${id}/power/relay/set`, String(target))
              await recorder.waitFor(`${id} relay ${target}`, is(`homie/${id}/power/relay`, String(target)), since)
              break
          }
          expect(d.relay).toBe(target)
        }
      }),
    )
  })

  it('changes the publish rate on an interval command in each format', async () => {
    const url = await startBroker()
    const recorder = await Recorder.start(url)
    const fleet = await startFleet(url)
    await Promise.all(
      fleet.devices.map(async (d, index) => {
        const id = d.id
        const topic = periodicTopic(d)
        await recorder.waitForMany(`${id} three ${topic} at 100 ms`, is(topic), 3)
        let targetMs = 400
        const since = recorder.mark()
        switch (d.format) {
          case 'generic':
            await recorder.publish(`devices/${id}/commands`, JSON.stringify({ name: 'interval', value: 400 }))
            break
          case 'tasmota':
            // One tasmota device takes TelePeriod in seconds, the other `interval` in ms.
            if (index === 1) {
              targetMs = 1000
              await recorder.publish(`cmnd/${id}/TelePeriod`, '1')
              await recorder.waitFor(`${id} RESULT TelePeriod`, is(`stat/${id}/RESULT`, '{"TelePeriod":1}'), since)
            } else {
              await recorder.publish(`cmnd/${id}/interval`, '400')
              await recorder.waitFor(`${id} RESULT interval`, is(`stat/${id}/RESULT`, '{"interval":400}'), since)
            }
            break
          case 'esphome':
            await recorder.publish(`${id}/number/interval/command`, '400')
            await recorder.waitFor(`${id} interval state`, is(`${id}/number/interval/state`, '400'), since)
            break
          case 'homie':
            await recorder.publish(`homie/${id}/config/interval/set`, '400')
            await recorder.waitFor(`${id} interval value`, is(`homie/${id}/config/interval`, '400'), since)
            break
        }
        // the device took the new interval and keeps publishing; gaps timed at a receiver on a busy
        // two-core machine are not a reliable measure of its pacing, so none are asserted
        await recorder.waitForMany(`${id} three ${topic} after the change`, is(topic), 3, recorder.mark(), 4 * targetMs + 5_000)
        expect(d.intervalMs).toBe(targetMs)
      }),
    )
  })

  it('publishes offline for every device on close() and disconnects', async () => {
    const url = await startBroker()
    const recorder = await Recorder.start(url)
    const fleet = await startFleet(url)
    const since = recorder.mark()
    await fleet.close()
    await Promise.all(
      fleet.devices.map((d) => {
        const a = availability(d)
        return recorder.waitFor(`${d.id} ${a.topic} = ${a.offline}`, is(a.topic, a.offline), since)
      }),
    )
    expect(fleet.status().connected).toBe(0)
    for (const d of fleet.devices) expect(d.client?.connected).toBe(false)
    const late = await Recorder.start(url)
    await Promise.all(
      fleet.devices.map(async (d) => {
        const a = availability(d)
        const m = await late.waitFor(`retained ${a.topic} = ${a.offline}`, is(a.topic))
        expect(m).toMatchObject({ payload: a.offline, retain: true })
      }),
    )
    // close() is idempotent.
    await fleet.close()
  })

  it('rejects start() with one line naming the URL when the broker is unreachable', async () => {
    // A port that was free a moment ago: connections are refused.
    const probe = net.createServer()
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve))
    const { port } = probe.address() as net.AddressInfo
    await new Promise<void>((resolve) => probe.close(() => resolve()))
    const refusedUrl = `mqtt://127.0.0.1:${port}`
    const refused = createFleet({ url: refusedUrl, devices: 3 })
    cleanups.push(() => refused.close())
    const error = await refused.start().then(
      () => new Error('start() resolved'),
      (e: unknown) => e as Error,
    )
    expect(error.message).toMatch(new RegExp(`^cannot connect to ${refusedUrl.replace(/[.]/g, '\\.')}: .*ECONNREFUSED`))
    expect(error.message).not.toContain('\n')

    // A server that accepts TCP but never answers CONNECT: the deadline fires.
    const silent = net.createServer((socket) => cleanups.push(() => void socket.destroy()))
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve))
    cleanups.push(() => new Promise<void>((resolve) => silent.close(() => resolve())))
    const silentUrl = `mqtt://127.0.0.1:${(silent.address() as net.AddressInfo).port}`
    const stuck = createFleet({ url: silentUrl, devices: 2, connectTimeoutMs: 300 })
    cleanups.push(() => stuck.close())
    await expect(stuck.start()).rejects.toThrow(
      `cannot connect to ${silentUrl}: no connection within 300 ms (0/2 devices connected)`,
    )
  })

  it('with several URLs, starts on the first that answers and moves to the next when its broker goes', async () => {
    const brokers = await Promise.all([0, 1].map(async () => {
      const broker = await Aedes.createBroker()
      const server = net.createServer(broker.handle)
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
      const close = async () => {
        await new Promise<void>((resolve) => broker.close(() => resolve()))
        await new Promise<void>((resolve) => server.close(() => resolve()))
      }
      cleanups.push(() => (server.listening ? close() : undefined))
      // the client ids connected to it now
      const clients = new Set<string>()
      broker.on('client', (client) => clients.add(client.id))
      broker.on('clientDisconnect', (client) => clients.delete(client.id))
      return { broker, close, clients, url: `mqtt://127.0.0.1:${(server.address() as net.AddressInfo).port}` }
    }))
    const [a, b] = brokers as [(typeof brokers)[number], (typeof brokers)[number]]
    const refusedUrl = await freeUrl()

    // the first refuses: each device goes on to the next, and start() resolves
    const first = createFleet({ url: [refusedUrl, b.url], devices: 2, prefix: 'skip' })
    cleanups.push(() => first.close())
    expect(first.url).toBe(`${refusedUrl},${b.url}`)
    await first.start()
    expect([...b.clients].sort()).toEqual(['skip-generic-1', 'skip-tasmota-2'])
    await first.close()

    // on a until it closes, then on b: each device reconnects to the next URL (1 s later)
    const fleet = createFleet({ url: [a.url, b.url], devices: 3, prefix: 'move' })
    cleanups.push(() => fleet.close())
    await fleet.start()
    const ids = fleet.devices.map((d) => d.id).sort()
    expect([...a.clients].sort()).toEqual(ids)
    const reconnected = new Set<string>()
    const allBack = new Promise<void>((resolve) =>
      fleet.on('connect', (id) => {
        reconnected.add(id)
        if (reconnected.size === ids.length) resolve()
      }),
    )
    await a.close()
    await timeLimit(5000, 'every device to reconnect to the second broker', allBack)
    expect([...b.clients].sort()).toEqual(ids)
    expect(fleet.status().connected).toBe(3)

    // when every URL refuses, start() rejects once each has been tried, naming them all
    const none = createFleet({ url: [refusedUrl, a.url], devices: 1 })
    cleanups.push(() => none.close())
    const error = await none.start().then(() => new Error('start() resolved'), (e: unknown) => e as Error)
    const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
    const refusedAt = (url: string) => escape(`ECONNREFUSED 127.0.0.1:${new URL(url).port}`)
    expect(error.message).toMatch(new RegExp(`^${escape(`cannot connect to ${refusedUrl},${a.url}: `)}.*${refusedAt(refusedUrl)}; .*${refusedAt(a.url)}`))
    expect(error.message).not.toContain('\n')
  })
})

/** A URL of a port that was free a moment ago: connections to it are refused. */
async function freeUrl(): Promise<string> {
  const probe = net.createServer()
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve))
  const { port } = probe.address() as net.AddressInfo
  await new Promise<void>((resolve) => probe.close(() => resolve()))
  return `mqtt://127.0.0.1:${port}`
}

/** `promise`, or an error saying what was expected after `ms`. */
async function timeLimit<T>(ms: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms)
  })
  return Promise.race([promise, late]).finally(() => clearTimeout(timer))
}
