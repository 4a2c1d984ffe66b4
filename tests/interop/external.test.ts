import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { io as connectSocket } from 'socket.io-client'
import { afterEach, describe, expect, it, onTestFinished } from 'vitest'
import { LIVE_NAMESPACE } from '../../protocol/index.ts'
import { cleanUp, client, external, healthBroker, mosquitto, onCleanUp, received, stack, subscribed, watch } from '../helpers/external.ts'
import { pulseboard, run, type Child } from '../helpers/process.ts'
import { envelopes, within, type LiveClient, type Stack } from '../helpers/stack.ts'

// External mode (`--broker`) on Debian's mosquitto 2.0, one broker per test: MQTT 5 properties
// reaching /live, the tutorial's clients and the CLI, a dashboard command, and the 3.1.1
// fallback on another Pulseboard's embedded broker. Outages, refusals, TLS and MQTT 5 requests:
// external-connection.test.ts.

const PYTHON = '/usr/bin/python3' // Debian's, which sees python3-socketio
const seed = (script: string) => fileURLToPath(new URL(`./seed/${script}`, import.meta.url))

afterEach(cleanUp)

/** The seed's scripts against `s`, started together, once each has connected to `/`. */
async function startSeeds(s: Stack, scripts: ('sender.py' | 'receiver.py')[]): Promise<Child[]> {
  let connections = 0
  const connected = new Promise((resolve) => s.app.bridge.chat.on('connection', () => ++connections === scripts.length && resolve(undefined)))
  const children = scripts.map((script) => run(PYTHON, ['-u', seed('with_url.py'), s.httpUrl, seed(script)]))
  const failed = children.map((child, i) =>
    child.exited.then((code) => {
      throw new Error(`${scripts[i]} exited with ${code} before connecting: ${child.stderr.values.join('\n')}`)
    }),
  )
  await within(15_000, `the seed's ${scripts.join(' and ')} to connect`, Promise.race([connected, ...failed]))
  return children
}

/** MQTT 5 properties of every kind a device sets, and how /live shows them. */
const sent = {
  userProperties: { model: 'weather-station', site: ['north', 'roof'] },
  contentType: 'application/json',
  payloadFormatIndicator: true,
  correlationData: Buffer.from('corr-42'),
}
const shown = { ...sent, correlationData: Buffer.from('corr-42').toString('base64') }

describe('MQTT 5 properties through mosquitto to /live', () => {
  it('reach /live from an mqtt.js MQTT 5 publisher on an anonymous mosquitto', async () => {
    const broker = await mosquitto()
    const s = await external(broker)
    const live = await s.live()
    const seen = envelopes(live)

    const device = await client(broker.url, { protocolVersion: 5, clientId: 'p5-device' })
    await device.publishAsync('devices/p5/telemetry', '{"temperature":21.5}', { qos: 1, properties: sent })
    await device.publishAsync('devices/p5/telemetry', '{"temperature":21.6}', { qos: 1 })

    const found = await seen.until('both publishes on /live', (v) => v.length >= 2)
    expect(found[0]).toMatchObject({ topic: 'devices/p5/telemetry', payload: '{"temperature":21.5}', source: 'mqtt', qos: 1, retain: false })
    expect(found[0]!.properties).toEqual(shown)
    // a publish without properties carries none, under MQTT 5 too
    expect(found[1]!.payload).toBe('{"temperature":21.6}')
    expect(found[1]).not.toHaveProperty('properties')
    expect(await healthBroker(s)).toMatchObject({ mode: 'external', url: broker.url, connected: true, protocolVersion: 5 })
  })

  it('reach /live of `pulseboard start --broker` logged in with --broker-username and a password file', async () => {
    const broker = await mosquitto({ users: { pulseboard: 'pb-secret-1', sensor: 'sensor-secret-1' } })
    const dir = mkdtempSync(path.join(tmpdir(), 'pulseboard-external-'))
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }))
    // as an editor writes it: with a newline the password does not have
    writeFileSync(path.join(dir, 'password'), 'pb-secret-1\n')
    const server = pulseboard([
      'start', '--broker', broker.url, '--broker-username', 'pulseboard', '--broker-password-file', path.join(dir, 'password'),
      '--no-store', '-p', '0', '--host', '127.0.0.1',
    ])
    const banner = (await server.stdout.until('the banner', (l) => l.some((line) => line.startsWith('Press Ctrl-C')), 20_000)).join('\n')
    const port = Number(/Dashboard\s+http:\/\/127\.0\.0\.1:(\d+)\//.exec(banner)?.[1])
    expect(port).toBeGreaterThan(0)
    expect(banner).toContain(`${broker.url} (MQTT 5): devices connect there`)
    // mosquitto let it in as that user, over MQTT 5
    expect(broker.log()).toMatch(/New client connected from 127\.0\.0\.1:\d+ as pulseboard-\S+ \(p5, c1, k30, u'pulseboard'\)/)
    await subscribed(broker, 'pulseboard-')

    const live = connectSocket(`http://127.0.0.1:${port}${LIVE_NAMESPACE}`, { transports: ['websocket'], reconnection: false }) as LiveClient
    onCleanUp(() => live.disconnect())
    const seen = envelopes(live)
    await within(5000, '/live to connect', new Promise((resolve, reject) => (live.once('connect', () => resolve(undefined)), live.once('connect_error', reject))))

    const device = await client(broker.url, { protocolVersion: 5, clientId: 'p5-sensor', username: 'sensor', password: 'sensor-secret-1' })
    await device.publishAsync('devices/p5/telemetry', '{"temperature":19}', { qos: 1, properties: sent })
    const found = await seen.until('the publish on /live', (v) => v.length >= 1)
    expect(found[0]).toMatchObject({ topic: 'devices/p5/telemetry', payload: '{"temperature":19}', source: 'mqtt' })
    expect(found[0]!.properties).toEqual(shown)
    expect(server.stdout.values.join('\n')).not.toContain('pb-secret-1')
    expect(await within(10_000, 'pulseboard start to stop on SIGTERM', server.kill())).toBe(0)
  }, 30_000)
})

