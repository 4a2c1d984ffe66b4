import * as hdr from 'hdr-histogram-js'
import { spawnRole, type Role } from './ipc.ts'
import { startMosquitto } from './mosquitto.ts'
import { cpuPercent, sampleMetrics, sampleProcess, type ProcessSample } from './process-stats.ts'
import type { PublisherConfig, PublisherReport } from './publisher.ts'
import type { ReceiverConfig, ReceiverKind, ReceiverReport } from './receiver.ts'
import type { ServeConfig, ServeReady, ServedTarget, ServerPauses } from './serve.ts'

/**
 * Systems the bench can measure: the served ones, Debian's mosquitto, or Pulseboard on
 * mosquitto (`externalBroker`): devices publish to mosquitto, receivers connect to Pulseboard.
 */
export type Target = ServedTarget | 'mosquitto' | 'pulseboard-mosquitto'

export interface ScenarioOptions {
  target: Target
  /** Publishing devices, each its own MQTT connection. */
  devices: number
  /** Messages per second from all devices; 0 = as fast as the broker takes them. */
  rate: number
  /** Receiving clients: /live or / sockets for bridges, MQTT subscribers for brokers. */
  clients: number
  receiver: ReceiverKind
  qos: 0 | 1
  payloadSize: number
  warmupMs: number
  durationMs: number
  /** Write a V8 CPU profile of the server here (`node --cpu-prof`). */
  profileDir?: string
  /** A Pulseboard the bench did not start: its HTTP URL and MQTT port. */
  external?: { httpUrl: string; host: string; mqttPort: number }
}

export interface ScenarioResult {
  target: Target
  receiver: ReceiverKind
  clients: number
  sentPerSecond: number
  deliveredPerSecond: number
  /** Milliseconds. */
  latency: { p50: number; p90: number; p99: number; max: number }
  lost: number
  duplicates: number
  /** Of one core; null when it cannot be measured. */
  cpuPercent: number | null
  /** CPU of the load generator, % of one core, to tell when it rather than the server was the limit. */
  generatorCpu: { publishers: number; receivers: number }
  rssMb: number | null
  /**
   * A system of more than one process (pulseboard-mosquitto: Pulseboard, then mosquitto): the CPU
   * and memory of each. `cpuPercent`, `rssMb` and `rssSeries` are then their sums, the system's cost.
   */
  processes?: ProcessFigures[]
  /** Resident memory over the measured window: [seconds, MB]. */
  rssSeries: [number, number][]
  /** The server's event-loop delay and garbage-collection pauses over the measured window; null for mosquitto or --url. */
  pauses: ServerPauses | null
  /** The receiver processes' own event-loop delay, ms: the worst of them. */
  receiverLoopDelay: { p99: number; max: number }
}

export interface ProcessFigures {
  name: string
  cpuPercent: number
  rssMb: number
}

export type Progress = (line: { phase: 'warmup' | 'measure' | 'drain'; seconds: number; deliveredPerSecond: number }) => void

/** A sample of the whole system; of each of its processes too when it has more than one. */
type SystemSample = ProcessSample & { parts?: ProcessSample[] }

interface System {
  httpUrl: string
  host: string
  mqttPort: number
  sample(): Promise<SystemSample> | SystemSample
  /** The names of its processes, in the order of `parts`, when it has more than one. */
  processNames?: string[]
  /** Starts and ends the server's own measurement of its pauses, where it can. */
  measurePauses(): void
  pauses(): Promise<ServerPauses | null>
  stop(): Promise<void>
}

