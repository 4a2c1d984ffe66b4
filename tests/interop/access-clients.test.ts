import { randomBytes } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import { afterEach, describe, expect, it } from 'vitest'
import { emptyConfig, type AccessConfig } from '../../auth/config.ts'
import { collect, mqttMessages, startStack, within, type Stack } from '../helpers/stack.ts'
import { killAll, run } from '../helpers/process.ts'
import { quickHash } from '../helpers/secrets.ts'

/** Third-party clients against a server with users: Debian's mosquitto_pub/sub, and the tutorial's Python clients. */

const PYTHON = '/usr/bin/python3' // Debian's, which sees python3-socketio
const seed = (script: string) => fileURLToPath(new URL(`./seed/${script}`, import.meta.url))

const PASSWORD = { alice: 'alice-pass-1', 'dev-a': 'dev-a-pass-1', 'dev-b': 'dev-b-pass-1' }
const TOKEN = 'pbt_ops.ops-secret-1'
const config = (change: Partial<AccessConfig> = {}): AccessConfig => ({
  ...emptyConfig(),
  users: { alice: { role: 'admin', password: quickHash(PASSWORD.alice) } },
  devices: { 'dev-a': { password: quickHash(PASSWORD['dev-a']) }, 'dev-b': { password: quickHash(PASSWORD['dev-b']) } },
  tokens: { ops: { role: 'operator', secret: quickHash('ops-secret-1') } },
  ...change,
})

let stack: Stack | undefined
afterEach(async () => {
  await killAll()
  await stack?.close()
  stack = undefined
})
async function start(access: AccessConfig = config()): Promise<Stack> {
  stack = await startStack({ access })
  return stack
}

/** After an attack: an allowed MQTT client and a `/live` client with a token are still served. */
async function stillServes(s: Stack): Promise<void> {
  const alice = await s.mqtt({ username: 'alice', password: PASSWORD.alice, clientId: `check-${randomBytes(4).toString('hex')}` })
  await alice.subscribeAsync('devices/check/#', { qos: 1 })
  const got = new Promise<string>((resolve) => alice.on('message', (_t, p) => resolve(p.toString())))
  await alice.publishAsync('devices/check/telemetry', 'still here', { qos: 1 })
  expect(await within(5000, 'the allowed client to receive its publish', got)).toBe('still here')
  const live = await s.live({ auth: { token: TOKEN } })
  expect(await live.emitWithAck('message', { topic: 'devices/check/x', payload: '1' })).toMatchObject({ ok: true })
}

const mosquitto = (s: Stack, program: 'mosquitto_pub' | 'mosquitto_sub', args: string[]) => run(program, ['-h', '127.0.0.1', '-p', String(s.mqttPort), ...args])

