import { mosquittoInstalled } from '../bench/mosquitto.ts'
import { runScenario, type ScenarioOptions, type ScenarioResult, type Target } from '../bench/run.ts'
import { runScale, type ScaleResult } from '../bench/scale.ts'
import { runDashboardBench } from '../bench/browser.ts'
import { runFootprint } from '../bench/footprint.ts'
import type { ReceiverKind } from '../bench/receiver.ts'
import { UsageError, duration, integer, parse, type Command } from './args.ts'

/** Named loads from docs/benchmarks.md; flags override any field. */
const SCENARIOS = {
  light: { devices: 100, rate: 2000, clients: 20, durationMs: 10_000 },
  heavy: { devices: 100, rate: 0, clients: 20, durationMs: 10_000 },
  broker: { devices: 100, rate: 0, clients: 1, durationMs: 10_000 },
  soak: { devices: 100, rate: 2000, clients: 20, durationMs: 600_000 },
} as const

const usage = `Usage: pulseboard bench [options]

Measures the data path: D devices publish over MQTT at a rate R, K clients
receive, and the bench reports end-to-end latency (p50, p90, p99, max),
deliveries per second, lost and duplicated messages, and the server's CPU and
memory. The server, devices and receivers each run in their own processes.

Options:
  -s, --scenario <name>  light (2k msg/s, 20 /live clients), heavy (as fast as
                         the devices can publish), broker (MQTT subscriber only),
                         soak (light for 10 min), scale (idle connections), or
                         dashboard (a headless Chromium page under 5,000
                         readings/s: main-thread busy time and heap), or
                         footprint (idle memory, start-up time, and memory
                         with 1,000 devices publishing every 5 s, beside aedes
                         alone and mosquitto) (default light)
      --compare          run Pulseboard, a naive bridge, the broker alone and
                         mosquitto (when installed), interleaved, and print ratios
      --target <name>    pulseboard, naive, broker or mosquitto (default pulseboard)
      --runs <n>         rounds; medians are reported (default 3 with --compare, else 1)
  -d, --devices <n>      publishing devices
  -r, --rate <n>         messages per second from all devices; 0 = as fast as possible
  -k, --clients <n>      receiving clients
      --receiver <kind>  live, chat (namespace /) or mqtt (default: live for
                         bridges, mqtt for brokers)
      --qos <0|1>        QoS of the device publishes (default 0)
      --payload <bytes>  payload size (default 60)
      --duration <time>  measured time (default 10s; soak 10m)
      --warmup <time>    load before measuring (default 2s)
      --connections <n>  scale: idle MQTT devices (default 10000); sockets are a fifth
      --route <hash>     dashboard: the page to watch (default #/, the overview;
                         e.g. #/devices/bench-0, #/messages)
      --url <url>        measure a running Pulseboard instead (HTTP URL); with --mqtt-url
      --mqtt-url <url>   its MQTT address (default mqtt://<host of --url>:1883)
      --profile <dir>    write a CPU profile of the server there (node --cpu-prof)
      --json             print results as JSON instead of a table
  -h, --help             show this help

Examples:
  pulseboard bench --scenario light --compare
  pulseboard bench --scenario heavy --runs 3
  pulseboard bench --scenario scale`

type Row = ScenarioResult & { run: number }