async function startSystem(opts: ScenarioOptions): Promise<System> {
  if (opts.external) {
    const { httpUrl } = opts.external
    return { ...opts.external, sample: () => sampleMetrics(httpUrl), measurePauses() {}, pauses: async () => null, stop: async () => {} }
  }
  if (opts.target === 'mosquitto') {
    const mosquitto = await startMosquitto()
    return {
      httpUrl: '',
      host: '127.0.0.1',
      mqttPort: mosquitto.port,
      sample: () => sampleProcess(mosquitto.pid),
      measurePauses() {},
      pauses: async () => null,
      stop: mosquitto.stop,
    }
  }
  const profile = opts.profileDir ? ['--cpu-prof', '--cpu-prof-dir', opts.profileDir] : []
  if (opts.target === 'pulseboard-mosquitto') {
    // devices publish to mosquitto; Pulseboard is one more client of it, and serves the receivers
    const mosquitto = await startMosquitto()
    let server: Role<ServeReady, never>
    try {
      const config: ServeConfig = { target: 'pulseboard', brokerUrl: `mqtt://127.0.0.1:${mosquitto.port}` }
      server = await spawnRole<ServeReady, never>('serve', config, profile)
    } catch (err) {
      await mosquitto.stop()
      throw err
    }
    return {
      httpUrl: `http://127.0.0.1:${server.ready.port}`,
      host: '127.0.0.1',
      mqttPort: mosquitto.port,
      sample: () => sumSamples([sampleProcess(server.pid), sampleProcess(mosquitto.pid)]),
      processNames: ['pulseboard', 'mosquitto'],
      measurePauses: () => server.send({ type: 'measure' }),
      pauses: async () => {
        server.send({ type: 'report' })
        return (await server.next<{ pauses: ServerPauses }>('report')).pauses
      },
      stop: async () => {
        await server.kill()
        await mosquitto.stop()
      },
    }
  }
  const server = await spawnRole<ServeReady, never>('serve', { target: opts.target } satisfies ServeConfig, profile)
  return {
    httpUrl: `http://127.0.0.1:${server.ready.port}`,
    host: '127.0.0.1',
    mqttPort: server.ready.mqttPort,
    sample: () => sampleProcess(server.pid),
    measurePauses: () => server.send({ type: 'measure' }),
    pauses: async () => {
      server.send({ type: 'report' })
      return (await server.next<{ pauses: ServerPauses }>('report')).pauses
    },
    stop: () => server.kill(),
  }
}

/** The processes of a system together, and each on its own in `parts`. */
function sumSamples(parts: ProcessSample[]): SystemSample {
  return {
    at: parts[0]!.at,
    cpuSeconds: parts.reduce((sum, p) => sum + p.cpuSeconds, 0),
    rssBytes: parts.reduce((sum, p) => sum + p.rssBytes, 0),
    parts,
  }
}

