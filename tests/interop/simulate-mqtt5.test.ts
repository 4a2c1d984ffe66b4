import mqtt, { type IPublishPacket, type MqttClient } from 'mqtt'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { startMosquitto, type Mosquitto } from '../helpers/mosquitto.ts'
import { killAll, pulseboard, type Child } from '../helpers/process.ts'
import { collect, startStack, within, type Stack } from '../helpers/stack.ts'
import type { DeviceState, Envelope } from '../../protocol/index.ts'

// `pulseboard simulate --mqtt 5` against Debian's mosquitto 2.0, watched by a real mqtt.js MQTT 5 client.
let broker: Mosquitto
const clients: MqttClient[] = []
let stack: Stack | null = null
beforeEach(async () => {
  broker = await startMosquitto()
})
afterEach(async () => {
  await killAll()
  await Promise.all(clients.splice(0).map((c) => c.endAsync(true)))
  await stack?.close()
  stack = null
  await broker.close()
})

interface Seen {
  topic: string
  payload: string
  properties: IPublishPacket['properties']
}

/** An MQTT 5 client subscribed to `filters`, and every message it receives with its properties. */
async function watcher(filters: string[], protocolVersion: 4 | 5 = 5) {
  const client = await mqtt.connectAsync(broker.url, { protocolVersion, reconnectPeriod: 0, connectTimeout: 5000 })
  clients.push(client)
  const seen = collect<Seen>((push) =>
    client.on('message', (topic, payload, packet) => push({ topic, payload: payload.toString('utf8'), properties: packet.properties })),
  )
  await client.subscribeAsync(filters, { qos: 1 })
  return { client, seen }
}

/** The simulator as a user runs it, once every device has connected. */
async function simulate(args: string[]): Promise<Child> {
  const child = pulseboard(['simulate', '--url', broker.url, '--devices', '4', '--format', 'mixed', '--interval', '200ms', ...args])
  await child.stderr.until('every simulated device connected', (l) => l.some((line) => line.startsWith('All connected.')), 15_000)
  return child
}

/** mosquitto's protocol level of a client, from its log: p2 is 3.1.1, p5 is MQTT 5. */
function protocolOf(clientId: string): string | undefined {
  return new RegExp(`New client connected from \\S+ as ${clientId} \\((p\\d+),`).exec(broker.log())?.[1]
}

