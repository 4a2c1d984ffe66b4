import mqtt, { type IClientOptions, type MqttClient } from 'mqtt'
import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import { emptyConfig, type AccessConfig } from '../../auth/config.ts'
import { hashSecret } from '../../auth/secrets.ts'
import type { HealthReport } from '../../protocol/index.ts'
import { envelopes, mqttMessages, startStack, within, type Stack } from '../helpers/stack.ts'
import { quickHash } from '../helpers/secrets.ts'

/** MQTT with users: CONNACK 4 and 5, client ids kept to their user, and the ACL on publish, subscribe and delivery. */

const PASSWORD = { alice: 'alice-pass-1', bob: 'bob-pass-1', vic: 'vic-pass-1', 'dev-a': 'dev-a-pass-1', 'dev-b': 'dev-b-pass-1' }
const TOKEN = 'pbt_ops.ops-secret-1'
let config: AccessConfig

beforeAll(async () => {
  config = {
    ...emptyConfig(),
    // vic's hash is hashSecret's own, at full cost
    users: { alice: { role: 'admin', password: quickHash(PASSWORD.alice) }, bob: { role: 'operator', password: quickHash(PASSWORD.bob) }, vic: { role: 'viewer', password: await hashSecret(PASSWORD.vic) } },
    devices: { 'dev-a': { password: quickHash(PASSWORD['dev-a']) }, 'dev-b': { password: quickHash(PASSWORD['dev-b']) } },
    tokens: { ops: { role: 'admin', secret: quickHash('ops-secret-1') } },
  }
})

let stack: Stack | undefined
afterEach(async () => {
  await stack?.close()
  stack = undefined
})

async function start(access: AccessConfig = config): Promise<Stack> {
  stack = await startStack({ access })
  return stack
}

type Who = keyof typeof PASSWORD
const as = (who: Who, opts: IClientOptions = {}): IClientOptions => ({ username: who, password: PASSWORD[who], ...opts })

/** The CONNACK return code a connect gets refused with; fails if it connects. */
async function refusal(s: Stack, opts: IClientOptions, url = s.mqttUrl): Promise<number> {
  const client = mqtt.connect(url, { reconnectPeriod: 0, connectTimeout: 5000, ...opts })
  try {
    return await within(5000, 'the broker to refuse the connect', new Promise<number>((resolve, reject) => {
      client.once('connect', () => reject(new Error(`connected, as ${opts.username ?? 'anonymous'}, but should have been refused`)))
      client.once('error', (err) => resolve((err as Error & { code: number }).code))
    }))
  } finally {
    await client.endAsync(true)
  }
}

/** After an attack: someone allowed still connects, publishes and receives. */
async function stillServes(s: Stack): Promise<void> {
  const client = await s.mqtt(as('alice', { clientId: `check-${Math.random().toString(36).slice(2)}` }))
  const topic = `devices/check-${Math.random().toString(36).slice(2)}/telemetry`
  await client.subscribeAsync(topic, { qos: 1 })
  const got = new Promise<string>((resolve) => client.on('message', (t, p) => t === topic && resolve(p.toString())))
  await client.publishAsync(topic, 'still here', { qos: 1 })
  expect(await within(5000, 'the allowed client to receive its own publish', got)).toBe('still here')
  await client.endAsync()
}

/** The SUBACK return codes of one SUBSCRIBE; mqtt.js rejects when any is 0x80, with the SUBACK on the error. */
async function suback(client: MqttClient, subs: string | Record<string, { qos: 0 | 1 | 2 }>): Promise<number[]> {
  try {
    return (await client.subscribeAsync(typeof subs === 'string' ? { [subs]: { qos: 1 } } : subs)).map((g) => g.qos)
  } catch (err) {
    const granted = (err as { packet?: { granted?: number[] } }).packet?.granted
    if (!granted) throw err
    return granted
  }
}

/** PUBACKs a client receives, by message id. */
function pubacks(client: MqttClient): Set<number> {
  const ids = new Set<number>()
  client.on('packetreceive', (packet) => {
    if (packet.cmd === 'puback' && packet.messageId !== undefined) ids.add(packet.messageId)
  })
  return ids
}

async function health(s: Stack): Promise<HealthReport> {
  const res = await fetch(`${s.httpUrl}/api/health`, { headers: { authorization: `Bearer ${TOKEN}` } })
  expect(res.status).toBe(200)
  return (await res.json()) as HealthReport
}

