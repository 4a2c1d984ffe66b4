import mqtt, { type MqttClient, type IClientOptions } from 'mqtt'
import { io as connectSocket, type Socket } from 'socket.io-client'
import { createPulseboard, type Pulseboard, type PulseboardOptions } from '../../server/pulseboard.ts'
import {
  LIVE_NAMESPACE,
  type ChatClientToServerEvents,
  type ChatServerToClientEvents,
  type Envelope,
  type LiveAuth,
  type LiveClientToServerEvents,
  type LiveServerToClientEvents,
} from '../../protocol/index.ts'

export type ChatClient = Socket<ChatServerToClientEvents, ChatClientToServerEvents>
export type LiveClient = Socket<LiveServerToClientEvents, LiveClientToServerEvents>

export interface Stack {
  app: Pulseboard
  /** Where devices connect: the embedded broker, or the external one (`externalBroker`). */
  mqttUrl: string
  wsMqttUrl: string
  httpUrl: string
  mqttPort: number
  port: number
  /** An MQTT client that is connected; closed with the stack. */
  mqtt(opts?: IClientOptions): Promise<MqttClient>
  /** A socket.io client on `/` that is connected; closed with the stack. */
  chat(): Promise<ChatClient>
  /**
   * A socket.io client on `/live` that is connected; closed with the stack.
   * `setup` runs before it connects, to catch what the server sends at once (the devices snapshot).
   */
  live(opts?: { auth?: LiveAuth; setup?: (socket: LiveClient) => void }): Promise<LiveClient>
  close(): Promise<void>
}

/** Starts broker, HTTP server and bridge on free ports of 127.0.0.1; on an external broker with `externalBroker`. */
export async function startStack(opts: PulseboardOptions = {}): Promise<Stack> {
  const app = await createPulseboard({ mqttPort: 0, port: 0, host: '127.0.0.1', ...opts })
  const listening = await app.listen()
  const { port } = listening
  const external = opts.externalBroker && new URL(opts.externalBroker.url)
  const mqttPort = listening.mqttPort ?? Number(external?.port)
  const httpUrl = `http://127.0.0.1:${port}`
  const mqttUrl = external ? `${external.protocol}//127.0.0.1:${mqttPort}` : `mqtt://127.0.0.1:${mqttPort}`
  const closers: (() => Promise<void> | void)[] = []

  async function connectMqtt(clientOpts: IClientOptions = {}, url = mqttUrl): Promise<MqttClient> {
    const client = mqtt.connect(url, { reconnectPeriod: 0, connectTimeout: 5000, ...clientOpts })
    closers.push(() => client.endAsync(true))
    await within(5000, `MQTT client to connect to ${url}`, new Promise((resolve, reject) => {
      client.once('connect', resolve)
      client.once('error', reject)
    }))
    return client
  }

  async function connectIo<T extends Socket>(namespace: string, auth: object = {}, setup?: (socket: T) => void): Promise<T> {
    const socket = connectSocket(httpUrl + namespace, { transports: ['websocket'], reconnection: false, autoConnect: false, auth }) as T
    closers.push(() => void socket.disconnect())
    setup?.(socket)
    socket.connect()
    await within(5000, `socket.io client to connect to ${namespace}`, new Promise((resolve, reject) => {
      socket.once('connect', () => resolve(undefined))
      socket.once('connect_error', reject)
    }))
    return socket
  }

  return {
    app,
    mqttUrl,
    wsMqttUrl: `ws://127.0.0.1:${port}/mqtt`,
    httpUrl,
    mqttPort,
    port,
    mqtt: (clientOpts) => connectMqtt(clientOpts),
    chat: () => connectIo<ChatClient>('/'),
    live: (opts = {}) => connectIo<LiveClient>(LIVE_NAMESPACE, opts.auth, opts.setup),
    async close() {
      for (const close of closers.reverse()) await close()
      await app.close()
    },
  }
}

/** Rejects with "timed out waiting for <what>" unless `promise` settles first. */
export function within<T>(ms: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms)
    }),
  ]).finally(() => clearTimeout(timer))
}

/** Collects the values an event delivers, and waits until enough match. */
export function collect<T>(
  on: (listener: (value: T) => void) => void,
): { values: T[]; until(what: string, ok: (values: T[]) => boolean, ms?: number): Promise<T[]> } {
  const values: T[] = []
  const waiters = new Set<() => void>()
  on((value) => {
    values.push(value)
    for (const wake of waiters) wake()
  })
  return {
    values,
    until(what, ok, ms = 5000) {
      return within(ms, what, new Promise<T[]>((resolve) => {
        const check = () => {
          if (!ok(values)) return
          waiters.delete(check)
          resolve(values)
        }
        waiters.add(check)
        check()
      }))
    },
  }
}

/** Every envelope a `/live` client receives, whether sent alone or in a batch. */
export function envelopes(socket: LiveClient) {
  return collect<Envelope>((push) => {
    socket.on('message', push)
    socket.on('messages', (batch) => batch.forEach(push))
  })
}

/** Every message an MQTT client receives. */
export function mqttMessages(client: MqttClient) {
  return collect<{ topic: string; payload: string; qos: number; retain: boolean }>((push) =>
    client.on('message', (topic, payload, packet) =>
      push({ topic, payload: payload.toString(), qos: packet.qos, retain: packet.retain }),
    ),
  )
}
