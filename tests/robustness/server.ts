import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt'
import { io } from 'socket.io-client'
import { expect } from 'vitest'
import { LIVE_NAMESPACE, type Envelope } from '../../protocol/index.ts'
import { memoryBudget, type LimitValues } from '../../cli/limits.ts'
import { readConfig } from '../../cli/start.ts'
import { pulseboard, type Child } from '../helpers/process.ts'
import { collect, envelopes, within, type LiveClient } from '../helpers/stack.ts'

/**
 * A real `pulseboard start` in its own process, so an attack hits exactly what
 * users run and its memory can be read from /proc.
 */
export interface Target {
  child: Child
  httpUrl: string
  mqttUrl: string
  mqttPort: number
  port: number
  /** Resident memory right after start, before any attack. */
  idleRss: number
  /** The documented worst case for the limits this server runs with: idle plus the sum of the bounds. */
  worstRss: number
  rss(): number
  health(): Promise<Health>
  /** MQTT clients that are closed with the target. */
  mqtt(opts?: IClientOptions): Promise<MqttClient>
  close(): Promise<void>
}

export interface Health {
  usage: Record<string, number>
  limits: Record<string, number>
  bridge: Record<string, number>
  mqtt: { clients: number; messagesIn: number }
}

export async function startTarget(args: string[] = []): Promise<Target> {
  // the store on, as users run it, in a directory of its own
  const dataDir = mkdtempSync(path.join(tmpdir(), 'pulseboard-robustness-'))
  const argv = ['--port', '0', '--mqtt-port', '0', '--host', '127.0.0.1', '--log-level', 'error', '--data-dir', dataDir, ...args]
  const child = pulseboard(['start', ...argv])
  const lines = await child.stdout.until('pulseboard start to print its addresses', (l) => l.some((x) => x.includes('mqtt://')), 20_000)
  const port = Number(/http:\/\/127\.0\.0\.1:(\d+)\//.exec(lines.join('\n'))?.[1])
  const mqttPort = Number(/mqtt:\/\/127\.0\.0\.1:(\d+)/.exec(lines.join('\n'))?.[1])
  const httpUrl = `http://127.0.0.1:${port}`
  const mqttUrl = `mqtt://127.0.0.1:${mqttPort}`
  const pid = child.process.pid!
  const rss = () => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) * 1024
  const limits: LimitValues = readConfig(argv, {})
  const idleRss = rss()
  const clients: MqttClient[] = []
  return {
    child,
    httpUrl,
    mqttUrl,
    mqttPort,
    port,
    idleRss,
    worstRss: idleRss + memoryBudget(limits).total,
    rss,
    async health() {
      const res = await fetch(`${httpUrl}/api/health`)
      expect(res.status).toBe(200)
      return (await res.json()) as Health
    },
    async mqtt(opts = {}) {
      const client = mqtt.connect(mqttUrl, { reconnectPeriod: 0, connectTimeout: 5000, ...opts })
      clients.push(client)
      await within(5000, 'an MQTT client to connect', new Promise((resolve, reject) => {
        client.once('connect', resolve)
        client.once('error', reject)
      }))
      return client
    },
    async close() {
      await Promise.all(clients.map((c) => c.endAsync(true)))
      const code = await child.kill()
      rmSync(dataDir, { recursive: true, force: true })
      expect(code, 'pulseboard start to exit cleanly on SIGTERM').toBe(0)
    },
  }
}

/** Connects a `/live` client (websocket only, no reconnection). */
export function live(target: Target, auth: object = {}): Promise<LiveClient> {
  const socket: LiveClient = io(target.httpUrl + LIVE_NAMESPACE, { transports: ['websocket'], reconnection: false, auth })
  return within(5000, 'a /live client to connect', new Promise((resolve, reject) => {
    socket.once('connect', () => resolve(socket))
    socket.once('connect_error', reject)
  }))
}

/**
 * After an attack: within one second a fresh MQTT client and a fresh `/live`
 * client are served a message end to end, `/api/health` answers, and the
 * server's memory is under the documented worst case.
 */
export async function canary(target: Target): Promise<void> {
  await within(1000, 'a fresh MQTT client, /live client and /api/health to be served after the attack', (async () => {
    const [subscriber, socket] = await Promise.all([target.mqtt({ clientId: `canary-${Math.random()}` }), live(target, { filters: 'canary/#', devices: false })])
    try {
      await subscriber.subscribeAsync('canary/#')
      const viaSocket = envelopes(socket)
      const viaMqtt = collect<string>((push) => subscriber.on('message', (topic) => push(topic)))
      await subscriber.publishAsync('canary/ping', 'alive')
      await Promise.all([
        viaSocket.until('the canary on /live', (v: Envelope[]) => v.some((e) => e.topic === 'canary/ping'), 1000),
        viaMqtt.until('the canary over MQTT', (v) => v.includes('canary/ping'), 1000),
        target.health(),
      ])
    } finally {
      socket.disconnect()
      await subscriber.endAsync(true)
    }
  })())
  const rss = target.rss()
  expect(rss, `RSS ${mb(rss)} must stay under the documented worst case ${mb(target.worstRss)}`).toBeLessThan(target.worstRss)
}

export const mb = (bytes: number) => `${(bytes / 2 ** 20).toFixed(0)} MiB`

/** Resolves when an MQTT client's connection closes (the server closed it). */
export function closed(client: MqttClient, ms = 5000): Promise<void> {
  return within(ms, 'the server to close the connection', new Promise((resolve) => client.once('close', () => resolve())))
}