describe('connecting with users', () => {
  it('refuses a client without a user name with CONNACK 5, over TCP and over WebSocket', async () => {
    const s = await start()
    expect(await refusal(s, {})).toBe(5)
    expect(await refusal(s, { clientId: 'anon-ws' }, s.wsMqttUrl)).toBe(5)
    expect(s.app.broker!.stats.clients).toBe(0)
    await stillServes(s)
  })

  it('refuses a wrong password and an unknown user with CONNACK 4, and takes the right one', async () => {
    const s = await start()
    expect(await refusal(s, { username: 'alice', password: 'alice-pass-2' })).toBe(4)
    expect(await refusal(s, { username: 'mallory', password: 'anything' })).toBe(4)
    // a device's password is not a user's, and no password is a wrong one
    expect(await refusal(s, { username: 'dev-a', password: PASSWORD['dev-b'] })).toBe(4)
    const device = await s.mqtt(as('dev-a', { clientId: 'dev-a' }))
    expect(device.connected).toBe(true)
    await stillServes(s)
  })

  it('backs off after repeated failures: CONNACK 5 even for the right password, until the wait is over', async () => {
    const s = await start()
    for (let i = 0; i < 4; i++) expect(await refusal(s, { username: 'bob', password: `guess-${i}` })).toBe(4)
    expect(await refusal(s, as('bob'))).toBe(5)
    // one second after the fourth failure, the right password is let in again
    await within(5000, 'the back-off to end', (async () => {
      for (;;) {
        await new Promise((resolve) => setTimeout(resolve, 250))
        const client = mqtt.connect(s.mqttUrl, { reconnectPeriod: 0, ...as('bob') })
        const ok = await new Promise<boolean>((resolve) => {
          client.once('connect', () => resolve(true))
          client.once('error', () => resolve(false))
        })
        await client.endAsync(true)
        if (ok) return
      }
    })())
    await stillServes(s)
  })

  it("refuses a takeover of another user's client id, and lets a user take its own over", async () => {
    const s = await start()
    const bob = await s.mqtt(as('bob', { clientId: 'bobs-phone' }))
    let bobClosed = false
    bob.on('close', () => (bobClosed = true))

    // vic, and a device, may not take bob's id: CONNACK 5, and bob stays connected
    expect(await refusal(s, as('vic', { clientId: 'bobs-phone' }))).toBe(5)
    expect(await refusal(s, as('dev-a', { clientId: 'bobs-phone' }))).toBe(5)
    expect(s.app.broker!.stats.takeovers).toBe(0)
    await bob.publishAsync('devices/bobs-phone/ping', 'still mine', { qos: 1 })
    expect(bobClosed).toBe(false)

    // bob may: the new connection wins and the old one is closed [MQTT-3.1.4-2]
    const again = await s.mqtt(as('bob', { clientId: 'bobs-phone' }))
    await within(5000, 'the old connection to be closed', new Promise((resolve) => (bobClosed ? resolve(null) : bob.once('close', () => resolve(null)))))
    expect(s.app.broker!.stats.takeovers).toBe(1)
    await again.publishAsync('devices/bobs-phone/ping', 'taken over', { qos: 1 })
    await stillServes(s)
  })
})