describe("the tutorial's clients and the CLI in external mode", () => {
  it('text typed into sender.py reaches mosquitto_sub and receiver.py, once', async () => {
    const broker = await mosquitto()
    const s = await external(broker)
    const sub = run('mosquitto_sub', ['-h', '127.0.0.1', '-p', String(broker.port), '-i', 'ext-sub', '-v', '-t', 'messages'])
    const [receiver, sender] = await startSeeds(s, ['receiver.py', 'sender.py'])
    await subscribed(broker, 'ext-sub')

    sender!.process.stdin.write('typed into the seed sender\n')

    await sub.stdout.until('mosquitto_sub to print the text', (l) => l.includes('messages typed into the seed sender'), 10_000)
    await receiver!.stdout.until('receiver.py to print it', (l) => l.includes('receive message : typed into the seed sender'), 10_000)
    // what the broker sends back is the socket's own message, shown once; a second one shows it was not held back
    const live = await s.live()
    expect(await within(5000, 'the ack', live.emitWithAck('message', 'a second line'))).toEqual({ ok: true })
    await receiver!.stdout.until('the second line', (l) => l.includes('receive message : a second line'))
    expect(receiver!.stdout.values).toEqual(['receive message : typed into the seed sender', 'receive message : a second line'])
    expect(sub.stdout.values).toEqual(['messages typed into the seed sender', 'messages a second line'])
  }, 30_000)

  it('a mosquitto_pub message reaches receiver.py and `pulseboard receive`', async () => {
    const broker = await mosquitto()
    const s = await external(broker)
    const connected = new Promise((resolve) => s.app.bridge.live.once('connection', resolve))
    const cli = pulseboard(['receive', '--url', s.httpUrl])
    const [receiver] = await startSeeds(s, ['receiver.py'])
    await within(20_000, 'pulseboard receive to connect', connected)

    const pub = run('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(broker.port), '-i', 'mosq-pub', '-q', '1', '-t', 'devices/x/telemetry', '-m', '21.5'])
    expect(await within(5000, 'mosquitto_pub to exit', pub.exited)).toBe(0)

    await receiver!.stdout.until('receiver.py to print it', (l) => l.includes('receive message : 21.5'))
    await cli.stdout.until('pulseboard receive to print it', (l) => l.includes('receive message : 21.5'))
    expect(receiver!.stdout.values).toEqual(['receive message : 21.5'])
    expect(cli.stdout.values).toEqual(['receive message : 21.5'])
    expect(await cli.kill()).toBe(0)
  }, 30_000)

  it('`pulseboard send --topic t --property k=v` reaches an MQTT 5 subscriber with the user property', async () => {
    const broker = await mosquitto()
    const s = await external(broker)
    const subscriber = await client(broker.url, { protocolVersion: 5, clientId: 'p5-sub' })
    const seen = received(subscriber)
    await subscriber.subscribeAsync('ext/t', { qos: 1 })

    const cli = pulseboard(['send', '--url', s.httpUrl, '--topic', 'ext/t', '--qos', '1', '--property', 'k=v', 'hello from the CLI'])
    expect(await within(20_000, 'pulseboard send to exit', cli.exited), cli.stderr.values.join('\n')).toBe(0)

    const found = await seen.until('the message at the subscriber', (v) => v.length >= 1)
    expect(found[0]).toMatchObject({ topic: 'ext/t', payload: 'hello from the CLI' })
    expect(found[0]!.properties).toEqual({ userProperties: { k: 'v' } })
  }, 30_000)
})

describe('a dashboard command in external mode', () => {
  it('to a device known from its telemetry reaches mosquitto_sub on its command topic', async () => {
    const broker = await mosquitto()
    const s = await external(broker)
    const { live, devices } = await watch(s)

    // a 3.1.1 device: no properties, so its command is a plain publish, acknowledged once the broker has it
    const lamp = await client(broker.url, { protocolVersion: 4, clientId: 'lamp' })
    await lamp.publishAsync('devices/lamp/telemetry', '{"temperature":21.5,"relay":false}', { qos: 1 })
    const known = await devices.until('the lamp in the registry', (v) => v.some((d) => d.id === 'lamp' && 'relay' in d.metrics))
    const lampState = known.findLast((d) => d.id === 'lamp')!
    expect(lampState).toMatchObject({ format: 'generic', metrics: { temperature: { value: 21.5 } } })
    expect(lampState.mqtt5).toBeUndefined()

    const sub = run('mosquitto_sub', ['-h', '127.0.0.1', '-p', String(broker.port), '-i', 'cmd-sub', '-v', '-q', '1', '-t', 'devices/lamp/commands', '-C', '1'])
    await subscribed(broker, 'cmd-sub')
    const ack = await within(5000, 'the command ack', live.emitWithAck('command', { device: 'lamp', name: 'relay', value: true }))
    expect(ack).toEqual({ ok: true, topic: 'devices/lamp/commands', payload: '{"name":"relay","value":true}' })
    expect(await within(5000, 'mosquitto_sub to exit after the command', sub.exited)).toBe(0)
    expect(sub.stdout.values).toEqual(['devices/lamp/commands {"name":"relay","value":true}'])
  })
})

describe('MQTT 3.1.1 fallback', () => {
  it("on another Pulseboard's embedded broker: protocol 4, and a publish with properties is refused with E_MQTT5_REQUIRED", async () => {
    const first = await stack()
    const second = await stack({ externalBroker: { url: first.mqttUrl } })
    const { live, statuses } = await watch(second)

    expect(await healthBroker(second)).toMatchObject({ mode: 'external', url: first.mqttUrl, connected: true, protocolVersion: 4 })
    expect(statuses.values[0]).toMatchObject({ mode: 'external', connected: true, protocolVersion: 4 })
    expect(second.app.source.description).toBe(`${first.mqttUrl} (MQTT 3.1.1)`)

    const refused = await within(5000, 'the ack', live.emitWithAck('message', { topic: 'ext/p', payload: 'x', properties: { userProperties: { k: 'v' } } }))
    expect(refused).toMatchObject({ ok: false, error: { code: 'E_MQTT5_REQUIRED' } })

    // without properties it flows both ways through the first one's broker
    const device = await first.mqtt()
    const seen = received(device)
    await device.subscribeAsync('ext/p')
    const seenLive = envelopes(live)
    expect(await within(5000, 'the ack', live.emitWithAck('message', { topic: 'ext/p', payload: 'plain' }))).toEqual({ ok: true })
    await seen.until('the plain publish at the first broker', (v) => v.some((m) => m.payload === 'plain'))
    expect(seen.values.map((m) => m.payload)).toEqual(['plain'])
    await device.publishAsync('devices/old/telemetry', '7', { qos: 1 })
    await seenLive.until('the device publish on the second /live', (v) => v.some((e) => e.topic === 'devices/old/telemetry' && e.payload === '7'))
  })
})
