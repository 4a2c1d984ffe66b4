/** A bench role: the system under test, in a process of its own so its CPU and memory can be measured. */
import type net from 'node:net'
import { PerformanceObserver, monitorEventLoopDelay } from 'node:perf_hooks'
import http from 'node:http'
import { LIVE_NAMESPACE } from '../protocol/index.ts'
import { roleContext } from './ipc.ts'

/** What runs: Pulseboard, the naive bridge, the embedded broker alone, or socket.io alone. */
export type ServedTarget = 'pulseboard' | 'naive' | 'broker' | 'socketio'

export interface ServeReady {
  type: 'ready'
  mqttPort: number
  port: number
}

/** Where the server's own time went while it was measured: event-loop delay and GC pauses, in ms. */
export interface ServerPauses {
  eventLoopDelay: { p50: number; p99: number; max: number }
  gc: { count: number; totalMs: number; maxMs: number; /** Pauses of 5 ms or more, by kind. */ long: Record<string, number> }
}

export interface ServeConfig {
  target: ServedTarget
  /** pulseboard: run on this broker (`externalBroker`) instead of the embedded one; `mqttPort` is then 0. */
  brokerUrl?: string
  /** pulseboard: one node of a cluster on this Redis (`cluster`). */
  cluster?: { url: string; nodeId: string }
  /** pulseboard: history in this PostgreSQL database (`postgres`) instead of in memory. */
  postgresUrl?: string
}

const ctx = roleContext<ServeConfig>()
const CAPACITY = { maxConnections: 1_000_000, maxSockets: 1_000_000 }

// Measured between the orders 'measure' and 'report': the tail of the latency is made of these.
const loopDelay = monitorEventLoopDelay({ resolution: 1 })
const gcPauses: { kind: string; ms: number }[] = []
const GC_KINDS: Record<number, string> = { 1: 'scavenge', 2: 'mark-compact', 4: 'incremental', 8: 'weak callbacks' }
const gcObserver = new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) {
    const kind = (entry as PerformanceEntry & { detail?: { kind?: number } }).detail?.kind ?? 0
    gcPauses.push({ kind: GC_KINDS[kind] ?? String(kind), ms: entry.duration })
  }
})
ctx.on('measure', () => {
  loopDelay.reset()
  loopDelay.enable()
  gcPauses.length = 0
  gcObserver.observe({ entryTypes: ['gc'] })
})
ctx.on('report', () => {
  loopDelay.disable()
  gcObserver.disconnect()
  const ms = (ns: number) => Math.round(ns / 1e4) / 100
  const long: Record<string, number> = {}
  for (const p of gcPauses) if (p.ms >= 5) long[p.kind] = (long[p.kind] ?? 0) + 1
  const pauses: ServerPauses = {
    eventLoopDelay: { p50: ms(loopDelay.percentile(50)), p99: ms(loopDelay.percentile(99)), max: ms(loopDelay.max) },
    gc: {
      count: gcPauses.length,
      totalMs: Math.round(gcPauses.reduce((sum, p) => sum + p.ms, 0)),
      maxMs: Math.round(Math.max(0, ...gcPauses.map((p) => p.ms)) * 10) / 10,
      long,
    },
  }
  ctx.send({ type: 'report', pauses })
})
const HOST = '127.0.0.1'

function listen(server: net.Server | http.Server): Promise<number> {
  return new Promise((resolve) => server.listen(0, HOST, () => resolve((server.address() as net.AddressInfo).port)))
}

// Each target loads only what it runs, so the memory measured of aedes alone is aedes alone.
try {
  let ports: { mqttPort: number; port: number }
  switch (ctx.config.target) {
    case 'pulseboard': {
      // the bench measures capacity: the connection bounds of docs/limits.md must not be what it finds
      const { createPulseboard } = await import('../server/pulseboard.ts')
      const { brokerUrl, cluster, postgresUrl } = ctx.config
      const app = await createPulseboard({
        mqttPort: 0,
        port: 0,
        host: HOST,
        ...CAPACITY,
        ...(brokerUrl !== undefined && { externalBroker: { url: brokerUrl } }),
        ...(cluster !== undefined && { cluster }),
        ...(postgresUrl !== undefined && { postgres: { url: postgresUrl } }),
      })
      const listening = await app.listen()
      // on an external broker there is no MQTT listener: devices connect to the broker
      ports = { mqttPort: listening.mqttPort ?? 0, port: listening.port }
      break
    }
    case 'naive': {
      const { createNaiveBridge } = await import('./naive.ts')
      const naive = await createNaiveBridge()
      ports = { mqttPort: await listen(naive.mqtt), port: await listen(naive.http) }
      break
    }
    case 'broker': {
      const { createBroker } = await import('../broker/broker.ts')
      const broker = await createBroker(CAPACITY)
      ports = { mqttPort: await listen(broker.tcpServer), port: 0 }
      break
    }
    case 'socketio': {
      const { Server } = await import('socket.io')
      const server = http.createServer()
      // the namespace the dashboard connects to, with nothing behind it
      new Server(server).of(LIVE_NAMESPACE)
      ports = { mqttPort: 0, port: await listen(server) }
      break
    }
  }
  ctx.send({ type: 'ready', ...ports } satisfies ServeReady)
} catch (err) {
  ctx.send({ type: 'ready', error: `server: ${(err as Error).message}` })
}
