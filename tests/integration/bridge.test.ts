import net from 'node:net'
import mqtt from 'mqtt'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { collect, envelopes, mqttMessages, startStack, within, type Stack } from '../helpers/stack.ts'

let stack: Stack
beforeEach(async () => {
  stack = await startStack()
})
afterEach(async () => {
  await stack.close()
})

describe('MQTT to socket.io', () => {
  it('sends every publish to / as text and to /live as an envelope', async () => {
    const chat = await stack.chat()
    const live = await stack.live()
    const texts = collect<string>((push) => chat.on('message', push))
    const seen = envelopes(live)
    const device = await stack.mqtt({ clientId: 'esp-1' })

    await device.publishAsync('devices/x/telemetry', '21.5')

    await texts.until('"21.5" on /', (v) => v.includes('21.5'))
    const [envelope] = await seen.until('the envelope on /live', (v) => v.some((e) => e.topic === 'devices/x/telemetry'))
    expect(envelope).toMatchObject({
      topic: 'devices/x/telemetry',
      payload: '21.5',
      source: 'mqtt',
      clientId: 'esp-1',
      qos: 0,
      retain: false,
    })
    expect(envelope!.encoding).toBeUndefined()
    expect(Math.abs(envelope!.ts - Date.now())).toBeLessThan(60_000)
  })

  it('sends payloads that are not UTF-8 as base64', async () => {
    const chat = await stack.chat()
    const live = await stack.live()
    const texts = collect<string>((push) => chat.on('message', push))
    const seen = envelopes(live)
    const device = await stack.mqtt()
    const bytes = Buffer.from([0xff, 0xfe, 0x00, 0x80])

    await device.publishAsync('raw/bytes', bytes)

    await texts.until('base64 text on /', (v) => v.includes(bytes.toString('base64')))
    const found = await seen.until('base64 envelope', (v) => v.some((e) => e.topic === 'raw/bytes'))
    expect(found.find((e) => e.topic === 'raw/bytes')).toMatchObject({ payload: bytes.toString('base64'), encoding: 'base64' })
  })

  it('keeps $SYS off / and off /live unless a /live client asks for it', async () => {
    const chat = await stack.chat()
    const plain = await stack.live()
    const sys = await stack.live()
    const texts = collect<string>((push) => chat.on('message', push))
    const plainSeen = envelopes(plain)
    const sysSeen = envelopes(sys)
    await sys.emitWithAck('subscribe', ['$SYS/#', 'marker'])

    // every MQTT connect makes aedes publish $SYS/<broker>/new/clients
    const device = await stack.mqtt({ clientId: 'sys-probe' })
    await sysSeen.until('$SYS new/clients on the $SYS subscriber', (v) => v.some((e) => e.topic.endsWith('/new/clients')))
    await device.publishAsync('marker', 'after')
    await texts.until('the marker on /', (v) => v.includes('after'))
    await plainSeen.until('the marker on /live', (v) => v.some((e) => e.topic === 'marker'))

    expect(texts.values).toEqual(['after'])
    expect(plainSeen.values.map((e) => e.topic)).toEqual(['marker'])
  })

  it('carries MQTT over WebSocket at /mqtt', async () => {
    const live = await stack.live()
    const seen = envelopes(live)
    const wsDevice = await stack.mqtt({ clientId: 'ws-device', protocol: 'ws', hostname: '127.0.0.1', port: stack.port, path: '/mqtt' })

    await wsDevice.publishAsync('ws/topic', 'over websocket')

    const found = await seen.until('the WebSocket publish', (v) => v.some((e) => e.topic === 'ws/topic'))
    expect(found.find((e) => e.topic === 'ws/topic')).toMatchObject({ payload: 'over websocket', clientId: 'ws-device' })
  })
})

