import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { Writable } from 'node:stream'
import mqtt from 'mqtt'
import { pino } from 'pino'
import { Server } from 'socket.io'
import { afterEach, beforeEach, describe, expect, it, onTestFinished } from 'vitest'
import { envelopes, startStack, within, type Stack } from '../helpers/stack.ts'
import { killAll, pulseboard } from '../helpers/process.ts'
import { LIVE_NAMESPACE, type Envelope } from '../../protocol/index.ts'

// The embedded broker speaks MQTT 3.1.1: what the CLI does with MQTT 5 against it.
let stack: Stack
beforeEach(async () => {
  stack = await startStack()
})
afterEach(async () => {
  await killAll()
  await stack.close()
})

describe('pulseboard send with MQTT 5 properties', () => {
  it('is refused by the embedded broker with E_MQTT5_REQUIRED, one line, exit 1', async () => {
    const child = pulseboard([
      'send', '--url', stack.httpUrl, '--topic', 'devices/x/commands',
      '--property', 'origin=cli', '--property', 'origin=test', '--content-type', 'application/json',
      '--response-topic', 'replies/cli', '--correlation-data', 'req-1', '--expiry', '30',
      '{"name":"relay","value":1}',
    ])
    expect(await within(15_000, 'pulseboard send to exit', child.exited)).toBe(1)
    expect(child.stderr.values).toHaveLength(1)
    expect(child.stderr.values[0]).toMatch(/^pulseboard send: E_MQTT5_REQUIRED: \S/)
  })

  it('puts them in the PublishRequest: a name given twice as an array, correlation data as base64', async () => {
    // a /live endpoint that records what it is sent and accepts it, as an MQTT 5 server would
    const server = http.createServer()
    const io = new Server(server)
    onTestFinished(() => new Promise<void>((resolve) => void io.close(() => resolve())))
    const requests: unknown[] = []
    io.of(LIVE_NAMESPACE).on('connection', (socket) =>
      socket.on('message', (message: unknown, ack: (a: { ok: true }) => void) => (requests.push(message), ack({ ok: true }))),
    )
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`

    const child = pulseboard([
      'send', '--url', url, '--topic', 'devices/x/commands', '--qos', '1',
      '--property', 'origin=cli', '--property', 'trace=a=b', '--property', 'origin=test', '--property', 'empty=',
      '--content-type', 'application/json', '--response-topic', 'replies/cli', '--correlation-data', 'req-1 é', '--expiry', '30',
      '{"name":"relay","value":1}',
    ])
    expect(await within(15_000, 'pulseboard send to exit', child.exited)).toBe(0)
    expect(requests).toEqual([
      {
        topic: 'devices/x/commands',
        payload: '{"name":"relay","value":1}',
        qos: 1,
        retain: false,
        properties: {
          userProperties: { origin: ['cli', 'test'], trace: 'a=b', empty: '' },
          contentType: 'application/json',
          responseTopic: 'replies/cli',
          correlationData: Buffer.from('req-1 é', 'utf8').toString('base64'),
          messageExpiryInterval: 30,
        },
      },
    ])
  })

  it('sends no properties without the flags', async () => {
    const live = await stack.live({ auth: { view: { filters: ['plain/#'], devices: false } } })
    const seen = envelopes(live)
    const child = pulseboard(['send', '--url', stack.httpUrl, '--topic', 'plain/x', 'ON'])
    expect(await within(15_000, 'pulseboard send to exit', child.exited)).toBe(0)
    await seen.until('the envelope', (v) => v.length === 1)
    expect(seen.values[0]).toMatchObject({ topic: 'plain/x', payload: 'ON' })
    expect(seen.values[0]).not.toHaveProperty('properties')
  })

  const chatOnly = 'pulseboard send: --property, --content-type, --response-topic, --correlation-data, --expiry go with --topic; chat text has no MQTT 5 properties'
  it.each<[string, string[], string | RegExp]>([
    ['--property without =', ['--topic', 'a/b', '--property', 'origin'], 'pulseboard send: --property must be name=value, got "origin"'],
    ['--property without a name', ['--topic', 'a/b', '--property', '=cli'], 'pulseboard send: --property needs a name before =, got "=cli"'],
    ['--property without --topic', ['--property', 'origin=cli'], chatOnly],
    ['--content-type without --topic', ['--content-type', 'text/plain'], chatOnly],
    ['--response-topic with a wildcard', ['--topic', 'a/b', '--response-topic', 'replies/+'], 'pulseboard send: --response-topic: topic must not contain + or #'],
    ['--expiry not in seconds', ['--topic', 'a/b', '--expiry', '10s'], 'pulseboard send: --expiry must be a whole number from 0 to 4294967295, got "10s"'],
    ['a user property over 4096 characters', ['--topic', 'a/b', '--property', `k=${'x'.repeat(5000)}`], /^pulseboard send: MQTT 5 properties: --property k: /],
  ])('%s is a usage error of one line, before connecting', async (_label, args, line) => {
    let connections = 0
    stack.app.bridge.live.on('connection', () => connections++)
    const child = pulseboard(['send', '--url', stack.httpUrl, ...args, 'text'])
    expect(await within(15_000, 'pulseboard send to exit', child.exited)).toBe(2)
    if (typeof line === 'string') expect(child.stderr.values[0]).toBe(line)
    else expect(child.stderr.values[0]).toMatch(line)
    // the one line and the pointer to --help, not the whole usage
    expect(child.stderr.values).toEqual([child.stderr.values[0], 'Run "pulseboard send --help" for its options.'])
    expect(connections).toBe(0)
  })

  it('documents the properties in --help', async () => {
    const child = pulseboard(['send', '--help'])
    expect(await child.exited).toBe(0)
    const help = child.stdout.values.join('\n')
    for (const flag of ['--property <name=value>', '--content-type <mime>', '--response-topic <topic>', '--correlation-data <text>', '--expiry <seconds>']) {
      expect(help).toContain(flag)
    }
  })
})

describe('pulseboard receive --json', () => {
  it('prints each envelope whole, one parseable JSON object a line, as /live sends it', async () => {
    const connected = new Promise((resolve) => stack.app.bridge.live.once('connection', resolve))
    const child = pulseboard(['receive', '--json', '--url', stack.httpUrl, '--topic', 'json/#'])
    await within(10_000, 'pulseboard receive to connect', connected)
    const live = await stack.live({ auth: { view: { filters: ['json/#'], devices: false } } })
    const seen = envelopes(live)

    const device = await stack.mqtt({ clientId: 'json-dev' })
    await device.publishAsync('json/a', '{"t":21.5}')
    await device.publishAsync('json/b', 'two\nlines\n', { qos: 1 })
    await device.publishAsync('json/c', Buffer.from([0xff, 0x00, 0xfe]))
    await device.publishAsync('json/d', '', { qos: 1, retain: true })

    await seen.until('4 envelopes on /live', (v) => v.length === 4)
    const lines = await child.stdout.until('4 lines on stdout', (l) => l.length === 4)
    const printed = lines.map((line) => JSON.parse(line) as Envelope)
    expect(printed).toEqual(seen.values)
    expect(printed.map((e) => [e.topic, e.payload, e.encoding])).toEqual([
      ['json/a', '{"t":21.5}', undefined],
      ['json/b', 'two\nlines\n', undefined],
      ['json/c', Buffer.from([0xff, 0x00, 0xfe]).toString('base64'), 'base64'],
      ['json/d', '', undefined],
    ])
    expect(printed[1]).toMatchObject({ source: 'mqtt', clientId: 'json-dev', qos: 1, retain: false })
    expect(printed[3]).toMatchObject({ retain: true })
    expect(typeof printed[0]!.ts).toBe('number')
    expect(await child.kill()).toBe(0)
  })
})

describe('pulseboard simulate --mqtt', () => {
  it('5 against the embedded broker exits 1 with one line saying what to do', async () => {
    const child = pulseboard(['simulate', '--mqtt', '5', '--devices', '2', '--url', stack.mqttUrl])
    expect(await within(15_000, 'pulseboard simulate to exit', child.exited)).toBe(1)
    expect(child.stderr.values).toEqual([
      `Connecting 2 mixed devices (MQTT 5) to ${stack.mqttUrl} ...`,
      `pulseboard simulate: the broker at ${stack.mqttUrl} speaks only MQTT 3.1.1 (it refused MQTT 5: Unacceptable protocol version); ` +
        'use --mqtt 3.1.1, or run Pulseboard on Mosquitto with "pulseboard start --broker" (docs/devices.md)',
    ])
  })

  it.each([['3.1.1'], ['4']])('%s connects to the embedded broker as before', async (version) => {
    const child = pulseboard(['simulate', '--mqtt', version, '--devices', '2', '--url', stack.mqttUrl])
    await child.stderr.until('every device connected', (l) => l.some((line) => line.startsWith('All connected.')), 15_000)
    expect(child.stderr.values[0]).toBe(`Connecting 2 mixed devices to ${stack.mqttUrl} ...`)
    expect(await child.kill()).toBe(0)
  })

  it('refuses a version it does not know', async () => {
    const child = pulseboard(['simulate', '--mqtt', '3', '--url', stack.mqttUrl])
    expect(await within(15_000, 'pulseboard simulate to exit', child.exited)).toBe(2)
    expect(child.stderr.values[0]).toBe('pulseboard simulate: --mqtt must be 3.1.1 or 5, got "3"')
  })
})

describe('an MQTT 5 device on the embedded broker', () => {
  it('is refused, and the log says why and what to do, once for a burst', async () => {
    const lines: { level: number; msg: string }[] = []
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        for (const line of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(line) as { level: number; msg: string })
        done()
      },
    })
    const logged = await startStack({ logger: pino({ level: 'info' }, sink) })
    try {
      for (let i = 0; i < 3; i++) {
        const refused = await mqtt.connectAsync(logged.mqttUrl, { protocolVersion: 5, clientId: `esp32-v5-${i}`, reconnectPeriod: 0 }).then(
          () => null,
          (err: Error) => err,
        )
        expect(refused?.message).toMatch(/Unacceptable protocol version|unsupported protocol version/i)
      }
      const why = lines.filter((l) => l.msg.includes('MQTT 5 client'))
      expect(why).toHaveLength(1)
      expect(why[0]).toMatchObject({ level: 40 })
      expect(why[0]!.msg).toContain('esp32-v5-0')
      expect(why[0]!.msg).toContain('--broker')
      expect(why[0]!.msg).toContain('docs/devices.md')
    } finally {
      await logged.close()
    }
  })
})
