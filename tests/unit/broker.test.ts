import { Duplex, PassThrough } from 'node:stream'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import mqttPacket, { type Packet } from 'mqtt-packet'
import mqemitter from 'mqemitter'
import { createBroker, type Broker, type BrokerMessage } from '../../broker/broker.ts'
import { collect } from '../helpers/stack.ts'

/** An MQTT connection to the broker over an in-memory stream: no port, no socket. */
function connection(broker: Broker) {
  const toBroker = new PassThrough()
  const toClient = new PassThrough()
  const brokerSide = Duplex.from({ readable: toBroker, writable: toClient })
  broker.handle(brokerSide)
  const parser = mqttPacket.parser({ protocolVersion: 4 })
  const packets = collect<Packet>((push) => parser.on('packet', push))
  toClient.on('data', (chunk: Buffer) => parser.parse(chunk))
  const closed = new Promise<void>((resolve) => brokerSide.once('close', () => resolve()))
  return {
    packets,
    closed,
    send: (packet: Packet) => toBroker.write(mqttPacket.generate(packet)),
    write: (bytes: Buffer) => toBroker.write(bytes),
  }
}

const connect = (clientId: string, clean = true): Packet => ({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean, clientId, keepalive: 30 })

let broker: Broker
beforeEach(async () => {
  broker = await createBroker({ maxTopicLength: 64 })
})
afterEach(async () => {
  await broker.close()
})

describe('broker over in-memory streams', () => {
  it('delivers client publishes to in-process subscribers, with the client id, and its own with their origin', async () => {
    const seen = collect<BrokerMessage>((push) => broker.subscribe('#', push))
    const c = connection(broker)
    c.send(connect('dev-1'))
    await c.packets.until('the CONNACK', (p) => p.some((x) => x.cmd === 'connack'))
    c.send({ cmd: 'publish', topic: 'a/b', payload: Buffer.from('1'), qos: 0, retain: false, dup: false })
    await broker.publish({ topic: 'c/d', payload: Buffer.from('2'), qos: 0, retain: false }, 'socket:x')
    // the broker's own $SYS reports arrive too: aedes' emitter matches `#` against everything
    const ours = (v: BrokerMessage[]) => v.filter((m) => !m.topic.startsWith('$'))
    const both = ours(await seen.until('both messages', (v) => ours(v).length >= 2))
    const fromClient = both.find((m) => m.topic === 'a/b')
    const fromInside = both.find((m) => m.topic === 'c/d')
    expect(fromClient).toMatchObject({ topic: 'a/b', clientId: 'dev-1', local: true })
    expect(fromInside).toMatchObject({ topic: 'c/d', origin: 'socket:x', local: true })
  })

  it('grants a filter over --max-topic-length 0x80 and the others as asked [MQTT-3.9.3]', async () => {
    const c = connection(broker)
    c.send(connect('sub'))
    c.send({ cmd: 'subscribe', messageId: 7, subscriptions: [{ topic: 'ok/#', qos: 1 }, { topic: 'x'.repeat(100), qos: 0 }] })
    const packets = await c.packets.until('the SUBACK', (p) => p.some((x) => x.cmd === 'suback'))
    expect(packets.find((p) => p.cmd === 'suback')).toMatchObject({ messageId: 7, granted: [1, 128] })
  })

  it('closes a connection that publishes a topic with NUL [MQTT-1.5.3-2]', async () => {
    const c = connection(broker)
    c.send(connect('nul'))
    await c.packets.until('the CONNACK', (p) => p.some((x) => x.cmd === 'connack'))
    c.send({ cmd: 'publish', topic: 'a\u0000b', payload: Buffer.from('1'), qos: 0, retain: false, dup: false })
    await c.closed
    expect(broker.stats.refusedPublishes).toBe(1)
  })

  it('answers a zero-length client id without clean session with CONNACK 0x02 [MQTT-3.1.3-8]', async () => {
    const c = connection(broker)
    const bytes = mqttPacket.generate(connect('', true))
    bytes[9]! &= ~0x02 // mqtt-packet will not write it: clear the clean-session flag by hand
    c.write(bytes)
    const [connack] = await c.packets.until('the CONNACK', (p) => p.length > 0)
    expect(connack).toMatchObject({ cmd: 'connack', returnCode: 2 })
    await c.closed
  })

  it('reports connects, disconnects and takeovers', async () => {
    const events = collect<string>((push) => {
      broker.on('connect', (id) => push(`connect ${id}`))
      broker.on('disconnect', (id) => push(`disconnect ${id}`))
      broker.on('takeover', (id) => push(`takeover ${id}`))
    })
    const first = connection(broker)
    first.send(connect('same'))
    await events.until('the first connect', (v) => v.includes('connect same'))
    const second = connection(broker)
    second.send(connect('same'))
    await events.until('the takeover', (v) => v.filter((e) => e === 'connect same').length === 2)
    await first.closed
    expect(events.values).toEqual(['connect same', 'takeover same', 'disconnect same', 'connect same'])
  })

  it('with an emitter shared by two brokers, subscribeLocal gets what went through this one only, and subscribe every one\'s', async () => {
    // aedes' own emitter, as a cluster's Redis one would be shared
    const mq = mqemitter({ matchEmptyLevels: true })
    const a = await createBroker({ mq })
    const b = await createBroker({ mq })
    try {
      const here = collect<BrokerMessage>((push) => b.subscribeLocal('#', push))
      const everywhere = collect<BrokerMessage>((push) => b.subscribe('#', push))
      const device = connection(a)
      device.send(connect('dev-a'))
      await device.packets.until('the CONNACK', (p) => p.some((x) => x.cmd === 'connack'))
      device.send({ cmd: 'publish', topic: 'x/from-a', payload: Buffer.from('1'), qos: 1, messageId: 1, retain: false, dup: false })
      await b.publish({ topic: 'x/from-b', payload: Buffer.from('2'), qos: 0, retain: false }, 'socket:s')
      const ours = (v: BrokerMessage[]) => v.filter((m) => !m.topic.startsWith('$'))
      await everywhere.until('both messages on b', (v) => ours(v).length >= 2)
      // aedes acknowledges a QoS 1 publish before it routes it: the two may come either way round
      expect(ours(everywhere.values).map((m) => [m.topic, m.local]).sort()).toEqual([['x/from-a', false], ['x/from-b', true]])
      expect(here.values).toEqual([{ topic: 'x/from-b', payload: Buffer.from('2'), qos: 0, retain: false, origin: 'socket:s', local: true }])
    } finally {
      await b.close()
      await a.close()
    }
  })
})
