import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { packageRoot } from '../server/package.ts'
import { spawnRole } from './ipc.ts'
import { freePort, mosquittoInstalled, startMosquitto } from './mosquitto.ts'
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
const fromSources = import.meta.url.endsWith('.ts')
const cli = fromSources ? path.join(packageRoot, 'cli', 'pulseboard.ts') : path.join(packageRoot, 'dist', 'app', 'pulseboard.js')

/** Polls `probe` every 5 ms until it resolves true; returns the ms since `since`. */
async function readyAfter(since: number, probe: () => Promise<boolean>, timeoutMs = 20_000): Promise<number> {
  while (!(await probe().catch(() => false))) {
    if (performance.now() - since > timeoutMs) throw new Error(`not ready within ${timeoutMs} ms`)
    await sleep(5)
  }
  return Math.round(performance.now() - since)
}

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
  const [port, mqttPort] = [await freePort(), await freePort()]
  // the real command as a user starts it: built, the executable itself, so its #! line's node flags apply
  const dataDir = mkdtempSync(path.join(tmpdir(), 'pulseboard-footprint-'))
  const args = ['start', '--port', String(port), '--mqtt-port', String(mqttPort), '--host', '127.0.0.1', '--log-level', 'warn', '--data-dir', dataDir, ...startArgs]
  const child = fromSources ? spawn(process.execPath, ['--import', 'tsx', cli, ...args], { stdio: 'ignore' }) : spawn(cli, args, { stdio: 'ignore' })
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  const readyMs = await readyAfter(since, async () => (await fetch(`http://127.0.0.1:${port}/api/health`)).ok)
  return {
    pid: child.pid!,
    mqttPort,
    readyMs,
    async stop() {
      child.kill('SIGTERM')
      await exited
      rmSync(dataDir, { recursive: true, force: true })
    },
  }
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
