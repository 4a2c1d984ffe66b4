import { spawnRole } from './ipc.ts'
import { mosquittoInstalled, startMosquitto } from './mosquitto.ts'
import { startPulseboard } from './pulseboard-process.ts'
import { sampleProcess } from './process-stats.ts'
import type { PublisherConfig, PublisherReport } from './publisher.ts'
import type { ServeReady } from './serve.ts'

export type FootprintSystem = 'pulseboard' | 'broker' | 'mosquitto'

export interface FootprintResult {
  system: FootprintSystem
  /** From launch to the first answer of `/api/health` (Pulseboard) or the MQTT port taking connections, in ms. */
  readyMs: number
  idleRssMb: number
  /** With `devices` connected, each publishing once every `intervalMs`. */
  loadedRssMb: number
  devices: number
}

export interface FootprintOptions {
  devices: number
  intervalMs: number
  /** How long the devices publish before memory is read. */
  loadMs: number
  /** Extra arguments for `pulseboard start`. */
  startArgs?: string[]
  onProgress?: (line: string) => void
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
/** Starts one system on free loopback ports; resolves when it serves. */
async function launch(system: FootprintSystem, startArgs: string[]): Promise<{ pid: number; mqttPort: number; readyMs: number; stop(): Promise<void> }> {
  const since = performance.now()
  if (system === 'mosquitto') {
    const m = await startMosquitto()
    return { pid: m.pid, mqttPort: m.port, readyMs: Math.round(performance.now() - since), stop: m.stop }
  }
  if (system === 'broker') {
    const server = await spawnRole<ServeReady, never>('serve', { target: 'broker' })
    return { pid: server.pid, mqttPort: server.ready.mqttPort, readyMs: Math.round(performance.now() - since), stop: () => server.kill() }
  }
  // the real command as a user starts it: built, the executable itself, so its #! line's node flags apply
  const server = await startPulseboard({ store: 'sqlite', args: startArgs })
  return { pid: server.pid, mqttPort: server.mqttPort, readyMs: server.readyMs, stop: server.stop }
}

/** Idle memory, start-up time and memory under a sparse fleet, for Pulseboard, aedes alone and Mosquitto, one after another. */
export async function runFootprint(opts: FootprintOptions): Promise<FootprintResult[]> {
  const systems: FootprintSystem[] = ['pulseboard', 'broker', ...(mosquittoInstalled() ? (['mosquitto'] as const) : [])]
  const results: FootprintResult[] = []
  for (const system of systems) {
    opts.onProgress?.(`${system}: starting`)
    const running = await launch(system, opts.startArgs ?? [])
    try {
      // start-up garbage is collected within a few seconds of idling
      await sleep(3000)
      const idle = sampleProcess(running.pid)
      opts.onProgress?.(`${system}: ${opts.devices} devices publishing every ${opts.intervalMs / 1000} s for ${opts.loadMs / 1000} s`)
      const publisher = await spawnRole<object, PublisherReport>('publisher', {
        host: '127.0.0.1',
        port: running.mqttPort,
        first: 0,
        count: opts.devices,
        rate: (opts.devices * 1000) / opts.intervalMs,
        qos: 0,
        payloadSize: 60,
      } satisfies PublisherConfig)
      try {
        publisher.send({ type: 'start' })
        await sleep(opts.loadMs)
        const loaded = sampleProcess(running.pid)
        results.push({
          system,
          readyMs: running.readyMs,
          idleRssMb: Math.round(idle.rssBytes / 1e5) / 10,
          loadedRssMb: Math.round(loaded.rssBytes / 1e5) / 10,
          devices: opts.devices,
        })
      } finally {
        publisher.send({ type: 'stop' })
        await publisher.kill()
      }
    } finally {
      await running.stop()
    }
  }
  return results
}
