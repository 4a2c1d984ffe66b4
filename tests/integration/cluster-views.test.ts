// Two nodes of a cluster in this process, on one Debian redis-server: a view's readings reach its
// clients on every node exactly once, from the node the device publishes to, and its devices'
// state from their own node, which mirrors what that node shared.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { DeviceState, Reading } from '../../protocol/index.ts'
import { redisInstalled, startRedis, type RedisServer } from '../helpers/redis.ts'
import { collect, startStack, type Stack } from '../helpers/stack.ts'

let redis: RedisServer
let a: Stack
let b: Stack

beforeAll(async () => {
  if (!redisInstalled()) throw new Error('these tests need redis-server: apt-get install redis-server')
  redis = await startRedis()
  a = await startStack({ cluster: { url: redis.url, nodeId: 'views-a' } })
  b = await startStack({ cluster: { url: redis.url, nodeId: 'views-b' } })
}, 60_000)
afterAll(async () => {
  await b?.close()
  await a?.close()
  await redis?.close()
})

async function follow(node: Stack, devices: string[]) {
  const socket = await node.live({ auth: { view: { filters: [], devices: false, readings: devices } } })
  return collect<Reading>((push) => socket.on('readings', (batch) => batch.forEach(push)))
}

describe('a cluster and views', () => {
  it('sends each reading of a device once to every node\'s clients that show it, and to no one else', async () => {
    const onB = await follow(b, ['meter'])
    const onA = await follow(a, ['meter'])
    const otherOnB = await follow(b, ['other'])
    const shownOnB = await b.live({ auth: { view: { filters: [], devices: ['meter'], readings: false } } })
    const states = collect<DeviceState>((push) => shownOnB.on('device', (batch) => batch.forEach(push)))
    const device = await a.mqtt({ clientId: 'meter' })
    // b's groups reach a through Redis: until then a does not know to send b their readings
    const warm = (v: Reading[]) => v.some((r) => r.metric === 'warm')
    for (let i = 0; !warm(onB.values) || !warm(otherOnB.values); i++) {
      if (i === 50) throw new Error("no reading from node a reached b's clients within 10 s: a did not learn of b's groups")
      await device.publishAsync('devices/meter/telemetry', JSON.stringify({ warm: i }))
      await device.publishAsync('devices/other/telemetry', JSON.stringify({ warm: i }))
      await new Promise((r) => setTimeout(r, 200))
    }
    const total = 30
    for (let n = 1; n <= total; n++) {
      await device.publishAsync('devices/meter/telemetry', JSON.stringify({ n }))
      await device.publishAsync('devices/other/telemetry', JSON.stringify({ n }))
    }
    const counted = (v: Reading[]) => v.filter((r) => r.metric === 'n').map((r) => r.value)
    await onB.until(`all ${total} readings on b`, (v) => counted(v).length >= total)
    await onA.until(`all ${total} readings on a`, (v) => counted(v).length >= total)
    await otherOnB.until(`all ${total} readings of other on b`, (v) => counted(v).length >= total)
    await new Promise((r) => setTimeout(r, 300))
    const all = Array.from({ length: total }, (_, i) => i + 1)
    expect(counted(onB.values), 'on b, once each').toEqual(all)
    expect(counted(onA.values), 'on a, once each').toEqual(all)
    expect(new Set(onB.values.map((r) => r.device))).toEqual(new Set(['meter']))
    expect(new Set(otherOnB.values.map((r) => r.device))).toEqual(new Set(['other']))
    expect(counted(otherOnB.values)).toEqual(all)
    // values-only changes go out once a second
    await states.until(`meter with n = ${total} on b`, (v) => v.some((d) => d.metrics.n?.value === total), 3000)
    expect(new Set(states.values.map((d) => d.id)), 'the devices the view names').toEqual(new Set(['meter']))
    expect(b.app.registry.get('meter'), "b's registry has a's device").toMatchObject({ online: true, clientId: 'meter', metrics: { n: { value: total } } })
    expect(b.app.registry.topics().map((t) => t.topic), "but not its messages: b's broker never gave them to it").toEqual([])
  }, 30_000)
})