/** Splits `total` into `parts` near-equal whole numbers. */
function split(total: number, parts: number): number[] {
  return Array.from({ length: parts }, (_, i) => Math.floor(total / parts) + (i < total % parts ? 1 : 0)).filter((n) => n > 0)
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** One measured run: start the system, receivers and devices; warm up; measure; drain; report. */
export async function runScenario(opts: ScenarioOptions, progress: Progress = () => {}): Promise<ScenarioResult> {
  const system = await startSystem(opts)
  const roles: Role<unknown, unknown>[] = []
  try {
    const receivers = await Promise.all(
      split(opts.clients, Math.min(2, opts.clients)).map((clients) =>
        spawnRole<object, ReceiverReport>('receiver', {
          kind: opts.receiver,
          httpUrl: system.httpUrl,
          host: system.host,
          mqttPort: system.mqttPort,
          clients,
          qos: opts.qos,
        } satisfies ReceiverConfig),
      ),
    )
    roles.push(...receivers)
    let first = 0
    const publishers = await Promise.all(
      split(opts.devices, 1).map((count) => {
        const config: PublisherConfig = {
          host: system.host,
          port: system.mqttPort,
          first,
          count,
          rate: opts.rate,
          qos: opts.qos,
          payloadSize: opts.payloadSize,
        }
        first += count
        return spawnRole<object, PublisherReport>('publisher', config)
      }),
    )
    roles.push(...publishers)

    const received = new Map<Role<unknown, unknown>, number>()
    for (const r of receivers) r.onProgress(({ received: n }) => received.set(r, n))
    const total = () => [...received.values()].reduce((a, b) => a + b, 0)

    let phase: 'warmup' | 'measure' | 'drain' = 'warmup'
    let phaseStart = performance.now()
    let last = { at: performance.now(), count: 0 }
    const ticker = setInterval(() => {
      const at = performance.now()
      const count = total()
      const rate = count >= last.count ? ((count - last.count) / (at - last.at)) * 1000 : 0
      last = { at, count }
      progress({ phase, seconds: (at - phaseStart) / 1000, deliveredPerSecond: rate })
    }, 1000)

    try {
      for (const p of publishers) p.send({ type: 'start' })
      await sleep(opts.warmupMs)

      for (const p of publishers) p.send({ type: 'measure' })
      phase = 'measure'
      phaseStart = performance.now()
      last = { at: phaseStart, count: total() }
      system.measurePauses()
      const before = await system.sample()
      const generatorBefore = [...publishers, ...receivers].map((r) => sampleProcess(r.pid))
      const rssSeries: [number, number][] = []
      const rssTimer = setInterval(async () => {
        const s = await system.sample()
        rssSeries.push([Math.round((s.at - before.at) / 1000), Math.round(s.rssBytes / 1e5) / 10])
      }, Math.max(1000, opts.durationMs / 60))
      await sleep(opts.durationMs)
      clearInterval(rssTimer)
      const after = await system.sample()
      const generatorAfter = [...publishers, ...receivers].map((r) => sampleProcess(r.pid))
      const generatorCpu = (from: number, to: number) =>
        generatorBefore.slice(from, to).reduce((sum, b, i) => sum + cpuPercent(b, generatorAfter[from + i]!), 0)
      const pauses = await system.pauses()
      const sentReports = await Promise.all(publishers.map((p) => (p.send({ type: 'stop' }), p.next<PublisherReport>('report'))))
      const measuredSeconds = (after.at - before.at) / 1000
      const processes = system.processNames?.map(
        (name, i): ProcessFigures => ({ name, cpuPercent: cpuPercent(before.parts![i]!, after.parts![i]!), rssMb: after.parts![i]!.rssBytes / 1e6 }),
      )

      // messages still in flight count as delivered when they arrive, up to a few seconds
      phase = 'drain'
      phaseStart = performance.now()
      // receivers report every 500 ms: a second without change means they are done
      for (let quiet = 0, seen = total(), waited = 0; quiet < 10 && waited < 100; waited++) {
        await sleep(100)
        quiet = total() === seen ? quiet + 1 : 0
        seen = total()
      }
      const reports = await Promise.all(receivers.map((r) => (r.send({ type: 'report' }), r.next<ReceiverReport>('report'))))

      const histogram = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 600_000_000, numberOfSignificantValueDigits: 3 })
      for (const report of reports) histogram.add(hdr.decodeFromCompressedBase64(report.histogram))
      const measuredSent = sentReports.reduce((a, r) => a + r.measuredSent, 0)
      const delivered = reports.reduce((a, r) => a + r.received, 0)
      const ms = (percentile: number) => Math.round(histogram.getValueAtPercentile(percentile)) / 1000
      return {
        target: opts.target,
        receiver: opts.receiver,
        clients: opts.clients,
        sentPerSecond: measuredSent / measuredSeconds,
        deliveredPerSecond: delivered / measuredSeconds,
        latency: { p50: ms(50), p90: ms(90), p99: ms(99), max: Math.round(histogram.maxValue) / 1000 },
        lost: Math.max(0, measuredSent * opts.clients - delivered),
        duplicates: reports.reduce((a, r) => a + r.duplicates, 0),
        cpuPercent: processes ? processes.reduce((sum, p) => sum + p.cpuPercent, 0) : Number.isFinite(after.cpuSeconds) ? cpuPercent(before, after) : null,
        generatorCpu: { publishers: generatorCpu(0, publishers.length), receivers: generatorCpu(publishers.length, Infinity) },
        rssMb: processes ? processes.reduce((sum, p) => sum + p.rssMb, 0) : Number.isFinite(after.rssBytes) ? after.rssBytes / 1e6 : null,
        ...(processes && { processes }),
        rssSeries,
        pauses,
        receiverLoopDelay: {
          p99: Math.max(...reports.map((r) => r.eventLoopDelay.p99)),
          max: Math.max(...reports.map((r) => r.eventLoopDelay.max)),
        },
      }
    } finally {
      clearInterval(ticker)
    }
  } finally {
    for (const role of roles) role.send({ type: 'stop' })
    await Promise.all(roles.map((r) => r.kill()))
    await system.stop()
  }
}
