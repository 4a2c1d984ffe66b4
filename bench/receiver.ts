/** A bench role: clients that receive the probes and measure latency, loss and duplicates. */
import net from 'node:net'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import * as hdr from 'hdr-histogram-js'
import mqttPacket from 'mqtt-packet'
import { io, type Socket } from 'socket.io-client'
import { LIVE_NAMESPACE, type Envelope } from '../protocol/index.ts'
import { roleContext } from './ipc.ts'
import { now, readProbe } from './probe.ts'

export type ReceiverKind = 'live' | 'chat' | 'mqtt'

export interface ReceiverConfig {
  kind: ReceiverKind
  httpUrl: string
  host: string
  mqttPort: number
  clients: number
  qos: 0 | 1
}

export interface ReceiverReport {
  type: 'report'
  /** Latency in microseconds, hdr-histogram compressed. */
  histogram: string
  received: number
  duplicates: number
  /** This process's own event-loop delay while it received measured probes, ms: the harness's share of the tail. */
  eventLoopDelay: { p99: number; max: number }
}

const ctx = roleContext<ReceiverConfig>()
const { config } = ctx
const newHistogram = () => hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 600_000_000, numberOfSignificantValueDigits: 3 })

// Only probes sent inside the measured window (m=1) count, whatever this process heard when:
// orders reach the devices and the receivers in no fixed order.
const histogram = newHistogram()
let received = 0
/** Every probe, measured or not: the live progress line. */
let heard = 0
let duplicates = 0
const closers: (() => void)[] = []
const loopDelay = monitorEventLoopDelay({ resolution: 1 })

/** Each client keeps the last sequence number per device, to spot duplicates and reordering. */
function createClientTracker(): (payload: string) => void {
  const lastSeq = new Map<number, number>()
  return (payload) => {
    const probe = readProbe(payload)
    if (!probe) return
    heard++
    const last = lastSeq.get(probe.device) ?? 0
    lastSeq.set(probe.device, Math.max(last, probe.seq))
    if (!probe.measured) return
    if (probe.seq <= last) duplicates++
    // measured from the first probe of the window on
    if (received++ === 0) {
      loopDelay.reset()
      loopDelay.enable()
    }
    histogram.recordValue(Math.max(1, Math.round((now() - probe.sentAt) * 1000)))
  }
}

function socketClient(track: (payload: string) => void): Promise<void> {
  const live = config.kind === 'live'
  // forceNew: every client its own connection, as separate browsers would be
  const socket: Socket = io(config.httpUrl + (live ? LIVE_NAMESPACE : '/'), {
    transports: ['websocket'],
    forceNew: true,
    reconnection: false,
    ...(live && { auth: { view: { devices: false } } }),
  })
  closers.push(() => socket.disconnect())
  if (live) {
    socket.on('message', (e: Envelope) => track(e.payload))
    socket.on('messages', (batch: Envelope[]) => {
      for (const e of batch) track(e.payload)
    })
  } else {
    socket.on('message', (text: string) => track(text))
  }
  return new Promise((resolve, reject) => {
    socket.once('connect', () => resolve())
    socket.once('connect_error', (err) => reject(err))
  })
}

function mqttClient(track: (payload: string) => void, index: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(config.mqttPort, config.host)
    socket.setNoDelay(true)
    closers.push(() => socket.destroy())
    const parser = mqttPacket.parser()
    socket.on('data', (chunk: Buffer) => parser.parse(chunk))
    socket.once('error', reject)
    socket.on('connect', () =>
      socket.write(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId: `bench-rx-${process.pid}-${index}`, keepalive: 0 })),
    )
    parser.on('packet', (packet) => {
      if (packet.cmd === 'connack') {
        socket.write(mqttPacket.generate({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'devices/+/telemetry', qos: config.qos }] }))
      } else if (packet.cmd === 'suback') {
        resolve()
      } else if (packet.cmd === 'publish') {
        track(packet.payload.toString())
        if (packet.qos === 1) socket.write(mqttPacket.generate({ cmd: 'puback', messageId: packet.messageId! }))
      }
    })
  })
}

ctx.on('report', () => {
  loopDelay.disable()
  const ms = (ns: number) => (Number.isFinite(ns) ? Math.round(ns / 1e4) / 100 : 0)
  const eventLoopDelay = { p99: ms(loopDelay.percentile(99)), max: ms(loopDelay.max) }
  ctx.send({ type: 'report', histogram: hdr.encodeIntoCompressedBase64(histogram), received, duplicates, eventLoopDelay } satisfies ReceiverReport)
})
ctx.on('stop', () => {
  for (const close of closers) close()
})
setInterval(() => ctx.send({ type: 'progress', received: heard }), 500).unref()

try {
  const connect = config.kind === 'mqtt' ? mqttClient : socketClient
  // a few at a time: thousands of simultaneous handshakes measure the handshake, not the stream
  for (let i = 0; i < config.clients; i += 50) {
    await Promise.all(Array.from({ length: Math.min(50, config.clients - i) }, (_, j) => connect(createClientTracker(), i + j)))
  }
  ctx.send({ type: 'ready' })
} catch (err) {
  ctx.send({ type: 'ready', error: `receiver: ${(err as Error).message}` })
}
