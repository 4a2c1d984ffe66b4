import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { io } from 'socket.io-client'
import { LIVE_NAMESPACE, type Reading } from '../../protocol/index.ts'
import { collect, envelopes, within, startStack, type LiveClient, type Stack } from '../helpers/stack.ts'

let stack: Stack
beforeEach(async () => {
  stack = await startStack()
})
afterEach(async () => {
  await stack.close()
})

describe('a /live client that loses its connection', () => {
  it('is sent what it missed when it is back within the window: every reading, once', async () => {
    const device = await stack.mqtt({ clientId: 'counter' })
    const client: LiveClient = io(stack.httpUrl + LIVE_NAMESPACE, {
      transports: ['websocket'],
      // back after 5 s, as a laptop whose Wi-Fi dropped
      reconnectionDelay: 5000,
      reconnectionDelayMax: 5000,
      randomizationFactor: 0,
    })
    const readings = collect<Reading>((push) => client.on('readings', (batch) => batch.forEach(push)))
    const messages = envelopes(client)
    const connects = collect<boolean>((push) => client.on('connect', () => push(client.recovered)))
    await connects.until('the first connect', (v) => v.length === 1)

    const total = 80
    let dropped = false
    for (let n = 0; n < total; n++) {
      await device.publishAsync('devices/counter/telemetry', JSON.stringify({ n }))
      // a client that received nothing before the drop has no offset to recover from: drop after some
      if (n === 10 && !dropped) {
        await readings.until('the first readings', (v) => v.length > 0)
        client.io.engine.close()
        dropped = true
      }
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
    await connects.until('the reconnect', (v) => v.length === 2, 10_000)
    expect(connects.values[1], 'the session was recovered').toBe(true)
    await readings.until(`all ${total} readings`, (v) => new Set(v.map((r) => r.value)).size === total, 10_000)
    await within(500, 'nothing more', new Promise((resolve) => setTimeout(resolve, 300)))
    const values = readings.values.filter((r) => r.device === 'counter' && r.metric === 'n').map((r) => r.value)
    expect(values).toEqual(Array.from({ length: total }, (_, n) => n))
    // the raw messages too, for the message log
    const payloads = messages.values.filter((e) => e.topic === 'devices/counter/telemetry').map((e) => (JSON.parse(e.payload) as { n: number }).n)
    expect(payloads).toEqual(Array.from({ length: total }, (_, n) => n))
    client.disconnect()
  }, 30_000)
})
