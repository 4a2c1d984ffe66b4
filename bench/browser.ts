import type { Browser, CDPSession } from 'playwright-core'
import { spawnRole } from './ipc.ts'
import { sampleProcess } from './process-stats.ts'
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
  /**
   * The page subscribes as the dashboard did before views (0.2): every message, every device's
   * state and every reading, whatever it shows. The same dashboard otherwise, for a side-by-side.
   */
  everything?: boolean
}

/** Milliseconds, over the measured window. */
export interface Spread {
  samples: number
  p50: number
  p95: number
  max: number
}

export interface DashboardBenchResult {
  route: string
  everything: boolean
  readingsPerSecond: number
  /** Share of wall time the page's main thread was busy (tasks), %. */
  mainThreadBusy: number
  /** Script execution share of wall time, %. */
  scriptBusy: number
  /** JS heap used, MB, sampled through the run: [seconds, MB]. */
  heap: [number, number][]
  /**
   * JS heap used right after a full collection, MB, before the measured window, half way through
   * it and after it: a leak is a difference that keeps growing once the page's windows are full.
   */
  heapAfterGc: { start: number; middle: number; end: number }
  domNodes: number
  /** WebSocket frames into the page: bytes (payload, UTF-8) and frames per second. */
  bytesPerSecond: number
  framesPerSecond: number
  /** From a reading's arrival in the page to a value tile showing it or a newer one (the DOM written). */
  lag: Spread
  /** From a reading's timestamp (when the server received it) to a value tile showing it: server batching included. */
  age: Spread
  /** Value tiles watched: the device's on its page, the cards on screen on the overview. */
  tiles: number
  /** Readings that arrived for a watched tile and were not shown by the end (0 when every one was). */
  unshown: number
  /** Server CPU over the window, % of one core. */
  serverCpu: number
}

/**
 * What the page records, installed before the dashboard's code runs: the dashboard calls
 * `__pulseboardProbe` with every reading and device state it receives (lib/live.svelte.ts), and
 * a MutationObserver sees each value tile's `data-ts` (the timestamp of the reading it shows,
 * written by the tiles) change. Only the devices `track` names are followed, so what the page
 * keeps stays bounded (two fixed histograms, and per metric the oldest reading not yet shown:
 * a newer one shown with it waited less, so the lag is, if anything, overstated).
 */
function probeScript(): void {
  interface Pending {
    ts: number
    at: number
  }
  const tracked = new Set<string>()
  const newest = new Map<string, number>()
  const pending = new Map<string, Pending>()
  // histograms of 0.1 ms buckets up to 10 s, allocated once: what the probe keeps does not grow with the run
  const BUCKETS = 100_000
  const lags = new Uint32Array(BUCKETS + 1)
  const ages = new Uint32Array(BUCKETS + 1)
  const tally = (histogram: Uint32Array, ms: number) => histogram[Math.min(BUCKETS, Math.max(0, Math.round(ms * 10)))]!++
  let recording = false
  const routeDevice = () => {
    const m = /^#\/devices\/(.+)$/.exec(location.hash)
    return m ? decodeURIComponent(m[1]!) : undefined
  }
  function arrive(device: string, metric: string, ts: number): void {
    if (!tracked.has(device)) return
    const key = `${device}\u0000${metric}`
    const before = newest.get(key)
    if (before !== undefined && ts <= before) return
    newest.set(key, ts)
    if (recording && !pending.has(key)) pending.set(key, { ts, at: performance.now() })
  }
  const observer = new MutationObserver((records) => {
    if (!recording) return
    const now = performance.now()
    const wall = Date.now()
    for (const record of records) {
      const el = record.target as HTMLElement
      const ts = Number(el.dataset['ts'])
      if (!Number.isFinite(ts)) continue
      const device = el.closest<HTMLElement>('[data-device]')?.dataset['device'] ?? routeDevice()
      const metric = el.closest<HTMLElement>('[data-metric]')?.dataset['metric']
      if (device === undefined || metric === undefined || !tracked.has(device)) continue
      tally(ages, wall - ts)
      const key = `${device}\u0000${metric}`
      const waiting = pending.get(key)
      if (waiting && waiting.ts <= ts) {
        tally(lags, now - waiting.at)
        pending.delete(key)
      }
    }
  })
  ;(window as unknown as Record<string, unknown>)['__pulseboardProbe'] = {
    readings(batch: { device: string; metric: string; ts: number }[]) {
      for (const r of batch) arrive(r.device, r.metric, r.ts)
    },
    devices(list: { id: string; metrics: Record<string, { ts: number }> }[]) {
      for (const d of list) for (const [metric, m] of Object.entries(d.metrics)) arrive(d.id, metric, m.ts)
    },
    /** Starts recording for these devices' tiles; returns how many tiles they have. */
    start(devices: string[]): number {
      for (const d of devices) tracked.add(d)
      recording = true
      observer.observe(document.body, { subtree: true, attributes: true, attributeFilter: ['data-ts'] })
      const tiles = [...document.querySelectorAll<HTMLElement>('[data-testid=tile-value]')]
      return tiles.filter((el) => tracked.has(el.closest<HTMLElement>('[data-device]')?.dataset['device'] ?? routeDevice() ?? '')).length
    },
    /** Stops, and hands over what was recorded; readings still waiting longer than `graceMs` count as not shown. */
    stop(graceMs: number) {
      recording = false
      observer.disconnect()
      const now = performance.now()
      // a metric without a tile (a card shows four) is not late
      const shownKeys = new Set<string>()
      for (const el of document.querySelectorAll<HTMLElement>('[data-testid=tile-value]')) {
        const device = el.closest<HTMLElement>('[data-device]')?.dataset['device'] ?? routeDevice()
        const metric = el.closest<HTMLElement>('[data-metric]')?.dataset['metric']
        if (device !== undefined && metric !== undefined) shownKeys.add(`${device}\u0000${metric}`)
      }
      const unshown = [...pending].filter(([key, p]) => shownKeys.has(key) && now - p.at > graceMs).length
      return { lags: [...lags], ages: [...ages], unshown }
    },
  }
}