describe('socket.io to MQTT', () => {
  it('broadcasts a / string to every / client, the sender included, to /live, and to MQTT once', async () => {
    const sender = await stack.chat()
    const other = await stack.chat()
    const live = await stack.live()
    const subscriber = await stack.mqtt()
    await subscriber.subscribeAsync('messages')
    const senderTexts = collect<string>((push) => sender.on('message', push))
    const otherTexts = collect<string>((push) => other.on('message', push))
    const liveSeen = envelopes(live)
    const mqttSeen = mqttMessages(subscriber)

    const ack = await sender.emitWithAck('message', 'hello from the terminal')
    expect(ack).toEqual({ ok: true })

    await senderTexts.until('the sender to get its own message', (v) => v.includes('hello from the terminal'))
    await otherTexts.until('the other / client', (v) => v.includes('hello from the terminal'))
    await mqttSeen.until('the MQTT subscriber', (v) => v.some((m) => m.payload === 'hello from the terminal'))
    const [envelope] = await liveSeen.until('the /live envelope', (v) => v.length > 0)
    expect(envelope).toMatchObject({ topic: 'messages', payload: 'hello from the terminal', source: 'socket', clientId: sender.id })

    // a later message proves nothing was bridged a second time in between
    const device = await stack.mqtt()
    await device.publishAsync('messages', 'sentinel')
    await otherTexts.until('the sentinel', (v) => v.includes('sentinel'))
    await mqttSeen.until('the sentinel over MQTT', (v) => v.some((m) => m.payload === 'sentinel'))
    expect(otherTexts.values).toEqual(['hello from the terminal', 'sentinel'])
    expect(mqttSeen.values.map((m) => m.payload)).toEqual(['hello from the terminal', 'sentinel'])
    expect(liveSeen.values.map((e) => e.payload)).toEqual(['hello from the terminal', 'sentinel'])
  })

  it('publishes a /live object to MQTT with its QoS and retain flag', async () => {
    const live = await stack.live()
    const seen = envelopes(live)
    const subscriber = await stack.mqtt()
    await subscriber.subscribeAsync('devices/relay-1/commands', { qos: 1 })
    const received = mqttMessages(subscriber)

    const ack = await live.emitWithAck('message', { topic: 'devices/relay-1/commands', payload: '{"relay":1}', qos: 1 })
    expect(ack).toEqual({ ok: true })

    const [message] = await received.until('the command over MQTT', (v) => v.length > 0)
    expect(message).toEqual({ topic: 'devices/relay-1/commands', payload: '{"relay":1}', qos: 1, retain: false })
    await seen.until('the command on /live', (v) => v.some((e) => e.source === 'socket' && e.qos === 1))
  })

  it('publishes base64 payloads from /live as bytes', async () => {
    const live = await stack.live()
    const subscriber = await stack.mqtt()
    await subscriber.subscribeAsync('bin')
    const bytes = new Promise<Buffer>((resolve) => subscriber.on('message', (_t, payload) => resolve(payload)))

    await live.emitWithAck('message', { topic: 'bin', payload: Buffer.from([1, 2, 255]).toString('base64'), encoding: 'base64' })

    expect([...(await within(5000, 'binary payload', bytes))]).toEqual([1, 2, 255])
  })

  it('sends /live clients only the topics their filters match', async () => {
    const live = await stack.live()
    const seen = envelopes(live)
    const ack = await live.emitWithAck('subscribe', ['home/+/temperature', 'alarm/#'])
    expect(ack).toEqual({ ok: true, filters: ['alarm/#', 'home/+/temperature'] })
    const device = await stack.mqtt()

    for (const topic of ['home/kitchen/temperature', 'home/kitchen/humidity', 'alarm', 'alarm/door/open', 'office/temperature']) {
      await device.publishAsync(topic, '1')
    }
    await device.publishAsync('alarm/last', '1')

    await seen.until('alarm/last', (v) => v.some((e) => e.topic === 'alarm/last'))
    expect(seen.values.map((e) => e.topic)).toEqual(['home/kitchen/temperature', 'alarm', 'alarm/door/open', 'alarm/last'])
  })
})

describe('MQTT features end to end', () => {
  it('delivers QoS 1 to a persistent session that was offline', async () => {
    const first = await stack.mqtt({ clientId: 'persistent-sub', clean: false })
    await first.subscribeAsync('qos/one', { qos: 1 })
    await first.endAsync()
    const publisher = await stack.mqtt()
    await publisher.publishAsync('qos/one', 'while you were away', { qos: 1 })

    // listen before connecting: the queued message follows the CONNACK at once
    const again = mqtt.connect(stack.mqttUrl, { clientId: 'persistent-sub', clean: false, reconnectPeriod: 0 })
    try {
      const received = mqttMessages(again)
      const [message] = await received.until('the queued QoS 1 message', (v) => v.length > 0)
      expect(message).toMatchObject({ topic: 'qos/one', payload: 'while you were away', qos: 1 })
    } finally {
      await again.endAsync(true)
    }
  })

  it('keeps retained messages for later subscribers, and flags them on /live', async () => {
    const live = await stack.live()
    const seen = envelopes(live)
    const device = await stack.mqtt()
    await device.publishAsync('devices/x/status', 'online', { qos: 1, retain: true })
    await seen.until('the retained publish on /live', (v) => v.some((e) => e.retain && e.topic === 'devices/x/status'))

    const late = await stack.mqtt()
    const received = mqttMessages(late)
    await late.subscribeAsync('devices/+/status')
    const [message] = await received.until('the retained message', (v) => v.length > 0)
    expect(message).toMatchObject({ topic: 'devices/x/status', payload: 'online', retain: true })
  })

  it('publishes the last will when a device drops', async () => {
    const live = await stack.live()
    const seen = envelopes(live)
    const watcher = await stack.mqtt()
    await watcher.subscribeAsync('devices/+/status')
    const received = mqttMessages(watcher)
    const device = await stack.mqtt({
      clientId: 'will-device',
      will: { topic: 'devices/will-device/status', payload: Buffer.from('offline'), qos: 1, retain: true },
    })

    device.stream.destroy()

    await received.until('the will over MQTT', (v) => v.some((m) => m.payload === 'offline'))
    const found = await seen.until('the will on /live', (v) => v.some((e) => e.payload === 'offline'))
    expect(found.find((e) => e.payload === 'offline')).toMatchObject({ clientId: 'will-device', retain: true, qos: 1 })
  })
})