describe('the ACL', () => {
  it("acknowledges a device's publish to another device's topic, drops it, and counts it", async () => {
    const s = await start()
    const watcher = await s.mqtt(as('alice', { clientId: 'watcher' }))
    await watcher.subscribeAsync('#', { qos: 1 })
    const seen = mqttMessages(watcher)
    const devB = await s.mqtt(as('dev-b', { clientId: 'dev-b' }))
    await devB.subscribeAsync('devices/dev-b/#', { qos: 1 })
    const seenByB = mqttMessages(devB)
    const live = await s.live({ auth: { token: TOKEN } })
    const seenLive = envelopes(live)
    const before = (await health(s)).mqtt.deniedPublishes

    const devA = await s.mqtt(as('dev-a', { clientId: 'dev-a' }))
    const acked = pubacks(devA)
    // a QoS 1 publish gets its PUBACK, so the client does not resend it forever
    const sent = await devA.publishAsync('devices/dev-b/commands', '{"name":"relay","value":true}', { qos: 1 })
    expect(acked.has(sent!.messageId!)).toBe(true)
    await devA.publishAsync('cmnd/dev-b/POWER', 'ON', { qos: 1, retain: true })
    // its own topics still go through, after the denied ones
    await devA.publishAsync('devices/dev-a/telemetry', '21.5', { qos: 1 })
    await seen.until('the allowed publish at the watcher', (v) => v.some((m) => m.topic === 'devices/dev-a/telemetry'))
    await seenLive.until('the allowed publish on /live', (v) => v.some((e) => e.topic === 'devices/dev-a/telemetry'))
    await watcher.publishAsync('devices/dev-b/marker', 'from alice', { qos: 1 })
    await seenByB.until('the marker at dev-b', (v) => v.some((m) => m.topic === 'devices/dev-b/marker'))

    expect(seen.values.map((m) => m.topic)).not.toContain('devices/dev-b/commands')
    expect(seen.values.map((m) => m.topic)).not.toContain('cmnd/dev-b/POWER')
    expect(seenByB.values.map((m) => m.topic)).toEqual(['devices/dev-b/marker'])
    expect(seenLive.values.map((e) => e.topic).filter((t) => t.includes('dev-b') && t !== 'devices/dev-b/marker')).toEqual([])
    expect(s.app.broker!.stats.deniedPublishes).toBe(2)
    expect((await health(s)).mqtt.deniedPublishes).toBe(before + 2)
    // the retained flag of a denied publish did not leave a retained message behind
    const retained = []
    for await (const m of s.app.source.retained()) retained.push(m.topic)
    expect(retained).toEqual([])
    expect(s.app.registry.get('dev-b')).toBeUndefined()
    await stillServes(s)
  })

  it("refuses a device's subscription to another device's topics with 0x80, alone and beside an allowed one", async () => {
    const s = await start()
    const devA = await s.mqtt(as('dev-a', { clientId: 'dev-a' }))
    expect(await suback(devA, 'devices/dev-b/#')).toEqual([128])
    expect(await suback(devA, '#')).toEqual([128])
    expect(await suback(devA, 'devices/+/telemetry')).toEqual([128])

    // one SUBSCRIBE, two filters: the allowed one granted, the other 0x80 [MQTT-3.9.3]
    expect(await suback(devA, { 'devices/dev-a/#': { qos: 1 }, 'devices/dev-b/#': { qos: 1 } })).toEqual([1, 128])
    const seen = mqttMessages(devA)
    const devB = await s.mqtt(as('dev-b', { clientId: 'dev-b' }))
    await devB.publishAsync('devices/dev-b/telemetry', 'secret', { qos: 1 })
    await devA.publishAsync('devices/dev-a/telemetry', 'mine', { qos: 1 })
    await seen.until("dev-a's own message", (v) => v.some((m) => m.payload === 'mine'))
    expect(seen.values.map((m) => m.payload)).toEqual(['mine'])
    // nobody may subscribe to where denied publishes are sent
    const alice = await s.mqtt(as('alice', { clientId: 'alice' }))
    expect(await suback(alice, '$pulseboard/#')).toEqual([128])
    await stillServes(s)
  })

  it('delivers retained messages only where the subscriber may read them', async () => {
    const s = await start({ ...config, roles: { viewer: [{ access: 'read', topic: 'devices/dev-a/#' }] } })
    const alice = await s.mqtt(as('alice', { clientId: 'alice' }))
    await alice.publishAsync('devices/dev-a/status', 'a-online', { qos: 1, retain: true })
    await alice.publishAsync('devices/dev-b/status', 'b-online', { qos: 1, retain: true })

    // a device gets its own retained state, and a refused filter brings none of the other's
    const devA = await s.mqtt(as('dev-a', { clientId: 'dev-a' }))
    const seenA = mqttMessages(devA)
    expect(await suback(devA, { 'devices/+/status': { qos: 1 }, 'devices/dev-a/#': { qos: 1 } })).toEqual([128, 1])
    await seenA.until("dev-a's retained status", (v) => v.length > 0)

    // a viewer whose role reads devices/dev-a/# only
    const vic = await s.mqtt(as('vic', { clientId: 'vic' }))
    const seenVic = mqttMessages(vic)
    expect(await suback(vic, 'devices/#')).toEqual([128])
    expect(await suback(vic, 'devices/dev-a/+')).toEqual([1])
    await seenVic.until("dev-a's retained status at the viewer", (v) => v.length > 0)

    // the admin sees both, which shows both were retained
    const seenAlice = mqttMessages(alice)
    await alice.subscribeAsync('devices/+/status', { qos: 1 })
    await seenAlice.until('both retained', (v) => v.length === 2)

    // a later barrier: a publish each may read arrives after anything retained would have
    await alice.publishAsync('devices/dev-a/status', 'a-again', { qos: 1 })
    await seenA.until('the new status at dev-a', (v) => v.some((m) => m.payload === 'a-again'))
    await seenVic.until('the new status at the viewer', (v) => v.some((m) => m.payload === 'a-again'))
    expect(seenA.values.map((m) => [m.topic, m.payload, m.retain])).toEqual([
      ['devices/dev-a/status', 'a-online', true],
      ['devices/dev-a/status', 'a-again', false],
    ])
    expect(seenVic.values.map((m) => m.payload)).toEqual(['a-online', 'a-again'])
    await stillServes(s)
  })

  it('checks every delivery: a subscription granted before the rules narrowed gets only what is still readable', async () => {
    const s = await start()
    const bob = await s.mqtt(as('bob', { clientId: 'bob' }))
    await bob.subscribeAsync('#', { qos: 1 })
    const seen = mqttMessages(bob)
    // the config changes under a running server, as when the file is edited
    s.app.access.reload({ ...config, roles: { operator: [{ access: 'readwrite', topic: 'devices/dev-a/#' }] } })
    const alice = await s.mqtt(as('alice', { clientId: 'alice' }))
    await alice.publishAsync('devices/dev-b/telemetry', 'not for bob', { qos: 1 })
    await alice.publishAsync('devices/dev-a/telemetry', 'for bob', { qos: 1 })
    await seen.until('the readable message', (v) => v.some((m) => m.payload === 'for bob'))
    expect(seen.values.map((m) => m.payload)).toEqual(['for bob'])
    await stillServes(s)
  })

  it("drops a device's last will on another device's topic", async () => {
    const s = await start()
    const devB = await s.mqtt(as('dev-b', { clientId: 'dev-b' }))
    await devB.subscribeAsync('devices/dev-b/#', { qos: 1 })
    const seenByB = mqttMessages(devB)
    const devA = await s.mqtt(as('dev-a', { clientId: 'dev-a', will: { topic: 'devices/dev-b/status', payload: Buffer.from('offline'), qos: 1, retain: true } }))
    const gone = new Promise((resolve) => s.app.broker!.once('disconnect', resolve))
    devA.stream.destroy() // not a DISCONNECT: the broker publishes the will
    await within(5000, 'the broker to see dev-a go', gone)
    await within(5000, 'the denied will to be counted', (async () => {
      while (s.app.broker!.stats.deniedPublishes < 1) await new Promise((resolve) => setTimeout(resolve, 20))
    })())
    const alice = await s.mqtt(as('alice', { clientId: 'alice' }))
    await alice.publishAsync('devices/dev-b/marker', 'm', { qos: 1 })
    await seenByB.until('the marker', (v) => v.length > 0)
    expect(seenByB.values.map((m) => m.topic)).toEqual(['devices/dev-b/marker'])
    const retained = []
    for await (const m of s.app.source.retained()) retained.push(m.topic)
    expect(retained).toEqual([])
    await stillServes(s)
  })
})