export const command: Command = {
  usage,
  async run(argv) {
    const { values } = parse(argv, {
      scenario: { type: 'string', short: 's' },
      compare: { type: 'boolean' },
      target: { type: 'string' },
      runs: { type: 'string' },
      devices: { type: 'string', short: 'd' },
      rate: { type: 'string', short: 'r' },
      clients: { type: 'string', short: 'k' },
      receiver: { type: 'string' },
      qos: { type: 'string' },
      payload: { type: 'string' },
      duration: { type: 'string' },
      warmup: { type: 'string' },
      connections: { type: 'string' },
      route: { type: 'string' },
      url: { type: 'string' },
      'mqtt-url': { type: 'string' },
      profile: { type: 'string' },
      json: { type: 'boolean' },
    })
    const scenario = values.scenario ?? 'light'
    const json = values.json ?? false
    if (scenario === 'scale') return scale(integer(values.connections ?? '10000', '--connections', 1, 100_000), json)
    if (scenario === 'footprint') {
      return footprint({ devices: integer(values.devices ?? '1000', '--devices', 1, 100_000), durationMs: duration(values.duration, '--duration', 30_000) }, json)
    }
    if (scenario === 'dashboard') {
      return dashboard({
        devices: integer(values.devices ?? '100', '--devices', 1, 10_000),
        rate: integer(values.rate ?? '1000', '--rate', 1, 100_000),
        durationMs: duration(values.duration, '--duration', 60_000),
        route: values.route ?? '#/',
      }, json)
    }
    if (!(scenario in SCENARIOS)) {
      throw new UsageError(`--scenario must be light, heavy, broker, soak, scale, dashboard or footprint, got ${JSON.stringify(scenario)}`)
    }
    const preset = SCENARIOS[scenario as keyof typeof SCENARIOS]
    const targets = chooseTargets(values.compare ?? false, values.target ?? (scenario === 'broker' ? 'broker' : 'pulseboard'), scenario)
    const runs = integer(values.runs ?? (values.compare ? '3' : '1'), '--runs', 1, 100)
    const base = {
      devices: integer(values.devices ?? String(preset.devices), '--devices', 1, 10_000),
      rate: integer(values.rate ?? String(preset.rate), '--rate', 0, 10_000_000),
      clients: integer(values.clients ?? String(preset.clients), '--clients', 1, 10_000),
      qos: integer(values.qos ?? '0', '--qos', 0, 1) as 0 | 1,
      payloadSize: integer(values.payload ?? '60', '--payload', 40, 262_144),
      durationMs: duration(values.duration, '--duration', preset.durationMs),
      warmupMs: duration(values.warmup, '--warmup', 2000),
      ...(values.profile !== undefined && { profileDir: values.profile }),
      ...(values.url !== undefined && { external: external(values.url, values['mqtt-url']) }),
    }
    if (base.external && targets.length > 1) throw new UsageError('--url measures one running server; it does not go with --compare')
    const receiverFlag = values.receiver
    if (receiverFlag !== undefined && !['live', 'chat', 'mqtt'].includes(receiverFlag)) {
      throw new UsageError(`--receiver must be live, chat or mqtt, got ${JSON.stringify(receiverFlag)}`)
    }

    const rows: Row[] = []
    const tty = process.stderr.isTTY
    const describe = `${base.devices} devices, ${base.rate === 0 ? 'as fast as possible' : `${base.rate} msg/s`}, ${base.clients} clients, QoS ${base.qos}, ${base.payloadSize}-byte payloads`
    process.stderr.write(`pulseboard bench: ${scenario} (${describe}); ${runs} run${runs > 1 ? 's' : ''} of ${targets.join(', ')}\n`)
    for (let run = 1; run <= runs; run++) {
      // interleaved: each round measures every target once, so drift on a shared machine hits all alike
      for (const target of targets) {
        const receiver = (receiverFlag ?? (target === 'broker' || target === 'mosquitto' ? 'mqtt' : 'live')) as ReceiverKind
        const label = `[${run}/${runs}] ${target}`
        const result = await runScenario({ ...base, target, receiver } satisfies ScenarioOptions, (p) => {
          const line = `${label}: ${p.phase} ${p.seconds.toFixed(0)}s, ${Math.round(p.deliveredPerSecond).toLocaleString('en-US')} deliveries/s`
          if (tty) process.stderr.write(`\r\x1b[K${line}`)
          else if (Math.round(p.seconds) % 5 === 0) process.stderr.write(`${line}\n`)
        })
        if (tty) process.stderr.write('\r\x1b[K')
        process.stderr.write(`${label}: ${summary(result)}\n`)
        rows.push({ ...result, run })
      }
    }
    const medians = targets.map((t) => median(rows.filter((r) => r.target === t)))
    if (json) {
      console.log(JSON.stringify({ scenario, ...base, runs: rows, medians, ratios: ratios(medians) }, null, 2))
    } else {
      console.log(table(medians, runs))
      for (const line of ratioLines(medians)) console.log(line)
      if (scenario === 'soak') console.log(soakLine(medians[0]!))
    }
  },
}

function chooseTargets(compare: boolean, target: string, scenario: string): Target[] {
  const all: Target[] = ['pulseboard', 'naive', 'broker', 'mosquitto']
  if (!all.includes(target as Target)) throw new UsageError(`--target must be one of ${all.join(', ')}, got ${JSON.stringify(target)}`)
  if (!compare) {
    if (target === 'mosquitto' && !mosquittoInstalled()) throw new UsageError('mosquitto is not installed; apt-get install mosquitto')
    return [target as Target]
  }
  const chosen: Target[] = scenario === 'broker' ? ['broker', 'mosquitto'] : all
  return chosen.filter((t) => t !== 'mosquitto' || mosquittoInstalled())
}

function external(url: string, mqttUrl: string | undefined): ScenarioOptions['external'] {
  const http = new URL(url)
  const mqtt = new URL(mqttUrl ?? `mqtt://${http.hostname}:1883`)
  return { httpUrl: http.origin, host: mqtt.hostname, mqttPort: Number(mqtt.port || 1883) }
}