describe('pulseboard simulate --mqtt 5 on mosquitto', () => {
  it('connects as MQTT 5 and publishes its telemetry with a content type and its model', async () => {
    const { seen } = await watcher(['devices/sim-generic-1/#', 'tele/sim-tasmota-2/#', 'sim-esphome-3/sensor/#'])
    const sim = await simulate(['--mqtt', '5'])
    await seen.until('generic, Tasmota and ESPHome telemetry', (v) =>
      ['devices/sim-generic-1/telemetry', 'tele/sim-tasmota-2/SENSOR', 'sim-esphome-3/sensor/temperature/state'].every((t) => v.some((m) => m.topic === t)),
    )
    const first = (topic: string) => seen.values.find((m) => m.topic === topic)!
    expect(first('devices/sim-generic-1/telemetry').properties).toEqual({
      payloadFormatIndicator: true,
      contentType: 'application/json',
      userProperties: { model: 'weather-station', firmware: 'generic' },
    })
    expect(first('tele/sim-tasmota-2/SENSOR').properties).toMatchObject({
      contentType: 'application/json',
      userProperties: { model: 'smart-plug', firmware: 'tasmota' },
    })
    // a bare number is text, not a JSON document
    expect(first('sim-esphome-3/sensor/temperature/state').properties).toMatchObject({ contentType: 'text/plain', userProperties: { model: 'pir-sensor', firmware: 'esphome' } })
    for (const id of ['sim-generic-1', 'sim-tasmota-2', 'sim-esphome-3', 'sim-homie-4']) expect(protocolOf(id), id).toBe('p5')
    expect(await sim.kill()).toBe(0)
  })

  it('answers a request on the response topic with its correlation data, and applies it as before', async () => {
    const { client, seen } = await watcher(['replies/#', 'devices/sim-generic-1/telemetry', 'stat/sim-tasmota-2/#'])
    await simulate(['--mqtt', '5'])
    await seen.until('generic telemetry', (v) => v.some((m) => m.topic === 'devices/sim-generic-1/telemetry'))
    const relayBefore = (JSON.parse(seen.values.findLast((m) => m.topic === 'devices/sim-generic-1/telemetry')!.payload) as { relay: boolean }).relay

    const request = (topic: string, payload: string, correlation: string) =>
      client.publishAsync(topic, payload, { qos: 1, properties: { responseTopic: 'replies/test', correlationData: Buffer.from(correlation) } })
    const answer = (correlation: string, ms = 5000) =>
      seen
        .until(`an answer with correlation data ${correlation}`, (v) => v.some((m) => m.topic === 'replies/test' && m.properties?.correlationData?.equals(Buffer.from(correlation))), ms)
        .then((v) => v.find((m) => m.topic === 'replies/test' && m.properties?.correlationData?.equals(Buffer.from(correlation)))!)

    await request('devices/sim-generic-1/commands', JSON.stringify({ name: 'relay', value: !relayBefore }), 'req-generic')
    const generic = await answer('req-generic')
    expect(JSON.parse(generic.payload)).toEqual({ ok: true, name: 'relay', value: !relayBefore })
    expect(generic.properties).toMatchObject({ contentType: 'application/json', userProperties: { model: 'weather-station', firmware: 'generic' } })
    // applied as today: the generic firmware reports the relay in its telemetry at once
    await seen.until('telemetry with the new relay state', (v) =>
      v.some((m) => m.topic === 'devices/sim-generic-1/telemetry' && (JSON.parse(m.payload) as { relay: boolean }).relay === !relayBefore),
    )

    await request('cmnd/sim-tasmota-2/TelePeriod', '7', 'req-tasmota')
    expect(JSON.parse((await answer('req-tasmota')).payload)).toEqual({ ok: true, name: 'interval', value: 7000 })
    await seen.until('Tasmota RESULT', (v) => v.some((m) => m.topic === 'stat/sim-tasmota-2/RESULT' && m.payload === '{"TelePeriod":7}'))

    await request('devices/sim-generic-1/commands', JSON.stringify({ name: 'selfdestruct', value: 1 }), 'req-unknown')
    const unknown = JSON.parse((await answer('req-unknown')).payload) as { ok: boolean; error: unknown }
    expect(unknown).toMatchObject({ ok: false })
    expect(unknown.error).toMatch(/^unknown command on devices\/sim-generic-1\/commands/)

    // without a response topic: applied and reported as under 3.1.1, and nothing on replies/
    const before = seen.values.filter((m) => m.topic === 'replies/test').length
    await client.publishAsync('cmnd/sim-tasmota-2/POWER', 'ON', { qos: 1 })
    await seen.until('Tasmota POWER ON', (v) => v.some((m) => m.topic === 'stat/sim-tasmota-2/POWER' && m.payload === 'ON'))
    // the device answers in order: a request sent after it is answered, and it is the next answer
    await request('cmnd/sim-tasmota-2/POWER', '', 'req-query')
    expect(JSON.parse((await answer('req-query')).payload)).toEqual({ ok: true, name: 'relay', value: true })
    expect(seen.values.filter((m) => m.topic === 'replies/test').length).toBe(before + 1)
  })
})

describe('pulseboard simulate under MQTT 3.1.1 on mosquitto', () => {
  it('connects as 3.1.1 and its messages carry no properties', async () => {
    const { client, seen } = await watcher(['devices/sim-generic-1/#', 'tele/sim-tasmota-2/#', 'stat/sim-tasmota-2/#', 'replies/#'])
    await simulate([])
    await seen.until('generic and Tasmota telemetry', (v) =>
      ['devices/sim-generic-1/telemetry', 'tele/sim-tasmota-2/SENSOR'].every((t) => v.some((m) => m.topic === t)),
    )
    for (const m of seen.values) expect(m.properties ?? {}, m.topic).toEqual({})
    for (const id of ['sim-generic-1', 'sim-tasmota-2', 'sim-esphome-3', 'sim-homie-4']) expect(protocolOf(id), id).toBe('p2')
    // a 3.1.1 device cannot see a response topic; it applies the command and answers nothing
    await client.publishAsync('cmnd/sim-tasmota-2/POWER', 'ON', { qos: 1, properties: { responseTopic: 'replies/test', correlationData: Buffer.from('x') } })
    await seen.until('Tasmota POWER ON', (v) => v.some((m) => m.topic === 'stat/sim-tasmota-2/POWER' && m.payload === 'ON'))
    expect(seen.values.filter((m) => m.topic === 'replies/test')).toEqual([])
  })
})