describe('without users', () => {
  it('stays open: anonymous clients publish and subscribe anywhere', async () => {
    const s = await start(emptyConfig())
    const anyone: MqttClient = await s.mqtt()
    expect((await anyone.subscribeAsync('#')).map((g) => g.qos)).toEqual([0])
    const seen = mqttMessages(anyone)
    await anyone.publishAsync('devices/dev-b/commands', 'x', { qos: 1 })
    await seen.until('the publish', (v) => v.length > 0)
    expect(s.app.broker!.stats.deniedPublishes).toBe(0)
  })
})

describe('persistent sessions', () => {
  it("keeps an offline device's persistent session and client id from another device", async () => {
    const s = await start()
    const devA = await s.mqtt(as('dev-a', { clientId: 'dev-a', clean: false }))
    await devA.subscribeAsync('devices/dev-a/commands', { qos: 1 })
    await devA.endAsync()
    const alice = await s.mqtt(as('alice', { clientId: 'alice' }))
    await alice.publishAsync('devices/dev-a/commands', 'queued for dev-a', { qos: 1 })
    // dev-b resumes dev-a's session while dev-a sleeps; its queue is dropped at dev-b (authorizeForward)
    const squatter = mqtt.connect(s.mqttUrl, { reconnectPeriod: 0, clean: false, ...as('dev-b', { clientId: 'dev-a' }) })
    const squatted = await within(5000, 'the squatter to be answered', new Promise<boolean>((resolve) => {
      squatter.once('connect', () => resolve(true))
      squatter.once('error', () => resolve(false))
    }))
    try {
      // the device comes back: it should get its own id and its queued command
      const back = mqtt.connect(s.mqttUrl, { reconnectPeriod: 0, clean: false, ...as('dev-a', { clientId: 'dev-a' }) })
      const got = await within(5000, 'dev-a to be answered', new Promise<string>((resolve) => {
        back.once('error', (err) => resolve(`refused: ${(err as Error).message}`))
        back.once('message', (_t, p) => resolve(p.toString()))
      })).finally(() => back.endAsync(true))
      expect({ squatted, got }).toEqual({ squatted: false, got: 'queued for dev-a' })
    } finally {
      await squatter.endAsync(true)
    }
  })
})
