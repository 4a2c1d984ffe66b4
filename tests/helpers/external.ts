import mqtt, { type IClientOptions, type IPublishPacket, type MqttClient } from 'mqtt'
import type { BrokerStatus, DeviceState } from '../../protocol/index.ts'
import type { PulseboardOptions } from '../../server/pulseboard.ts'
import { startMosquitto, type Mosquitto, type MosquittoOptions } from './mosquitto.ts'
import { killAll } from './process.ts'
import { collect, startStack, within, type LiveClient, type Stack } from './stack.ts'

// What the external-mode tests (tests/interop/external*.test.ts) share: a mosquitto per test,
// Pulseboard on it, MQTT and /live clients, all closed by `cleanUp` in afterEach.

const brokers: Mosquitto[] = []
const stacks: Stack[] = []
const clients: MqttClient[] = []
const closers: (() => void)[] = []

/** Ends child processes, clients, Pulseboards and brokers, in that order. */
export async function cleanUp(): Promise<void> {
  await killAll()
  for (const close of closers.splice(0)) close()
  await Promise.all(clients.splice(0).map((c) => c.endAsync(true)))
  for (const s of stacks.splice(0).reverse()) await s.close()
  await Promise.all(brokers.splice(0).map((b) => b.close()))
}

/** Runs `close` at `cleanUp`, before clients and servers close. */
export function onCleanUp(close: () => void): void {
  closers.push(close)
}

/** This test's own mosquitto. */
export async function mosquitto(opts: MosquittoOptions = {}): Promise<Mosquitto> {
  const broker = await startMosquitto(opts)
  brokers.push(broker)
  return broker
}

/** A stack closed at `cleanUp`. */
export async function stack(opts: PulseboardOptions = {}): Promise<Stack> {
  const s = await startStack(opts)
  stacks.push(s)
  return s
}

/**
 * Pulseboard in process on `broker`, once mosquitto has acknowledged its subscriptions: what is
 * published next reaches it.
 */
export async function external(
  broker: Mosquitto,
  opts: { username?: string; password?: string; commandTimeoutMs?: number } = {},
): Promise<Stack> {
  const { commandTimeoutMs, ...credentials } = opts
  const s = await stack({ externalBroker: { url: broker.url, ...credentials }, ...(commandTimeoutMs !== undefined && { commandTimeoutMs }) })
  await subscribed(broker, 'pulseboard-')
  return s
}

/** How many times mosquitto acknowledged a subscription of a client whose id starts with `clientId`. */
export function subacks(broker: Mosquitto, clientId: string): number {
  return broker.log().split('\n').filter((l) => l.includes(`Sending SUBACK to ${clientId}`)).length
}

/** Waits until mosquitto has acknowledged subscriptions of that client `times` in all (its log says so). */
export function subscribed(broker: Mosquitto, clientId: string, times = 1, ms = 5000): Promise<void> {
  return within(ms, `mosquitto to acknowledge ${clientId}'s subscription`, new Promise<void>((resolve) => {
    const poll = () => (subacks(broker, clientId) >= times ? resolve() : void setTimeout(poll, 20))
    poll()
  }))
}

/** A connected mqtt.js client that does not reconnect, closed at `cleanUp`. */
export async function client(url: string, opts: IClientOptions = {}): Promise<MqttClient> {
  const c = mqtt.connect(url, { reconnectPeriod: 0, connectTimeout: 5000, ...opts })
  clients.push(c)
  await within(5000, `an MQTT client to connect to ${url}`, new Promise((resolve, reject) => {
    c.once('connect', resolve)
    c.once('error', reject)
  }))
  return c
}

/** Every message an MQTT client receives, with its MQTT 5 properties. */
export function received(c: MqttClient) {
  return collect<{ topic: string; payload: string; properties: IPublishPacket['properties'] }>((push) =>
    c.on('message', (topic, payload, packet) => push({ topic, payload: payload.toString(), properties: packet.properties })),
  )
}

/** The devices a /live client hears of: the snapshot on connect, then each change. */
export function deviceStates(socket: LiveClient) {
  return collect<DeviceState>((push) => {
    socket.on('devices', (all) => all.forEach(push))
    socket.on('device', (changed) => changed.forEach(push))
  })
}

/** A /live client of `s`, with the devices and broker statuses it hears from the moment it connects. */
export async function watch(s: Stack) {
  let devices!: ReturnType<typeof deviceStates>
  let statuses!: ReturnType<typeof collect<BrokerStatus>>
  const live = await s.live({
    setup: (socket) => {
      devices = deviceStates(socket)
      statuses = collect<BrokerStatus>((push) => socket.on('broker', push))
    },
  })
  return { live, devices, statuses }
}

/** GET /api/health's broker status. */
export async function healthBroker(s: Stack): Promise<BrokerStatus> {
  const res = await within(5000, 'GET /api/health', fetch(`${s.httpUrl}/api/health`))
  return ((await res.json()) as { broker: BrokerStatus }).broker
}
