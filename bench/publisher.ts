/** A bench role: devices publishing probe telemetry over raw MQTT connections. */
import type net from 'node:net'
import { roleContext } from './ipc.ts'
import { connectRaw, publishPacket } from './mqtt-wire.ts'
import { probePayload, probeTopic, telemetryPayload } from './probe.ts'

export interface PublisherConfig {
  host: string
  port: number
  /** Several brokers (the nodes of a cluster): device n connects to `ports[n % ports.length]`, round robin, instead of `port`. */
  ports?: number[]
  /** Device numbers [first, first + count). */
  first: number
  count: number
  /** Messages per second from all these devices together; 0 = as fast as the broker takes them. */
  rate: number
  qos: 0 | 1
  payloadSize: number
  /** Send telemetry of this many metrics per message (the history bench) instead of latency probes; `payloadSize` is then unused. */
  metrics?: number
}

export interface PublisherReport {
  type: 'report'
  sent: number
  measuredSent: number
  /** With `ports`: what was sent inside the measured window to each, in the order of `ports`. */
  measuredSentByPort?: number[]
}

const ctx = roleContext<PublisherConfig>()
const { config } = ctx
/** Publishes per socket write when flooding: fewer syscalls, as a busy device batches too. */
const FLOOD_BATCH = 8
/**
 * Batches a device may have unanswered when flooding. Each batch ends with a
 * PINGREQ; the broker answers it after handling the batch [MQTT-3.12.4-1], so
 * this bounds what waits in socket buffers. Without it, loopback buffers hold
 * seconds of messages and the bench measures its own queue. By Little's law
 * the latency at saturation is what is in flight (devices × batch × window)
 * over the throughput: 100 devices × 8 at 30k msg/s is about 27 ms.
 */
const FLOOD_WINDOW = 1
const PINGREQ = Buffer.from([0xc0, 0x00])
const PINGRESP = 0xd0

interface Device {
  n: number
  /** Index in `ports` of the broker it is connected to (0 without `ports`). */
  port: number
  socket: net.Socket
  seq: number
  packetId: number
  /** Flood batches not yet answered by a PINGRESP. */
  outstanding: number
  onPong(): void
}

let devices: Device[] = []
let running = false
let measured = false
let sent = 0
let measuredSent = 0
const ports = config.ports ?? [config.port]
const measuredByPort = ports.map(() => 0)

function packet(device: Device): Buffer {
  device.seq++
  device.packetId = (device.packetId % 65535) + 1
  sent++
  if (measured) {
    measuredSent++
    measuredByPort[device.port]!++
  }
  const payload = config.metrics ? telemetryPayload(device.n, device.seq, config.metrics) : probePayload(device.n, device.seq, measured, config.payloadSize)
  return publishPacket(probeTopic(device.n), payload, config.qos, device.packetId)
}

function paced(): void {
  const start = performance.now()
  let due = 0
  let next = 0
  const tick = () => {
    if (!running) return
    due = Math.floor(((performance.now() - start) * config.rate) / 1000)
    const burst = new Map<Device, Buffer[]>()
    while (sent < due) {
      const device = devices[next++ % devices.length]!
      const list = burst.get(device) ?? []
      list.push(packet(device))
      burst.set(device, list)
    }
    for (const [device, list] of burst) device.socket.write(list.length === 1 ? list[0]! : Buffer.concat(list))
    setTimeout(tick, 1)
  }
  tick()
}

function flood(): void {
  const pump = (device: Device) => {
    while (running && device.outstanding < FLOOD_WINDOW) {
      const batch: Buffer[] = []
      for (let i = 0; i < FLOOD_BATCH; i++) batch.push(packet(device))
      batch.push(PINGREQ)
      device.outstanding++
      device.socket.write(Buffer.concat(batch))
    }
  }
  for (const device of devices) {
    device.onPong = () => {
      device.outstanding--
      pump(device)
    }
    pump(device)
  }
}

/** Finds PINGRESPs among what the broker sends a publisher (PUBACKs otherwise), across chunk boundaries. */
function scanReplies(device: Device): (chunk: Buffer) => void {
  let skip = 0
  let header = -1
  return (chunk) => {
    for (let i = 0; i < chunk.length; ) {
      if (skip > 0) {
        const n = Math.min(skip, chunk.length - i)
        skip -= n
        i += n
      } else if (header < 0) {
        header = chunk[i++]!
      } else {
        // replies to a publisher are short: one length byte
        skip = chunk[i++]!
        if ((header & 0xf0) === PINGRESP) device.onPong()
        header = -1
      }
    }
  }
}

ctx.on('start', () => {
  running = true
  if (config.rate > 0) paced()
  else flood()
})
ctx.on('measure', () => {
  measured = true
  measuredSent = 0
  measuredByPort.fill(0)
})
ctx.on('stop', () => {
  running = false
  ctx.send({ type: 'report', sent, measuredSent, ...(config.ports && { measuredSentByPort: measuredByPort }) } satisfies PublisherReport)
})

try {
  devices = await Promise.all(
    Array.from({ length: config.count }, async (_, i) => {
      const n = config.first + i
      const port = n % ports.length
      const socket = await connectRaw(config.host, ports[port]!, `bench-${n}`)
      const device: Device = { n, port, socket, seq: 0, packetId: 0, outstanding: 0, onPong: () => {} }
      // read every reply (PUBACKs too), so the broker is never blocked by us
      socket.on('data', scanReplies(device))
      socket.on('error', () => {})
      return device
    }),
  )
  ctx.send({ type: 'ready' })
} catch (err) {
  ctx.send({ type: 'ready', error: `publisher: ${(err as Error).message}` })
}
