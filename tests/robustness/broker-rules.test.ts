import net from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import mqtt from 'mqtt'
import mqttPacket, { type Packet } from 'mqtt-packet'
import { collect, within } from '../helpers/stack.ts'
import { canary, closed, startTarget, type Target } from './server.ts'

let target: Target
afterEach(async () => {
  await target?.close()
})

/** A raw MQTT 3.1.1 connection: writes packets as given and parses what comes back. */
async function raw(port: number) {
  const socket = net.connect(port, '127.0.0.1')
  socket.on('error', () => {})
  await within(5000, 'a TCP connection', new Promise((resolve) => socket.once('connect', resolve)))
  const parser = mqttPacket.parser({ protocolVersion: 4 })
  const packets = collect<Packet>((push) => parser.on('packet', push))
  socket.on('data', (chunk) => parser.parse(chunk))
  const ended = new Promise<void>((resolve) => socket.once('close', () => resolve()))
  return {
    packets,
    ended,
    send: (packet: Packet) => socket.write(mqttPacket.generate(packet)),
    write: (bytes: Buffer) => socket.write(bytes),
    close: () => socket.destroy(),
  }
}

const connect = (clientId: string, clean = true): Packet => ({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean, clientId, keepalive: 30 })

describe('broker rules from the spec', () => {
  it('closes a connection that publishes a topic with NUL [MQTT-1.5.3-2] or a $-topic [MQTT-4.7.2-1]', async () => {
    target = await startTarget()
    const watcher = await target.mqtt()
    await watcher.subscribeAsync('#')
    await watcher.subscribeAsync('$x/#')
    const seen = collect<string>((push) => watcher.on('message', (topic) => push(topic)))
    for (const topic of ['a/\u0000/b', '$x/fake', '$SYS/fake']) {
      const client = await target.mqtt()
      const gone = closed(client)
      client.publish(topic, 'x')
      await gone
    }
    await watcher.publishAsync('marker', 'x', { qos: 1 })
    await seen.until('the marker', (v) => v.includes('marker'))
    expect(seen.values).toEqual(['marker'])
    expect((await target.health()).bridge).toBeDefined()
    await canary(target)
  })

  it('refuses a 64 KiB topic, and a filter over --max-topic-length with 0x80 for that filter alone', async () => {
    target = await startTarget()
    const conn = await raw(target.mqttPort)
    conn.send(connect('long-filter'))
    conn.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'ok', qos: 1 }, { topic: `long/${'x'.repeat(2000)}`, qos: 1 }] })
    const packets = await conn.packets.until('the SUBACK', (p) => p.some((x) => x.cmd === 'suback'))
    expect(packets.find((p) => p.cmd === 'suback')).toMatchObject({ granted: [1, 128] })
    conn.close()
    const client = await target.mqtt()
    const gone = closed(client)
    client.publish(`t/${'x'.repeat(60 * 1024)}`, 'x')
    await gone
    await canary(target)
  })

  it('answers a zero-length client id without clean session with CONNACK 0x02 [MQTT-3.1.3-8]', async () => {
    target = await startTarget()
    const conn = await raw(target.mqttPort)
    // mqtt-packet will not write this CONNECT: take a clean one and clear the clean-session flag
    const bytes = mqttPacket.generate(connect('', true))
    bytes[9]! &= ~0x02
    conn.write(bytes)
    const [connack] = await conn.packets.until('the CONNACK', (p) => p.length > 0)
    expect(connack).toMatchObject({ cmd: 'connack', returnCode: 2 })
    await within(5000, 'the server to close the connection', conn.ended)

    const fine = await raw(target.mqttPort)
    fine.send(connect('', true))
    const [ok] = await fine.packets.until('the CONNACK', (p) => p.length > 0)
    expect(ok).toMatchObject({ cmd: 'connack', returnCode: 0 })
    fine.close()
    await canary(target)
  })

  it('shows a taken-over client id, and throttles two clients fighting over one', async () => {
    target = await startTarget(['--flap-max', '5', '--flap-window', '30s', '--flap-ban', '30s'])
    // a device publishes under its id; then a second one with the same id appears, and each
    // reconnects as soon as the other kicks it out
    const first = mqtt.connect(target.mqttUrl, { clientId: 'twin', reconnectPeriod: 50 })
    await within(5000, 'the first twin to connect', new Promise((resolve) => first.once('connect', resolve)))
    await first.publishAsync('devices/twin/telemetry', '{"t":1}', { qos: 1 })
    await within(5000, 'the device to be known', (async () => {
      while ((await fetch(`${target.httpUrl}/api/devices/twin`)).status !== 200) await new Promise((r) => setTimeout(r, 20))
    })())
    const fighters = [first, mqtt.connect(target.mqttUrl, { clientId: 'twin', reconnectPeriod: 50 })]
    const connects = collect<number>((push) => fighters.forEach((f, i) => f.on('connect', () => push(i))))
    const refusals = collect<number>((push) => fighters.forEach((f) => f.on('error', (err) => (err as { code?: number }).code === 3 && push(3))))
    await refusals.until('the flapping id to be refused', (v) => v.length > 0)
    const during = connects.values.length
    await new Promise((resolve) => setTimeout(resolve, 1000))
    // without the throttle they took the id from each other about once a second, forever
    expect(connects.values.length).toBe(during)
    expect(during).toBeLessThanOrEqual(6)
    const health = await target.health()
    expect(health.limits.flapping).toBeGreaterThan(0)
    for (const f of fighters) f.end(true)
    const device = (await (await fetch(`${target.httpUrl}/api/devices/twin`)).json()) as { takeovers?: number; online: boolean }
    expect(device.takeovers).toBeGreaterThan(0)
    await canary(target)
  })
})