describe('bad input leaves everyone else served', () => {
  async function stillServing(stack: Stack, label: string): Promise<void> {
    const live = await stack.live()
    const seen = envelopes(live)
    const device = await stack.mqtt()
    await device.publishAsync('still/serving', label)
    await seen.until(`"${label}" after the bad input`, (v) => v.some((e) => e.payload === label))
  }

  it('answers a non-string message on / with an error and changes nothing', async () => {
    const bad = await stack.chat()
    const good = await stack.chat()
    const texts = collect<string>((push) => good.on('message', push))
    for (const value of [42, { a: 1 }, null, ['x'], true]) {
      // the wire accepts anything, whatever the types say
      const ack = await bad.emitWithAck('message', value as unknown as string)
      expect(ack).toMatchObject({ ok: false, error: { code: 'E_INVALID_MESSAGE' } })
    }
    bad.emit('message', 7 as unknown as string) // no acknowledgement asked for

    await bad.emitWithAck('message', 'valid')
    await texts.until('the valid message', (v) => v.includes('valid'))
    expect(texts.values).toEqual(['valid'])
    await stillServing(stack, 'after non-string')
  })

  it('answers invalid /live objects with named errors', async () => {
    const live = await stack.live()
    const cases: [unknown, string][] = [
      [{ topic: 'a' }, 'E_INVALID_MESSAGE'],
      [{ topic: 1, payload: 'x' }, 'E_INVALID_MESSAGE'],
      [{ topic: 'a', payload: 'x', qos: 3 }, 'E_INVALID_MESSAGE'],
      [{ topic: 'a', payload: 'x', extra: true }, 'E_INVALID_MESSAGE'],
      [42, 'E_INVALID_MESSAGE'],
      [null, 'E_INVALID_MESSAGE'],
      [{ topic: 'a/#', payload: 'x' }, 'E_INVALID_TOPIC'],
      [{ topic: '$SYS/fake', payload: 'x' }, 'E_INVALID_TOPIC'],
      [{ topic: '', payload: 'x' }, 'E_INVALID_TOPIC'],
      [{ topic: 'big', payload: 'x'.repeat(300 * 1024) }, 'E_PAYLOAD_TOO_LARGE'],
    ]
    for (const [message, code] of cases) {
      const ack = await live.emitWithAck('message', message as string)
      expect(ack, JSON.stringify(message).slice(0, 80)).toMatchObject({ ok: false, error: { code } })
    }
    for (const filters of [[], 'a/#/b', ['ok', 'bad+'], 5, [''.padEnd(3, '#')]]) {
      const ack = await live.emitWithAck('subscribe', filters as string[])
      expect(ack, JSON.stringify(filters)).toMatchObject({ ok: false, error: { code: 'E_INVALID_FILTER' } })
    }
    await stillServing(stack, 'after invalid objects')
  })

  it('closes a raw TCP connection that sends garbage', async () => {
    const socket = net.connect(stack.mqttPort, '127.0.0.1')
    const closed = new Promise((resolve) => socket.on('close', resolve))
    socket.on('error', () => {})
    socket.write(Buffer.from('GET / HTTP/1.1\r\n\r\n\x00\xff\xfe garbage'))
    await within(5000, 'the broker to close the garbage connection', closed)
    expect(stack.app.broker!.stats.clientErrors).toBeGreaterThan(0)
    await stillServing(stack, 'after garbage')
  })

  it('closes a connection that sends a packet over the size limit, before it arrives', async () => {
    const device = await stack.mqtt({ clientId: 'oversize', reconnectPeriod: 0 })
    const closed = new Promise((resolve) => device.once('close', () => resolve(undefined)))
    device.publish('big', Buffer.alloc(300 * 1024, 1))
    await within(5000, 'the broker to close the oversize connection', closed)
    expect(stack.app.broker!.stats.oversizePackets).toBe(1)
    await stillServing(stack, 'after oversize')
  })
})

describe('HTTP', () => {
  it('reports health as JSON and metrics as Prometheus text', async () => {
    const device = await stack.mqtt()
    await stack.live()
    await device.publishAsync('a', '1')
    const health = await (await fetch(`${stack.httpUrl}/api/health`)).json()
    expect(health).toMatchObject({ status: 'ok', mqtt: { clients: 1, messagesIn: 1 }, sockets: { chat: 0, live: 1 } })
    expect(health.uptime).toBeGreaterThanOrEqual(0)

    const metrics = await fetch(`${stack.httpUrl}/metrics`)
    expect(metrics.headers.get('content-type')).toMatch(/text\/plain/)
    const text = await metrics.text()
    expect(text).toMatch(/^pulseboard_mqtt_clients 1$/m)
    expect(text).toMatch(/^pulseboard_mqtt_messages_in_total 1$/m)
    expect(text).toMatch(/^pulseboard_socket_clients 1$/m)
  })

  it('answers unknown API paths with a JSON 404', async () => {
    const res = await fetch(`${stack.httpUrl}/api/nope`)
    expect(res.status).toBe(404)
    expect(await res.json()).toEqual({ error: { code: 'E_NOT_FOUND', message: 'no such endpoint: /api/nope' } })
  })
})