const fmt = (n: number, digits = 0) => n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits })

function summary(r: ScenarioResult): string {
  return `${fmt(r.deliveredPerSecond)} deliveries/s, p50 ${fmt(r.latency.p50, 2)} ms, p99 ${fmt(r.latency.p99, 2)} ms, lost ${r.lost}, CPU ${r.cpuPercent === null ? 'n/a' : `${fmt(r.cpuPercent)} %`}`
}

/** The median of every figure, taken separately across runs. */
function median(rows: Row[]): ScenarioResult {
  const mid = (values: number[]) => {
    const sorted = [...values].sort((a, b) => a - b)
    return sorted[Math.floor((sorted.length - 1) / 2)]!
  }
  const pick = (f: (r: ScenarioResult) => number | null) => {
    const v = rows.map(f).filter((x): x is number => x !== null)
    return v.length ? mid(v) : null
  }
  const first = rows[0]!
  return {
    ...first,
    sentPerSecond: pick((r) => r.sentPerSecond)!,
    deliveredPerSecond: pick((r) => r.deliveredPerSecond)!,
    latency: {
      p50: pick((r) => r.latency.p50)!,
      p90: pick((r) => r.latency.p90)!,
      p99: pick((r) => r.latency.p99)!,
      max: pick((r) => r.latency.max)!,
    },
    lost: pick((r) => r.lost)!,
    duplicates: pick((r) => r.duplicates)!,
    cpuPercent: pick((r) => r.cpuPercent),
    rssMb: pick((r) => r.rssMb),
    generatorCpu: {
      publishers: pick((r) => r.generatorCpu.publishers)!,
      receivers: pick((r) => r.generatorCpu.receivers)!,
    },
    receiverLoopDelay: {
      p99: pick((r) => r.receiverLoopDelay.p99)!,
      max: pick((r) => r.receiverLoopDelay.max)!,
    },
    pauses: first.pauses && {
      eventLoopDelay: {
        p50: pick((r) => r.pauses?.eventLoopDelay.p50 ?? null)!,
        p99: pick((r) => r.pauses?.eventLoopDelay.p99 ?? null)!,
        max: pick((r) => r.pauses?.eventLoopDelay.max ?? null)!,
      },
      gc: {
        count: pick((r) => r.pauses?.gc.count ?? null)!,
        totalMs: pick((r) => r.pauses?.gc.totalMs ?? null)!,
        maxMs: pick((r) => r.pauses?.gc.maxMs ?? null)!,
        long: first.pauses.gc.long,
      },
    },
  }
}

function table(results: ScenarioResult[], runs: number): string {
  const head = ['target', 'receivers', 'sent/s', 'deliveries/s', 'p50 ms', 'p90 ms', 'p99 ms', 'max ms', 'lost', 'dup', 'CPU %', 'RSS MB', 'loop p99/max ms', 'GC ms (max)', 'rx loop p99 ms', 'gen CPU % (pub+rx)']
  const rows = results.map((r) => [
    r.target,
    `${r.clients} ${r.receiver}`,
    fmt(r.sentPerSecond),
    fmt(r.deliveredPerSecond),
    fmt(r.latency.p50, 2),
    fmt(r.latency.p90, 2),
    fmt(r.latency.p99, 2),
    fmt(r.latency.max, 1),
    fmt(r.lost),
    fmt(r.duplicates),
    r.cpuPercent === null ? 'n/a' : fmt(r.cpuPercent),
    r.rssMb === null ? 'n/a' : fmt(r.rssMb),
    r.pauses ? `${fmt(r.pauses.eventLoopDelay.p99, 1)}/${fmt(r.pauses.eventLoopDelay.max, 1)}` : 'n/a',
    r.pauses ? `${fmt(r.pauses.gc.totalMs)} (${fmt(r.pauses.gc.maxMs, 1)})` : 'n/a',
    fmt(r.receiverLoopDelay.p99, 1),
    `${fmt(r.generatorCpu.publishers)}+${fmt(r.generatorCpu.receivers)}`,
  ])
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)))
  const line = (cells: string[]) => cells.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ')
  return [`\n${runs > 1 ? `medians of ${runs} runs` : 'one run'}:`, line(head), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n')
}

function ratios(results: ScenarioResult[]): Record<string, { deliveries: number; p99: number; cpu: number | null }> {
  const ours = results.find((r) => r.target === 'pulseboard') ?? results[0]!
  const out: Record<string, { deliveries: number; p99: number; cpu: number | null }> = {}
  for (const r of results) {
    if (r === ours) continue
    out[`${ours.target}/${r.target}`] = {
      deliveries: ours.deliveredPerSecond / r.deliveredPerSecond,
      p99: ours.latency.p99 / r.latency.p99,
      cpu: ours.cpuPercent !== null && r.cpuPercent ? ours.cpuPercent / r.cpuPercent : null,
    }
  }
  return out
}

