import mqtt from 'mqtt'
import { afterEach, describe, expect, it } from 'vitest'
import type { Reading } from '../../protocol/index.ts'
import { cleanUp, mosquitto, stack, subscribed } from '../helpers/external.ts'
import { envelopes, within, type Stack } from '../helpers/stack.ts'

afterEach(cleanUp)

/** Every reading a node's registry hands its store, and every one it shows. */
function count(s: Stack) {
  const seen = { stored: [] as Reading[], shown: [] as Reading[] }
  s.app.registry.on('update', (_changed, shown, _values, stored) => {
    seen.shown.push(...shown)
    seen.stored.push(...stored)
  })
  return seen
}

describe('several Pulseboards on one mosquitto, with --broker-share', () => {
  it('each shows every message, and each message is stored by one of them', async () => {
    const broker = await mosquitto()
    const nodes = [await stack({ externalBroker: { url: broker.url, share: 'pulseboard' } }), await stack({ externalBroker: { url: broker.url, share: 'pulseboard' } })]
    // two subscriptions per node: the one it shows, and the shared one it stores
    await subscribed(broker, 'pulseboard-', 4)
    const counts = nodes.map(count)
    const lives = await Promise.all(nodes.map((n) => n.live()))
    const seen = lives.map(envelopes)

    const device = await mqtt.connectAsync(broker.url, { protocolVersion: 5, clientId: 'shared-dev', reconnectPeriod: 0 })
    try {
      // a retained status first: Mosquitto 2.0 hands retained messages to shared subscribers too
      await device.publishAsync('devices/shared-dev/status', 'online', { qos: 1, retain: true })
      for (let i = 0; i < 20; i++) await device.publishAsync('devices/shared-dev/telemetry', JSON.stringify({ n: i }), { qos: 1 })
      for (const s of seen) await s.until('all 21 messages on /live', (v) => v.length >= 21)
      await within(5000, 'every reading stored', (async () => {
        while (counts.reduce((sum, c) => sum + c.stored.length, 0) < 20) await new Promise((r) => setTimeout(r, 50))
      })())
    } finally {
      await device.endAsync(true)
    }

    for (const s of seen) expect(s.values.map((e) => e.topic)).toEqual(['devices/shared-dev/status', ...Array(20).fill('devices/shared-dev/telemetry')])
    for (const c of counts) expect(c.shown.map((r) => r.value)).toEqual([...Array(20).keys()])
    // stored once in all: the broker split them between the nodes, and neither stored all
    const stored = counts.flatMap((c) => c.stored.map((r) => r.value)).sort((a, b) => a - b)
    expect(stored).toEqual([...Array(20).keys()])
    expect(counts.every((c) => c.stored.length > 0 && c.stored.length < 20)).toBe(true)

    // the message log holds each message once across the nodes, the retained status too
    await Promise.all(nodes.map((n) => n.app.store.flush()))
    const logged = (await Promise.all(nodes.map((n) => n.app.store.messages({ limit: 100 })))).flat()
    expect(logged.filter((e) => e.topic === 'devices/shared-dev/telemetry')).toHaveLength(20)
    expect(logged.filter((e) => e.topic === 'devices/shared-dev/status')).toHaveLength(1)
  })
})