describe('the MQTT 5 CLIs through Pulseboard on mosquitto (pulseboard start --broker)', () => {
  /** Pulseboard on this test's mosquitto, once mosquitto has acknowledged its subscriptions. */
  async function external(): Promise<Stack> {
    stack = await startStack({ externalBroker: { url: broker.url } })
    const subscribed = () => broker.log().includes('Sending SUBACK to pulseboard-')
    await within(5000, "mosquitto to acknowledge Pulseboard's subscriptions", new Promise<void>((resolve) => {
      const poll = () => (subscribed() ? resolve() : void setTimeout(poll, 20))
      poll()
    }))
    return stack
  }

  it('receive --json prints the properties of simulated devices; send --property reaches an MQTT 5 subscriber; a command comes back with the answer', async () => {
    const s = await external()
    const connected = new Promise((resolve) => s.app.bridge.live.once('connection', resolve))
    const receiver = pulseboard(['receive', '--json', '--url', s.httpUrl, '--topic', 'devices/+/telemetry'])
    await within(10_000, 'pulseboard receive to connect', connected)
    await simulate(['--mqtt', '5'])

    const lines = await receiver.stdout.until('a telemetry line with properties', (l) => l.some((line) => (JSON.parse(line) as Envelope).properties !== undefined), 10_000)
    const telemetry = lines.map((line) => JSON.parse(line) as Envelope).find((e) => e.properties !== undefined)!
    expect(telemetry).toMatchObject({
      topic: 'devices/sim-generic-1/telemetry',
      source: 'mqtt',
      properties: { contentType: 'application/json', payloadFormatIndicator: true, userProperties: { model: 'weather-station', firmware: 'generic' } },
    })

    const { seen } = await watcher(['cli/#'])
    const send = pulseboard([
      'send', '--url', s.httpUrl, '--topic', 'cli/x', '--qos', '1',
      '--property', 'a=1', '--property', 'a=2', '--content-type', 'text/plain',
      '--response-topic', 'replies/cli', '--correlation-data', 'req-9', '--expiry', '60', 'hi',
    ])
    // generous: on a loaded machine starting a CLI through tsx alone takes seconds
    expect(await within(30_000, 'pulseboard send to exit', send.exited), send.stderr.values.join('\n')).toBe(0)
    const [sent] = await seen.until('the message sent with properties', (v) => v.length > 0)
    expect(sent).toMatchObject({ topic: 'cli/x', payload: 'hi' })
    expect(sent!.properties).toMatchObject({ userProperties: { a: ['1', '2'] }, contentType: 'text/plain', responseTopic: 'replies/cli' })
    expect(sent!.properties?.correlationData).toEqual(Buffer.from('req-9'))
    expect(sent!.properties?.messageExpiryInterval).toBeGreaterThan(50)
    expect(sent!.properties?.messageExpiryInterval).toBeLessThanOrEqual(60)

    // the registry knows an MQTT 5 device by its properties; a command to it goes as a request
    let states!: ReturnType<typeof collect<DeviceState>>
    const live = await s.live({
      setup: (socket) => {
        states = collect<DeviceState>((push) => {
          socket.on('devices', (all) => all.forEach(push))
          socket.on('device', (changed) => changed.forEach(push))
        })
      },
    })
    const [device] = await states.until('sim-generic-1 known as MQTT 5 with a relay command', (v) =>
      v.some((d) => d.id === 'sim-generic-1' && d.mqtt5 === true && d.commands.some((c) => /relay/i.test(c))),
    ).then((v) => v.filter((d) => d.id === 'sim-generic-1' && d.mqtt5 === true))
    const relay = device!.commands.find((c) => /relay/i.test(c))!
    const ack = await within(10_000, 'the command acknowledgement', live.emitWithAck('command', { device: 'sim-generic-1', name: relay, value: true }))
    expect(ack).toMatchObject({ ok: true, topic: 'devices/sim-generic-1/commands' })
    const reply = 'reply' in ack ? ack.reply : undefined
    expect(reply?.properties?.contentType).toBe('application/json')
    expect(JSON.parse(reply?.payload ?? 'null')).toEqual({ ok: true, name: 'relay', value: true })
  }, 60_000) // three CLI processes, each started through tsx
})
