/** A bench role: many idle connections, MQTT devices or dashboard sockets, to measure what each costs. */
import { io } from 'socket.io-client'
import { LIVE_NAMESPACE } from '../protocol/index.ts'
import { roleContext } from './ipc.ts'
import { connectRaw } from './mqtt-wire.ts'

export interface IdleConfig {
  kind: 'mqtt' | 'socket'
  host: string
  port: number
  count: number
}

export interface IdleReady {
  type: 'ready'
  /** Milliseconds until every connection was up. */
  connectMs: number
}

const ctx = roleContext<IdleConfig>()
const { config } = ctx
const closers: (() => void)[] = []
/** Connections opened at once: a fleet powering up, without a SYN flood. */
const PARALLEL = 200

function connectOne(i: number): Promise<void> {
  if (config.kind === 'mqtt') {
    return connectRaw(config.host, config.port, `idle-${process.pid}-${i}`).then((socket) => void closers.push(() => socket.destroy()))
  }
  const socket = io(`http://${config.host}:${config.port}${LIVE_NAMESPACE}`, {
    transports: ['websocket'],
    forceNew: true,
    reconnection: false,
    auth: { view: { devices: false } },
  })
  closers.push(() => socket.disconnect())
  return new Promise((resolve, reject) => {
    socket.once('connect', () => resolve())
    socket.once('connect_error', reject)
  })
}

ctx.on('stop', () => {
  for (const close of closers) close()
})

try {
  const start = performance.now()
  for (let i = 0; i < config.count; i += PARALLEL) {
    await Promise.all(Array.from({ length: Math.min(PARALLEL, config.count - i) }, (_, j) => connectOne(i + j)))
  }
  ctx.send({ type: 'ready', connectMs: performance.now() - start } satisfies IdleReady)
} catch (err) {
  ctx.send({ type: 'ready', error: `idle connections: ${(err as Error).message}` })
}