/** The tiles on screen and the devices they are of: what the probe follows. */
function visibleDevices(): string[] {
  const fromRoute = /^#\/devices\/(.+)$/.exec(location.hash)
  if (fromRoute) return [decodeURIComponent(fromRoute[1]!)]
  const out = new Set<string>()
  for (const card of document.querySelectorAll<HTMLElement>('[data-device]')) {
    const r = card.getBoundingClientRect()
    if (r.bottom > 0 && r.top < innerHeight && card.dataset['device']) out.add(card.dataset['device'])
  }
  return [...out]
}

/**
 * Before views, the dashboard asked for everything (`{ view: { devices: true } }`): this page
 * script rewrites what the dashboard sends, its handshake and its `view` events, to that. The
 * server then acknowledges that view, and the dashboard handles what comes as it would.
 */
function everythingScript(): void {
  const legacy = { filters: ['#'], devices: true, readings: true }
  const send = WebSocket.prototype.send
  WebSocket.prototype.send = function (this: WebSocket, data: Parameters<WebSocket['send']>[0]) {
    if (typeof data === 'string') {
      // the handshake keeps what else it carries (a recovering session's offset)
      if (data.startsWith('40/live,')) data = `40/live,${JSON.stringify({ ...(JSON.parse(data.slice(8)) as object), view: legacy })}`
      const view = /^42\/live,(\d+)\["view",/.exec(data)
      if (view) data = `42/live,${view[1]}${JSON.stringify(['view', legacy])}`
    }
    send.call(this, data)
  }
}

/** Percentiles of a histogram of 0.1 ms buckets (the last one: 10 s or more). */
function spread(histogram: number[]): Spread {
  const samples = histogram.reduce((sum, n) => sum + n, 0)
  if (samples === 0) return { samples: 0, p50: NaN, p95: NaN, max: NaN }
  const at = (q: number) => {
    const rank = Math.min(samples - 1, Math.floor(q * samples))
    let seen = 0
    for (let i = 0; i < histogram.length; i++) {
      seen += histogram[i]!
      if (seen > rank) return i / 10
    }
    return (histogram.length - 1) / 10
  }
  let last = histogram.length - 1
  while (last > 0 && histogram[last] === 0) last--
  return { samples, p50: at(0.5), p95: at(0.95), max: last / 10 }
}

async function heapAfterGc(cdp: CDPSession): Promise<number> {
  await cdp.send('HeapProfiler.collectGarbage')
  const { usedSize } = await cdp.send('Runtime.getHeapUsage')
  return Math.round(usedSize / 1e5) / 10
}

/**
 * Loads the dashboard under a device load and measures the page: how busy its main thread is,
 * its memory over time, what comes into it over the socket, and how long a reading takes to show
 * in a value tile.
 */
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
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } })
    // run from the sources, functions carry esbuild's name helper, which the page lacks
    await context.addInitScript({ content: 'globalThis.__name = (f) => f' })
    await context.addInitScript(probeScript)
    if (opts.everything) await context.addInitScript(everythingScript)
    const page = await context.newPage()
    const cdp = await context.newCDPSession(page)
    await cdp.send('Performance.enable')
    await cdp.send('Network.enable')
    const socket = { bytes: 0, frames: 0, counting: false }
    cdp.on('Network.webSocketFrameReceived', ({ response }) => {
      if (!socket.counting) return
      socket.frames++
      socket.bytes += Buffer.byteLength(response.payloadData, response.opcode === 1 ? 'utf8' : 'base64')
    })
    await page.goto(`http://127.0.0.1:${server.ready.port}/${opts.route}`)
    const metrics = async () => {
      const { metrics } = await cdp.send('Performance.getMetrics')
      return Object.fromEntries(metrics.map((m) => [m.name, m.value])) as Record<string, number>
    }
    // let the devices appear and the charts fill before measuring
    await new Promise((r) => setTimeout(r, 3000))
    const gcStart = await heapAfterGc(cdp)
    const tracked = await page.evaluate(visibleDevices)
    const tiles = await page.evaluate((devices) => (window as unknown as { __pulseboardProbe: { start(d: string[]): number } }).__pulseboardProbe.start(devices), tracked)
    const start = await metrics()
    const cpuStart = sampleProcess(server.pid)
    const startAt = performance.now()
    socket.counting = true
    const heap: [number, number][] = []
    const sampleEvery = Math.max(1000, opts.durationMs / 30)
    let gcMiddle: number | null = null
    while (performance.now() - startAt < opts.durationMs) {
      // one collection half way: its pause is in the busy time, once a run
      if (gcMiddle === null && performance.now() - startAt >= opts.durationMs / 2) gcMiddle = await heapAfterGc(cdp)
      await new Promise((r) => setTimeout(r, Math.min(sampleEvery, opts.durationMs - (performance.now() - startAt))))
      const m = await metrics()
      const seconds = Math.round((performance.now() - startAt) / 1000)
      heap.push([seconds, Math.round(m.JSHeapUsedSize! / 1e5) / 10])
      const kbs = socket.bytes / 1024 / ((performance.now() - startAt) / 1000)
      progress(`${seconds}s: main thread ${(((m.TaskDuration! - start.TaskDuration!) / ((performance.now() - startAt) / 1000)) * 100).toFixed(0)} % busy, heap ${heap.at(-1)![1]} MB, ${kbs.toFixed(1)} KB/s in`)
    }
    const end = await metrics()
    const seconds = (performance.now() - startAt) / 1000
    socket.counting = false
    const cpuEnd = sampleProcess(server.pid)
    const recorded = await page.evaluate(() =>
      (window as unknown as { __pulseboardProbe: { stop(graceMs: number): { lags: number[]; ages: number[]; unshown: number } } }).__pulseboardProbe.stop(1000),
    )
    const gcEnd = await heapAfterGc(cdp)
    return {
      route: opts.route,
      everything: opts.everything ?? false,
      readingsPerSecond: opts.rate * 5,
      mainThreadBusy: ((end.TaskDuration! - start.TaskDuration!) / seconds) * 100,
      scriptBusy: ((end.ScriptDuration! - start.ScriptDuration!) / seconds) * 100,
      heap,
      heapAfterGc: { start: gcStart, middle: gcMiddle ?? gcStart, end: gcEnd },
      domNodes: end.Nodes!,
      bytesPerSecond: socket.bytes / seconds,
      framesPerSecond: socket.frames / seconds,
      lag: spread(recorded.lags),
      age: spread(recorded.ages),
      tiles,
      unshown: recorded.unshown,
      serverCpu: ((cpuEnd.cpuSeconds - cpuStart.cpuSeconds) / ((cpuEnd.at - cpuStart.at) / 1000)) * 100,
    }
  } finally {
    publisher?.send({ type: 'stop' })
    await publisher?.kill()
    await browser.close()
    await server.kill()
  }
}
