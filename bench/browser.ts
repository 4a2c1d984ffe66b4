import type { Browser } from 'playwright-core'
import { spawnRole } from './ipc.ts'
import type { PublisherConfig, PublisherReport } from './publisher.ts'
import type { ServeReady } from './serve.ts'

/**
 * Debian's Chromium, headless, with nothing reaching out to the network on its own; playwright
 * gives each launch a fresh profile. playwright-core is loaded only here: an optional dependency
 * that only the dashboard benchmark needs.
 */
export async function launchChromium(): Promise<Browser> {
  let chromium: typeof import('playwright-core').chromium
  try {
    ;({ chromium } = await import('playwright-core'))
  } catch {
    throw new Error('the dashboard benchmark needs playwright-core: npm install playwright-core (and Chromium: apt-get install chromium)')
  }
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  })
}

export interface DashboardBenchOptions {
  devices: number
  /** Messages per second from all devices; each carries 5 numeric metrics. */
  rate: number
  durationMs: number
  /** Dashboard route to watch, e.g. `#/` (overview) or `#/devices/bench-0`. */
  route: string
}

export interface DashboardBenchResult {
  route: string
  readingsPerSecond: number
  /** Share of wall time the page's main thread was busy (tasks), %. */
  mainThreadBusy: number
  /** Script execution share of wall time, %. */
  scriptBusy: number
  /** JS heap used, MB, sampled through the run: [seconds, MB]. */
  heap: [number, number][]
  domNodes: number
}

/** Loads the dashboard under a device load and measures how busy the page is, and its memory over time. */
export async function runDashboardBench(opts: DashboardBenchOptions, progress: (line: string) => void = () => {}): Promise<DashboardBenchResult> {
  const server = await spawnRole<ServeReady, never>('serve', { target: 'pulseboard' })
  const browser = await launchChromium()
  let publisher
  try {
    publisher = await spawnRole<object, PublisherReport>('publisher', {
      host: '127.0.0.1',
      port: server.ready.mqttPort,
      first: 0,
      count: opts.devices,
      rate: opts.rate,
      qos: 0,
      payloadSize: 60,
    } satisfies PublisherConfig)
    publisher.send({ type: 'start' })
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } })
    await page.goto(`http://127.0.0.1:${server.ready.port}/${opts.route}`)
    const cdp = await page.context().newCDPSession(page)
    await cdp.send('Performance.enable')
    const metrics = async () => {
      const { metrics } = await cdp.send('Performance.getMetrics')
      return Object.fromEntries(metrics.map((m) => [m.name, m.value])) as Record<string, number>
    }
    // let the devices appear and the charts fill before measuring
    await new Promise((r) => setTimeout(r, 3000))
    const start = await metrics()
    const startAt = performance.now()
    const heap: [number, number][] = []
    const sampleEvery = Math.max(1000, opts.durationMs / 30)
    while (performance.now() - startAt < opts.durationMs) {
      await new Promise((r) => setTimeout(r, sampleEvery))
      const m = await metrics()
      const seconds = Math.round((performance.now() - startAt) / 1000)
      heap.push([seconds, Math.round(m.JSHeapUsedSize! / 1e5) / 10])
      progress(`${seconds}s: main thread ${(((m.TaskDuration! - start.TaskDuration!) / ((performance.now() - startAt) / 1000)) * 100).toFixed(0)} % busy, heap ${heap.at(-1)![1]} MB`)
    }
    const end = await metrics()
    const seconds = (performance.now() - startAt) / 1000
    return {
      route: opts.route,
      readingsPerSecond: opts.rate * 5,
      mainThreadBusy: ((end.TaskDuration! - start.TaskDuration!) / seconds) * 100,
      scriptBusy: ((end.ScriptDuration! - start.ScriptDuration!) / seconds) * 100,
      heap,
      domNodes: end.Nodes!,
    }
  } finally {
    publisher?.send({ type: 'stop' })
    await publisher?.kill()
    await browser.close()
    await server.kill()
  }
}
