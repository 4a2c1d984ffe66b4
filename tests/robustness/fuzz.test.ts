import net from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import mqttPacket, { type Packet } from 'mqtt-packet'
import { canary, startTarget, type Target } from './server.ts'

let target: Target
afterEach(async () => {
  await target?.close()
})

const PACKETS = 10_000
const PER_CONNECTION = 20
const PARALLEL = 10
const TIME_BUDGET_MS = 30_000

/** mulberry32: a small seeded generator, so a failing run can be repeated from its seed. */
function random(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** One valid packet of each kind a client sends, with fields drawn at random. */
function validPacket(rnd: () => number, i: number): Packet {
  const qos = Math.floor(rnd() * 3) as 0 | 1 | 2
  const topic = ['a', 'devices/x/telemetry', 'cmnd/p/POWER', 'homeassistant/sensor/x/config', `t/${i}`][Math.floor(rnd() * 5)]!
  const payload = Buffer.from(['21.5', '{"t":1,"h":[1,2]}', 'ON', '', 'x'.repeat(Math.floor(rnd() * 2000))][Math.floor(rnd() * 5)]!)
  const messageId = 1 + Math.floor(rnd() * 65534)
  switch (Math.floor(rnd() * 9)) {
    case 0:
      return { cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId: `f${i}`, keepalive: 30, will: { topic, payload, qos, retain: rnd() < 0.5 } }
    case 1:
    case 2:
      return { cmd: 'publish', topic, payload, qos, retain: rnd() < 0.3, dup: false, ...(qos > 0 && { messageId }) }
    case 3:
      return { cmd: 'subscribe', messageId, subscriptions: [{ topic: rnd() < 0.5 ? '#' : `${topic}/+`, qos }] }
    case 4:
      return { cmd: 'unsubscribe', messageId, unsubscriptions: [topic] }
    case 5:
      return { cmd: 'puback', messageId }
    case 6:
      return { cmd: 'pubrec', messageId }
    case 7:
      return { cmd: 'pubrel', messageId }
    default:
      return { cmd: 'pingreq' }
  }
}

/** Flips bits, overwrites bytes, truncates, or repeats a slice of a valid packet. */
function mutate(bytes: Buffer, rnd: () => number): Buffer {
  const out = Buffer.from(bytes)
  switch (Math.floor(rnd() * 4)) {
    case 0:
      for (let n = 1 + Math.floor(rnd() * 4); n > 0; n--) out[Math.floor(rnd() * out.length)]! ^= 1 << Math.floor(rnd() * 8)
      return out
    case 1:
      for (let n = 1 + Math.floor(rnd() * 4); n > 0; n--) out[Math.floor(rnd() * out.length)] = Math.floor(rnd() * 256)
      return out
    case 2:
      return out.subarray(0, Math.floor(rnd() * out.length))
    default: {
      const from = Math.floor(rnd() * out.length)
      return Buffer.concat([out, out.subarray(from, from + Math.floor(rnd() * 64))])
    }
  }
}

/** One connection: a valid CONNECT so later packets reach the handlers past it, then mutated packets. */
function session(port: number, packets: Buffer[]): Promise<void> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1', () => {
      socket.write(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId: '', keepalive: 10 }))
      for (const p of packets) socket.write(p)
      // a connection the server keeps is ended by us once the server has had a moment with it
      setTimeout(() => socket.destroy(), 50)
    })
    socket.on('error', () => {})
    socket.on('data', () => {})
    socket.on('close', () => resolve())
  })
}

describe('fuzz', () => {
  it(`survives ${PACKETS.toLocaleString('en-US')} mutated MQTT packets`, async () => {
    const seed = Number(process.env.FUZZ_SEED ?? Date.now() % 1_000_000)
    target = await startTarget()
    const rnd = random(seed)
    const started = performance.now()
    let sent = 0
    while (sent < PACKETS && performance.now() - started < TIME_BUDGET_MS) {
      const batch = Array.from({ length: PARALLEL }, () =>
        Array.from({ length: PER_CONNECTION }, () => mutate(mqttPacket.generate(validPacket(rnd, sent++)), rnd)),
      )
      await Promise.all(batch.map((packets) => session(target.mqttPort, packets)))
    }
    expect(sent, `packets sent within ${TIME_BUDGET_MS / 1000} s (seed ${seed})`).toBeGreaterThanOrEqual(PACKETS)
    expect(target.child.process.exitCode, `the server is still running (seed ${seed})`).toBeNull()
    // some mutations are still valid: the fuzz reached the handlers behind the parser
    expect((await target.health()).mqtt.messagesIn).toBeGreaterThan(0)
    await canary(target)
  }, 60_000)
})