describe("Debian's mosquitto clients", () => {
  it('are refused with CONNACK 5 without credentials and 4 with a wrong password, and exit with that code', async () => {
    const s = await start()
    const anonymous = mosquitto(s, 'mosquitto_pub', ['-t', 'devices/x/telemetry', '-m', '1'])
    expect(await within(5000, 'mosquitto_pub to exit', anonymous.exited)).toBe(5)
    expect(anonymous.stderr.values).toContain('Connection error: Connection Refused: not authorised.')

    const wrong = mosquitto(s, 'mosquitto_pub', ['-u', 'dev-a', '-P', 'dev-a-pass-2', '-t', 'devices/dev-a/telemetry', '-m', '1'])
    expect(await within(5000, 'mosquitto_pub to exit', wrong.exited)).toBe(4)
    expect(wrong.stderr.values).toContain('Connection error: Connection Refused: bad user name or password.')

    // the right one publishes, and the message arrives
    const alice = await s.mqtt({ username: 'alice', password: PASSWORD.alice })
    await alice.subscribeAsync('devices/dev-a/#', { qos: 1 })
    const seen = mqttMessages(alice)
    const right = mosquitto(s, 'mosquitto_pub', ['-u', 'dev-a', '-P', PASSWORD['dev-a'], '-i', 'dev-a', '-q', '1', '-t', 'devices/dev-a/telemetry', '-m', '21.5'])
    expect(await within(5000, 'mosquitto_pub to exit', right.exited)).toBe(0)
    await seen.until('the publish', (v) => v.length > 0)
    expect(seen.values[0]).toMatchObject({ topic: 'devices/dev-a/telemetry', payload: '21.5' })
    await stillServes(s)
  })

  it("get a PUBACK for a publish to another device's topic, which is dropped; and 0x80 for its filters", async () => {
    const s = await start()
    const devB = await s.mqtt({ username: 'dev-b', password: PASSWORD['dev-b'], clientId: 'dev-b' })
    await devB.subscribeAsync('devices/dev-b/#', { qos: 1 })
    const seenByB = mqttMessages(devB)

    // -q 1: mosquitto_pub exits 0 only once it has its PUBACK
    const pub = mosquitto(s, 'mosquitto_pub', ['-u', 'dev-a', '-P', PASSWORD['dev-a'], '-i', 'dev-a', '-q', '1', '-t', 'devices/dev-b/commands', '-m', 'hijack'])
    expect(await within(5000, 'mosquitto_pub to exit', pub.exited)).toBe(0)
    expect(s.app.broker!.stats.deniedPublishes).toBe(1)

    // all filters denied: mosquitto_sub says so
    const denied = mosquitto(s, 'mosquitto_sub', ['-u', 'dev-a', '-P', PASSWORD['dev-a'], '-i', 'dev-a', '-t', 'devices/dev-b/#', '-t', '#'])
    await within(5000, 'mosquitto_sub to report the refusal', denied.stderr.until('the refusal', (l) => l.includes('All subscription requests were denied.')))
    await denied.kill()
    // one denied, one granted, in one SUBSCRIBE; it prints (at exit: stdout is a pipe) the SUBACK and the one message it may read
    const subscribed = new Promise((resolve) => s.app.broker!.aedes.once('subscribe', resolve))
    const mixed = mosquitto(s, 'mosquitto_sub', ['-d', '-v', '-C', '1', '-u', 'dev-a', '-P', PASSWORD['dev-a'], '-i', 'dev-a', '-q', '1', '-t', 'devices/dev-b/#', '-t', 'devices/dev-a/#'])
    await within(5000, 'mosquitto_sub to subscribe', subscribed)
    const alice = await s.mqtt({ username: 'alice', password: PASSWORD.alice })
    await alice.publishAsync('devices/dev-b/marker', 'from alice', { qos: 1 })
    await alice.publishAsync('devices/dev-a/hello', 'for dev-a', { qos: 1 })
    expect(await within(5000, 'mosquitto_sub to exit after one message', mixed.exited)).toBe(0)
    expect(mixed.stdout.values).toContain('Subscribed (mid: 1): 128, 1')
    expect(mixed.stdout.values).toContain('devices/dev-a/hello for dev-a')
    expect(mixed.stdout.values.filter((l) => l.includes('marker'))).toEqual([])

    // dev-b got alice's marker and nothing dev-a sent
    await seenByB.until('the marker', (v) => v.length > 0)
    expect(seenByB.values.map((m) => m.payload)).toEqual(['from alice'])
    await stillServes(s)
  })
})

describe("the tutorial's sender.py and receiver.py", () => {
  /** Runs one of the seed's scripts, unchanged, against the test server. */
  const startSeed = (s: Stack, script: 'sender.py' | 'receiver.py') => run(PYTHON, ['-u', seed('with_url.py'), s.httpUrl, seed(script)])

  it('are refused once users exist, and the server keeps serving', async () => {
    const s = await start()
    const joined = collect<unknown>((push) => s.app.bridge.chat.on('connection', push))
    const [receiver, sender] = [startSeed(s, 'receiver.py'), startSeed(s, 'sender.py')]
    for (const child of [receiver, sender]) {
      expect(await within(15_000, 'the seed script to give up', child.exited)).toBe(1)
      expect(child.stderr.values.at(-1)).toBe('socketio.exceptions.ConnectionError: One or more namespaces failed to connect')
    }
    expect(joined.values).toEqual([])
    await stillServes(s)
  })

  it('work when the config lets anonymous clients operate', async () => {
    const s = await start(config({ anonymous: { role: 'operator' } }))
    const connected = collect<unknown>((push) => s.app.bridge.chat.on('connection', push))
    const receiver = startSeed(s, 'receiver.py')
    await within(15_000, 'receiver.py to connect', connected.until('receiver.py', (v) => v.length === 1, 15_000))
    const device = await s.mqtt({ username: 'dev-a', password: PASSWORD['dev-a'], clientId: 'dev-a' })
    await device.publishAsync('devices/dev-a/telemetry', '21.5', { qos: 1 })
    await receiver.stdout.until('receiver.py to print it', (l) => l.includes('receive message : 21.5'))

    const subscriber = await s.mqtt({ username: 'alice', password: PASSWORD.alice })
    await subscriber.subscribeAsync('messages', { qos: 1 })
    const text = new Promise<string>((resolve) => subscriber.on('message', (_t, p) => resolve(p.toString())))
    const sender = startSeed(s, 'sender.py')
    await within(15_000, 'sender.py to connect', connected.until('sender.py', (v) => v.length === 2, 15_000))
    sender.process.stdin.write('typed into the seed sender\n')
    expect(await within(10_000, 'the MQTT subscriber to get the typed text', text)).toBe('typed into the seed sender')
    await receiver.stdout.until('receiver.py to print the typed text', (l) => l.includes('receive message : typed into the seed sender'))
    // an anonymous MQTT client operates too, as the config says; /live without a key as well
    const anonymous = await s.mqtt()
    expect(anonymous.connected).toBe(true)
    expect(s.app.bridge.live.sockets.size).toBe(0)
    const live = await s.live()
    expect(live.connected).toBe(true)
    await stillServes(s)
  })
})