function ratioLines(results: ScenarioResult[]): string[] {
  const lines = Object.entries(ratios(results)).map(
    ([pair, r]) =>
      `  ${pair}: deliveries/s ${fmt(r.deliveries, 2)}x, p99 ${fmt(r.p99, 2)}x${r.cpu === null ? '' : `, CPU ${fmt(r.cpu, 2)}x`}`,
  )
  return lines.length ? ['\nratios (same runs):', ...lines] : []
}

function soakLine(r: ScenarioResult): string {
  return `\nserver RSS over the soak: ${halves(r.rssSeries)}\n  samples: ${r.rssSeries.map(([s, mb]) => `${s}s ${mb}`).join(', ')} MB`
}

async function footprint(opts: { devices: number; durationMs: number }, json: boolean): Promise<void> {
  const tty = process.stderr.isTTY
  const results = await runFootprint({
    devices: opts.devices,
    intervalMs: 5000,
    loadMs: opts.durationMs,
    onProgress: (line) => process.stderr.write(tty ? `\r\x1b[K${line}` : `${line}\n`),
  })
  if (tty) process.stderr.write('\r\x1b[K')
  if (json) return void console.log(JSON.stringify(results, null, 2))
  console.log(`\nsystem      ready ms  idle RSS  RSS, ${fmt(opts.devices)} devices every 5 s`)
  for (const r of results) {
    console.log(`${r.system.padEnd(10)}  ${fmt(r.readyMs).padStart(8)}  ${`${fmt(r.idleRssMb, 1)} MB`.padStart(8)}  ${`${fmt(r.loadedRssMb, 1)} MB`.padStart(10)}`)
  }
}

async function scale(connections: number, json: boolean): Promise<void> {
  const sockets = Math.max(1, Math.floor(connections / 5))
  const plan: [Parameters<typeof runScale>[0], 'mqtt' | 'socket', number][] = [
    ['pulseboard', 'mqtt', connections],
    ['broker', 'mqtt', connections],
    ['pulseboard', 'socket', sockets],
    ['socketio', 'socket', sockets],
  ]
  const results: ScaleResult[] = []
  for (const [target, kind, count] of plan) {
    process.stderr.write(`pulseboard bench: ${count} idle ${kind === 'mqtt' ? 'MQTT devices' : 'dashboard sockets'} on ${target} ...\n`)
    results.push(await runScale(target, kind, count))
  }
  if (json) return void console.log(JSON.stringify(results, null, 2))
  console.log('\ntarget      connections       connect ms  RSS/connection  server RSS')
  for (const r of results) {
    console.log(
      `${r.target.padEnd(10)}  ${`${fmt(r.connections)} ${r.kind}`.padEnd(16)}  ${fmt(r.connectMs).padStart(10)}  ${`${fmt(r.rssPerConnectionKb, 1)} KB`.padStart(14)}  ${`${fmt(r.rssMb)} MB`.padStart(10)}`,
    )
  }
}

async function dashboard(opts: Parameters<typeof runDashboardBench>[0], json: boolean): Promise<void> {
  process.stderr.write(
    `pulseboard bench: dashboard ${opts.route} in headless Chromium, ${opts.devices} devices, ${opts.rate * 5} readings/s, ${opts.durationMs / 1000} s\n`,
  )
  const tty = process.stderr.isTTY
  const result = await runDashboardBench(opts, (line) => process.stderr.write(tty ? `\r\x1b[K${line}` : `${line}\n`))
  if (tty) process.stderr.write('\n')
  if (json) return void console.log(JSON.stringify(result, null, 2))
  console.log(
    [
      `\n${result.route}: ${fmt(result.readingsPerSecond)} readings/s`,
      `  main thread busy  ${fmt(result.mainThreadBusy, 1)} % (script ${fmt(result.scriptBusy, 1)} %)`,
      `  JS heap           ${halves(result.heap)}`,
      `  DOM nodes         ${fmt(result.domNodes)}`,
    ].join('\n'),
  )
}

/**
 * Memory rises and falls with every garbage collection; a leak shows as a
 * second half that sits higher than the first. Min–max of each half says it.
 */
function halves(series: [number, number][]): string {
  const range = (part: [number, number][]) => {
    const values = part.map(([, mb]) => mb)
    return `${fmt(Math.min(...values), 1)}–${fmt(Math.max(...values), 1)} MB`
  }
  const mid = Math.floor(series.length / 2)
  if (mid === 0) return 'too few samples'
  return `first half ${range(series.slice(0, mid))}, second half ${range(series.slice(mid))}`
}
