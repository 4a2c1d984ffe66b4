import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { mosquittoInstalled } from '../bench/mosquitto.ts'
import { runScenario, type ProcessFigures, type ScenarioOptions, type ScenarioResult, type Target } from '../bench/run.ts'
import { runScale, type ScaleResult } from '../bench/scale.ts'
import { runDashboardBench, type DashboardBenchResult } from '../bench/browser.ts'
import { runFootprint } from '../bench/footprint.ts'
import { runHistoryBench, runHistoryHttpBench, HISTORY_TARGETS, type HistoryBenchResult, type HistoryHttpResult } from '../bench/history.ts'
import { runIngestBench, INGEST_TARGETS, type IngestResult } from '../bench/ingest.ts'
import { runClusterBench, type ClusterBenchOptions, type ClusterBenchResult, type ClusterRun } from '../bench/cluster.ts'
import { redisInstalled } from '../bench/redis.ts'
import { postgresInstalled } from '../bench/postgres.ts'
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
                         dashboard (headless Chromium on the device page and
                         the overview, at 500 and 5,000 readings/s: main-thread
                         busy time, heap, bytes into the page, and how long a
                         reading takes to show in its tile), or
                         footprint (idle memory, start-up time, and memory
                         with 1,000 devices publishing every 5 s, beside aedes
                         alone and mosquitto), or history (10,000 readings/s into
                         two servers side by side, the SQLite store and
                         --no-store, for 10 min: CPU, memory, queue, database
                         size; then long-range queries and a 1 M-row CSV export,
                         in process and over HTTP), or cluster (1, 2 and 3
                         nodes of a cluster on one Redis, each its own process,
                         the same load each time: devices round robin over the
                         nodes, /live clients spread over them; CPU per message
                         and per delivery of each node, Redis, and with
                         --history postgres PostgreSQL) (default light)
      --compare          run Pulseboard, Pulseboard on mosquitto, a naive bridge,
                         the broker alone and mosquitto (the mosquitto ones when
                         installed), interleaved, and print ratios
      --target <name>    pulseboard, pulseboard-mosquitto (Pulseboard on Debian's
                         mosquitto, as with start --broker: devices publish to
                         mosquitto; CPU and RSS are the sum of the two, each in
                         brackets), naive, broker or mosquitto (default pulseboard)
      --runs <n>         rounds; medians are reported (default 3 with --compare, else 1)
  -d, --devices <n>      publishing devices (history: 1000 per server)
  -r, --rate <n>         messages per second from all devices; 0 = as fast as possible
                         (history: 1000 per server, each message --metrics readings)
      --metrics <n>      history: numbers in each telemetry message (default 10)
      --only <part>      history: ingest, or queries (queries and export) alone
  -k, --clients <n>      receiving clients
      --nodes <list>     cluster: cluster sizes, in order (default 1,2,3)
      --standalone       cluster: also a Pulseboard without Redis, first in each round
      --devices-on <n>   cluster: all (device d on node d mod n, the default), or
                         first (every device on node a: the others take in none)
      --history <kind>   cluster: memory, or postgres (a throwaway PostgreSQL,
                         a new database for each configuration) (default memory)
      --receiver <kind>  live, chat (namespace /) or mqtt (default: live for
                         bridges, mqtt for brokers)
      --qos <0|1>        QoS of the device publishes (default 0)
      --payload <bytes>  payload size (default 60)
      --duration <time>  measured time (default 10s; soak and history 10m)
      --warmup <time>    load before measuring (default 2s; history 10s)
      --connections <n>  scale: idle MQTT devices (default 10000); sockets are a fifth
      --route <hash>     dashboard: the one page to watch (default: the device page
                         #/devices/bench-0 and the overview #/; e.g. #/messages);
                         --rate likewise picks one rate instead of 100 and 1,000
                         messages/s (500 and 5,000 readings/s)
      --everything       dashboard: also each page subscribed to everything, as
                         the dashboard was before views, interleaved
      --url <url>        measure a running Pulseboard instead (HTTP URL); with --mqtt-url
      --mqtt-url <url>   its MQTT address (default mqtt://<host of --url>:1883)
      --profile <dir>    write a CPU profile of the server there (node --cpu-prof;
                         cluster: of each node)
      --json             print results as JSON instead of a table
  -h, --help             show this help

Examples:
  pulseboard bench --scenario light --compare
  pulseboard bench --scenario heavy --runs 3
  pulseboard bench --scenario scale
  pulseboard bench --scenario history --duration 60s
  pulseboard bench --scenario cluster --history postgres --runs 3`

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
      metrics: { type: 'string' },
      only: { type: 'string' },
      route: { type: 'string' },
      everything: { type: 'boolean' },
      nodes: { type: 'string' },
      'devices-on': { type: 'string' },
      standalone: { type: 'boolean' },
      history: { type: 'string' },
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
        rates: values.rate === undefined ? [...DASHBOARD_RATES] : [integer(values.rate, '--rate', 1, 100_000)],
        durationMs: duration(values.duration, '--duration', 30_000),
        routes: values.route === undefined ? [...DASHBOARD_ROUTES] : [values.route],
        runs: integer(values.runs ?? '1', '--runs', 1, 100),
        everything: values.everything ?? false,
      }, json)
    }
    if (scenario === 'history') {
      const only = values.only
      if (only !== undefined && only !== 'ingest' && only !== 'queries') throw new UsageError(`--only must be ingest or queries, got ${JSON.stringify(only)}`)
      const durationMs = duration(values.duration, '--duration', 600_000)
      if (durationMs < 1000) throw new UsageError(`--duration must be at least 1s, got ${JSON.stringify(values.duration)}`)
      return history(
        {
          devices: integer(values.devices ?? '1000', '--devices', 1, 10_000),
          rate: integer(values.rate ?? '1000', '--rate', 1, 100_000),
          metrics: integer(values.metrics ?? '10', '--metrics', 1, 64),
          durationMs,
          warmupMs: duration(values.warmup, '--warmup', 10_000),
          parts: only === undefined ? ['ingest', 'queries'] : [only],
        },
        json,
      )
    }
    if (scenario === 'cluster') {
      const history = values.history ?? 'memory'
      if (history !== 'memory' && history !== 'postgres') throw new UsageError(`--history must be memory or postgres, got ${JSON.stringify(history)}`)
      const nodes = (values.nodes ?? '1,2,3').split(',').map((n) => integer(n.trim(), '--nodes', 1, 8))
      const devicesOn = values['devices-on'] ?? 'all'
      if (devicesOn !== 'all' && devicesOn !== 'first') throw new UsageError(`--devices-on must be all or first, got ${JSON.stringify(devicesOn)}`)
      const durationMs = duration(values.duration, '--duration', 10_000)
      if (durationMs < 1000) throw new UsageError(`--duration must be at least 1s, got ${JSON.stringify(values.duration)}`)
      const opts = {
        nodes,
        standalone: values.standalone ?? false,
        // modest, so that three nodes, Redis and PostgreSQL stay well inside two cores; 12 clients and 120 devices divide by 1, 2 and 3
        devices: integer(values.devices ?? '120', '--devices', 1, 10_000),
        devicesOn,
        rate: integer(values.rate ?? '600', '--rate', 1, 100_000),
        clients: integer(values.clients ?? '12', '--clients', 0, 10_000),
        payloadSize: integer(values.payload ?? '60', '--payload', 40, 262_144),
        durationMs,
        warmupMs: duration(values.warmup, '--warmup', 2000),
        runs: integer(values.runs ?? '1', '--runs', 1, 100),
        history,
        ...(values.profile !== undefined && { profileDir: values.profile }),
      } satisfies Omit<ClusterBenchOptions, 'onProgress' | 'signal'>
      if (!redisInstalled()) throw new UsageError('redis-server is not installed; apt-get install redis-server')
      if (history === 'postgres' && !postgresInstalled()) throw new UsageError('PostgreSQL is not installed; apt-get install postgresql')
      return cluster(opts, json)
    }
    if (!(scenario in SCENARIOS)) {
      throw new UsageError(`--scenario must be light, heavy, broker, soak, scale, dashboard, footprint, history or cluster, got ${JSON.stringify(scenario)}`)
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

/** Targets that run Debian's mosquitto. */
const NEEDS_MOSQUITTO: readonly Target[] = ['mosquitto', 'pulseboard-mosquitto']

function chooseTargets(compare: boolean, target: string, scenario: string): Target[] {
  // embedded and external Pulseboard side by side in each round, so the two meet the same drift
  const all: Target[] = ['pulseboard', 'pulseboard-mosquitto', 'naive', 'broker', 'mosquitto']
  if (!all.includes(target as Target)) throw new UsageError(`--target must be one of ${all.join(', ')}, got ${JSON.stringify(target)}`)
  if (!compare) {
    if (NEEDS_MOSQUITTO.includes(target as Target) && !mosquittoInstalled()) throw new UsageError('mosquitto is not installed; apt-get install mosquitto')
    return [target as Target]
  }
  const chosen: Target[] = scenario === 'broker' ? ['broker', 'mosquitto'] : all
  return chosen.filter((t) => !NEEDS_MOSQUITTO.includes(t) || mosquittoInstalled())
}

function external(url: string, mqttUrl: string | undefined): ScenarioOptions['external'] {
  const http = new URL(url)
  const mqtt = new URL(mqttUrl ?? `mqtt://${http.hostname}:1883`)
  return { httpUrl: http.origin, host: mqtt.hostname, mqttPort: Number(mqtt.port || 1883) }
}

const fmt = (n: number, digits = 0) => n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits })

function summary(r: ScenarioResult): string {
  const each = r.processes ? ` (${r.processes.map((p) => `${p.name} ${fmt(p.cpuPercent)}`).join(' + ')})` : ''
  return `${fmt(r.deliveredPerSecond)} deliveries/s, p50 ${fmt(r.latency.p50, 2)} ms, p99 ${fmt(r.latency.p99, 2)} ms, lost ${r.lost}, CPU ${r.cpuPercent === null ? 'n/a' : `${fmt(r.cpuPercent)} %`}${each}`
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
    // each process's figures are medians of their own, so they need not add up to the system's median
    ...(first.processes && {
      processes: first.processes.map((p, i) => ({
        name: p.name,
        cpuPercent: pick((r) => r.processes?.[i]?.cpuPercent ?? null)!,
        rssMb: pick((r) => r.processes?.[i]?.rssMb ?? null)!,
      })),
    }),
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
    r.cpuPercent === null ? 'n/a' : fmt(r.cpuPercent) + parts(r, (p) => p.cpuPercent),
    r.rssMb === null ? 'n/a' : fmt(r.rssMb) + parts(r, (p) => p.rssMb),
    r.pauses ? `${fmt(r.pauses.eventLoopDelay.p99, 1)}/${fmt(r.pauses.eventLoopDelay.max, 1)}` : 'n/a',
    r.pauses ? `${fmt(r.pauses.gc.totalMs)} (${fmt(r.pauses.gc.maxMs, 1)})` : 'n/a',
    fmt(r.receiverLoopDelay.p99, 1),
    `${fmt(r.generatorCpu.publishers)}+${fmt(r.generatorCpu.receivers)}`,
  ])
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)))
  const line = (cells: string[]) => cells.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ')
  const notes = results
    .filter((r) => r.processes)
    .map((r) => `${r.target}: CPU % and RSS MB are the system's, ${r.processes!.map((p) => p.name).join(' + ')}; each process's in brackets${runs > 1 ? ' (its own median)' : ''}`)
  return [`\n${runs > 1 ? `medians of ${runs} runs` : 'one run'}:`, line(head), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line), ...notes].join('\n')
}

/** ` (a+b)`: each process's share of a figure, for a system of more than one. */
function parts(r: ScenarioResult, figure: (p: ProcessFigures) => number): string {
  return r.processes ? ` (${r.processes.map((p) => fmt(figure(p))).join('+')})` : ''
}

interface Ratio {
  deliveries: number
  p99: number
  /** Of the whole system: for a system of several processes, all of them together. */
  cpu: number | null
  /** A system of several processes against embedded Pulseboard: p50, memory, and its first process (Pulseboard's) alone. */
  p50?: number
  rss?: number | null
  firstProcess?: { name: string; cpu: number | null; rss: number | null }
}

const ratio = (a: number | null, b: number | null) => (a !== null && b ? a / b : null)

/**
 * `pulseboard/<target>` for every other target; a system of several processes (Pulseboard on
 * mosquitto) the other way round, `<target>/pulseboard`, against the embedded one, for the
 * system and for Pulseboard's own process.
 */
function ratios(results: ScenarioResult[]): Record<string, Ratio> {
  const ours = results.find((r) => r.target === 'pulseboard') ?? results[0]!
  const out: Record<string, Ratio> = {}
  for (const r of results) {
    if (r === ours) continue
    if (r.processes && ours.target === 'pulseboard') {
      const first = r.processes[0]!
      out[`${r.target}/${ours.target}`] = {
        deliveries: r.deliveredPerSecond / ours.deliveredPerSecond,
        p50: r.latency.p50 / ours.latency.p50,
        p99: r.latency.p99 / ours.latency.p99,
        cpu: ratio(r.cpuPercent, ours.cpuPercent),
        rss: ratio(r.rssMb, ours.rssMb),
        firstProcess: { name: first.name, cpu: ratio(first.cpuPercent, ours.cpuPercent), rss: ratio(first.rssMb, ours.rssMb) },
      }
      continue
    }
    out[`${ours.target}/${r.target}`] = {
      deliveries: ours.deliveredPerSecond / r.deliveredPerSecond,
      p99: ours.latency.p99 / r.latency.p99,
      cpu: ratio(ours.cpuPercent, r.cpuPercent),
    }
  }
  return out
}

function ratioLines(results: ScenarioResult[]): string[] {
  const x = (n: number | null) => (n === null ? 'n/a' : `${fmt(n, 2)}x`)
  const lines = Object.entries(ratios(results)).map(([pair, r]) => {
    if (r.firstProcess) {
      const alone = `${r.firstProcess.name} alone`
      return (
        `  ${pair}: deliveries/s ${x(r.deliveries)}, p50 ${x(r.p50 ?? null)}, p99 ${x(r.p99)}, ` +
        `CPU ${x(r.cpu)} for the system (${alone} ${x(r.firstProcess.cpu)}), RSS ${x(r.rss ?? null)} (${alone} ${x(r.firstProcess.rss)})`
      )
    }
    return `  ${pair}: deliveries/s ${fmt(r.deliveries, 2)}x, p99 ${fmt(r.p99, 2)}x${r.cpu === null ? '' : `, CPU ${fmt(r.cpu, 2)}x`}`
  })
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

/** The pages and rates of docs/benchmarks.md: messages/s of 5 readings each, 500 and 5,000 readings/s. */
const DASHBOARD_ROUTES = ['#/devices/bench-0', '#/'] as const
const DASHBOARD_RATES = [100, 1000] as const

interface DashboardOptions {
  devices: number
  rates: number[]
  routes: string[]
  durationMs: number
  runs: number
  everything: boolean
}

/** One page at one rate, as its runs' medians. */
type DashboardCase = DashboardBenchResult & { runs: number }

/**
 * Every page at every rate, round after round (page A, page B, ... then the next round), so that
 * what the shared machine does to one it does to the others; medians of the rounds.
 */
async function dashboard(opts: DashboardOptions, json: boolean): Promise<void> {
  const cases = opts.routes.flatMap((route) => opts.rates.flatMap((rate) => [false, ...(opts.everything ? [true] : [])].map((everything) => ({ route, rate, everything }))))
  process.stderr.write(
    `pulseboard bench: dashboard in headless Chromium, ${opts.devices} devices × 5 metrics; ${cases.length} case${cases.length > 1 ? 's' : ''}, ${opts.runs} round${opts.runs > 1 ? 's' : ''}, ${opts.durationMs / 1000} s measured each\n`,
  )
  const tty = process.stderr.isTTY
  const results = cases.map(() => [] as DashboardBenchResult[])
  for (let run = 1; run <= opts.runs; run++) {
    for (const [i, c] of cases.entries()) {
      const label = `[${run}/${opts.runs}] ${c.route} ${fmt(c.rate * 5)} readings/s${c.everything ? ', everything' : ''}`
      process.stderr.write(`${label}\n`)
      const result = await runDashboardBench({ devices: opts.devices, rate: c.rate, durationMs: opts.durationMs, route: c.route, everything: c.everything }, (line) =>
        process.stderr.write(tty ? `\r\x1b[K  ${line}` : `  ${line}\n`),
      )
      if (tty) process.stderr.write('\n')
      results[i]!.push(result)
    }
  }
  const medians: DashboardCase[] = results.map((rounds) => ({ ...medianOfDashboard(rounds), runs: rounds.length }))
  if (json) return void console.log(JSON.stringify({ scenario: 'dashboard', devices: opts.devices, durationMs: opts.durationMs, cases: medians, rounds: results }, null, 2))
  console.log(dashboardTable(medians, opts))
}

/** Numbers are medians, each taken alone; the heap series is the median round's by busy time. */
function medianOfDashboard(rounds: DashboardBenchResult[]): DashboardBenchResult {
  const med = (pick: (r: DashboardBenchResult) => number) => {
    const sorted = rounds.map(pick).sort((a, b) => a - b)
    const mid = Math.floor(sorted.length / 2)
    return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
  }
  const spreadOf = (pick: (r: DashboardBenchResult) => DashboardBenchResult['lag']) => ({
    samples: med((r) => pick(r).samples),
    p50: med((r) => pick(r).p50),
    p95: med((r) => pick(r).p95),
    max: med((r) => pick(r).max),
  })
  const byBusy = [...rounds].sort((a, b) => a.mainThreadBusy - b.mainThreadBusy)
  const middle = byBusy[Math.floor((byBusy.length - 1) / 2)]!
  return {
    ...middle,
    mainThreadBusy: med((r) => r.mainThreadBusy),
    scriptBusy: med((r) => r.scriptBusy),
    heapAfterGc: { start: med((r) => r.heapAfterGc.start), middle: med((r) => r.heapAfterGc.middle), end: med((r) => r.heapAfterGc.end) },
    bytesPerSecond: med((r) => r.bytesPerSecond),
    framesPerSecond: med((r) => r.framesPerSecond),
    lag: spreadOf((r) => r.lag),
    age: spreadOf((r) => r.age),
    unshown: med((r) => r.unshown),
    serverCpu: med((r) => r.serverCpu),
  }
}

/** The targets of issue 15 that a case is held to; null where none applies. */
function dashboardTargets(c: DashboardCase): { busy: number | null; kbps: number | null } {
  const device = c.route.startsWith('#/devices/')
  const overview = c.route === '#/' || c.route === ''
  if (c.everything) return { busy: null, kbps: null }
  if (device && c.readingsPerSecond === 500) return { busy: 7, kbps: 5 }
  if (device && c.readingsPerSecond === 5000) return { busy: 20, kbps: null }
  if (overview && c.readingsPerSecond === 5000) return { busy: 40, kbps: null }
  return { busy: null, kbps: null }
}

function dashboardTable(cases: DashboardCase[], opts: DashboardOptions): string {
  const mark = (value: number, target: number | null) => (target === null ? '' : value <= target ? ` (≤ ${target}: met)` : ` (≤ ${target}: NOT met)`)
  const lines = [`\n${opts.runs > 1 ? `medians of ${opts.runs} rounds` : 'one round'}, ${opts.durationMs / 1000} s each; KB = 1,000 bytes of WebSocket payload:`]
  for (const c of cases) {
    const t = dashboardTargets(c)
    const kbps = c.bytesPerSecond / 1000
    lines.push(
      `\n${c.route === '#/' ? 'overview #/' : `device page ${c.route}`}, ${fmt(c.readingsPerSecond)} readings/s${c.everything ? ', subscribed to everything (as before views)' : ''}`,
      `  main thread busy   ${fmt(c.mainThreadBusy, 1)} %${mark(c.mainThreadBusy, t.busy)} (script ${fmt(c.scriptBusy, 1)} %)`,
      `  into the page      ${fmt(kbps, kbps < 10 ? 2 : 1)} KB/s${mark(kbps, t.kbps)} in ${fmt(c.framesPerSecond, 1)} frames/s`,
      `  tile lag           p50 ${fmt(c.lag.p50, 1)} ms, p95 ${fmt(c.lag.p95, 1)} ms${c.everything || c.lag.samples === 0 ? '' : mark(c.lag.p95, 100)}, max ${fmt(c.lag.max, 1)} ms; ${fmt(c.lag.samples)} readings of ${fmt(c.tiles)} tiles${c.unshown > 0 ? `, ${fmt(c.unshown)} never shown` : ''}`,
      `  age when shown     p50 ${fmt(c.age.p50)} ms, p95 ${fmt(c.age.p95)} ms (since the server received the reading)`,
      `  JS heap            after a full GC ${fmt(c.heapAfterGc.start, 1)} MB at the start, ${fmt(c.heapAfterGc.middle, 1)} MB half way, ${fmt(c.heapAfterGc.end, 1)} MB at the end; ${halves(c.heap)}`,
      `  DOM nodes          ${fmt(c.domNodes)}; server CPU ${fmt(c.serverCpu, 1)} %`,
    )
  }
  return lines.join('\n')
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

interface HistoryOptions {
  devices: number
  rate: number
  metrics: number
  durationMs: number
  warmupMs: number
  parts: ('ingest' | 'queries')[]
}

/** One target of docs/benchmarks.md and whether this run met it; null when the run was too short to say. */
interface TargetLine {
  target: string
  result: string
  met: boolean | null
}

async function history(opts: HistoryOptions, json: boolean): Promise<number> {
  const tty = process.stderr.isTTY
  const onProgress = (line: string) => process.stderr.write(tty ? `\r\x1b[K${line}` : `${line}\n`)
  const readings = opts.rate * opts.metrics
  process.stderr.write(
    `pulseboard bench: history (${fmt(opts.devices)} devices, ${fmt(opts.rate)} messages/s of ${opts.metrics} metrics = ${fmt(readings)} readings/s ` +
      `into each of two servers, SQLite store and --no-store, ${fmt(opts.durationMs / 1000)} s after a ${fmt(opts.warmupMs / 1000)} s warm-up; then queries and export)\n`,
  )
  // Ctrl-C or SIGTERM: stop the servers and publishers and remove the temporary databases before exiting
  const abort = new AbortController()
  const stop = () => abort.abort()
  process.once('SIGINT', stop)
  process.once('SIGTERM', stop)
  let ingest: IngestResult | undefined
  let inProcess: HistoryBenchResult | undefined
  let http: HistoryHttpResult | undefined
  // a part that fails is reported and the others still run: ten minutes of ingest are not lost to a later error
  const errors: Record<string, string> = {}
  const attempt = async <T>(part: string, run: () => Promise<T>): Promise<T | undefined> => {
    try {
      return await run()
    } catch (err) {
      if (abort.signal.aborted) throw err
      errors[part] = (err as Error).message ?? String(err)
      if (tty) process.stderr.write('\r\x1b[K')
      process.stderr.write(`pulseboard bench: ${part} failed: ${errors[part]}\n`)
      return undefined
    }
  }
  try {
    if (opts.parts.includes('ingest')) {
      ingest = await attempt('ingest', () => runIngestBench({ ...opts, onProgress, signal: abort.signal }))
      if (tty) process.stderr.write('\r\x1b[K')
      if (ingest && !json) console.log(ingestReport(ingest))
    }
    if (opts.parts.includes('queries')) {
      inProcess = await attempt('queries in process', async () => {
        const dir = mkdtempSync(path.join(tmpdir(), 'pulseboard-history-queries-'))
        try {
          return await runHistoryBench({ dir, onProgress })
        } finally {
          rmSync(dir, { recursive: true, force: true })
        }
      })
      if (abort.signal.aborted) throw abort.signal.reason
      http = await attempt('queries over HTTP', () => runHistoryHttpBench({ onProgress, signal: abort.signal }))
      if (tty) process.stderr.write('\r\x1b[K')
    }
  } catch (err) {
    if (!abort.signal.aborted) throw err
    if (tty) process.stderr.write('\r\x1b[K')
    process.stderr.write('pulseboard bench: interrupted; the servers are stopped and their temporary files removed\n')
    return 130
  } finally {
    process.off('SIGINT', stop)
    process.off('SIGTERM', stop)
  }
  const targets = historyTargets(ingest, inProcess, http)
  const failed = Object.keys(errors).length > 0
  if (json) {
    console.log(JSON.stringify({ scenario: 'history', ...opts, ingest, queries: { inProcess, http }, targets, ...(failed && { errors }) }, null, 2))
    return failed ? 1 : 0
  }
  if (inProcess) console.log(queriesReport(inProcess, http))
  console.log('\ntargets:')
  const width = Math.max(...targets.map((t) => t.target.length))
  for (const t of targets) console.log(`  ${t.target.padEnd(width)}  ${t.met === null ? 'not judged' : t.met ? 'met' : 'NOT met'}: ${t.result}`)
  for (const [part, message] of Object.entries(errors)) console.log(`  ${part}: failed (${message})`)
  return failed ? 1 : 0
}

const mb = (bytes: number, digits = 1) => `${fmt(bytes / 1e6, digits)} MB`

function ingestReport(r: IngestResult): string {
  const head = ['server', 'CPU % median', 'mean', 'min–max', 'RSS MB median', 'max', 'first half', 'second half', 'msgs in/s', 'publisher CPU %']
  const row = (name: string, s: IngestResult['memory']) => [
    name,
    fmt(s.cpu.median, 1),
    fmt(s.cpu.mean, 1),
    `${fmt(s.cpu.min)}–${fmt(s.cpu.max)}`,
    fmt(s.rssMb.median),
    fmt(s.rssMb.max),
    `${fmt(s.rssMb.firstHalf[0])}–${fmt(s.rssMb.firstHalf[1])}`,
    `${fmt(s.rssMb.secondHalf[0])}–${fmt(s.rssMb.secondHalf[1])}`,
    fmt(s.messagesInPerSec),
    fmt(s.publisherCpu),
  ]
  const rows = [row('SQLite store', r.sqlite), row('--no-store', r.memory)]
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((c) => c[i]!.length)))
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ')
  const h = r.sqlite.history
  const f = h.file
  const sign = (n: number) => `${n >= 0 ? '+' : ''}${fmt(n, 1)}`
  return [
    `\ningest: ${fmt(r.devices)} devices × ${r.metrics} metrics, ${fmt(r.offeredReadingsPerSec)} readings/s offered to each server, ` +
      `${fmt(r.durationMs / 1000)} s measured side by side (CPU per ${fmt(r.intervalMs / 1000)} s interval, ${r.sqlite.cpu.samples.length} intervals)`,
    line(head),
    line(widths.map((w) => '-'.repeat(w))),
    ...rows.map(line),
    `difference: ${sign(r.cpuDifference.median)} points of one core (medians), ${sign(r.cpuDifference.mean)} (means), ${sign(r.cpuDifference.pairedMedian)} (median of the per-interval differences)`,
    `/api/health answer, asked every second: SQLite store median ${fmt(r.sqlite.healthAnswerMs.median, 1)} ms, p99 ${fmt(r.sqlite.healthAnswerMs.p99)} ms, ` +
      `max ${fmt(r.sqlite.healthAnswerMs.max)} ms; --no-store ${fmt(r.memory.healthAnswerMs.median, 1)}, ${fmt(r.memory.healthAnswerMs.p99)}, ${fmt(r.memory.healthAnswerMs.max)} ms` +
      (r.sqlite.healthAnswerMs.failed + r.memory.healthAnswerMs.failed > 0 ? `; unanswered within 30 s: ${r.sqlite.healthAnswerMs.failed}, ${r.memory.healthAnswerMs.failed}` : ''),
    `CPU % per interval, SQLite store: ${r.sqlite.cpu.samples.map((c) => fmt(c)).join(' ')}`,
    `                   --no-store:   ${r.memory.cpu.samples.map((c) => fmt(c)).join(' ')}`,
    '',
    'SQLite store:',
    `  readings kept     ${fmt(h.readingsPerSec)}/s of ${fmt(r.offeredReadingsPerSec)}/s offered (rows stamped inside the window; ${fmt(h.writtenPerSec)}/s written)`,
    `  over the run      ${fmt(h.kept.rows)} rows of ${fmt(h.kept.sent)} readings sent (${fmt((h.kept.rows / h.kept.sent) * 100, 1)} %` +
      `${h.kept.rows < h.kept.sent ? '; the rest replaced by a reading of the same series and millisecond' : ''}); ${fmt(f.messages)} messages logged, ` +
      `${fmt(f.sameMillisecondMessages)} of them in the same millisecond as another from their device`,
    `  queue             max ${fmt(h.queueDepth.max)}, median ${fmt(h.queueDepth.median)} (sampled every second); dropped ${fmt(h.dropped)}, write failures ${fmt(h.writeFailures)}`,
    `  one write         median ${fmt(h.writeMs.median, 1)} ms, p99 ${fmt(h.writeMs.p99, 1)} ms, max ${fmt(h.writeMs.max, 1)} ms (the last one, read every second; the event loop waits for it)`,
    `  database          ${mb(f.bytes)} after shutdown (${mb(h.dbBytesAtEnd)} with the WAL while running): readings ${mb(f.parts.readings)}, rollups ${mb(f.parts.rollups)}, ` +
      `message log ${mb(f.parts.log)} (${fmt(h.logBytesPerMessage)} B a message), broker ${mb(f.parts.broker)}, other ${mb(f.parts.other)}`,
    `  per million       readings and rollups ${mb(h.bytesPerMillionReadings.readingsAndRollups)}; the whole file ${mb(h.bytesPerMillionReadings.file)}`,
    ...(Object.keys(h.limits).length ? [`  bounds reached    ${Object.entries(h.limits).map(([k, n]) => `${k} ${fmt(n)}`).join(', ')}`] : []),
    `machine: ${r.machine.cores} cores, busy ${fmt(r.machine.busyPercent)} % of one core over the window: this bench ${fmt(r.machine.benchPercent)} %, other processes ${fmt(r.machine.otherPercent)} %`,
  ].join('\n')
}

function queriesReport(p: HistoryBenchResult, h: HistoryHttpResult | undefined): string {
  const q = (f: { medianMs: number; buckets: number; peakKept: boolean }) => `${fmt(f.medianMs, 1)} ms, ${fmt(f.buckets)} buckets${f.peakKept ? '' : ', PEAK LOST'}`
  const over = (f: (h: HistoryHttpResult) => string) => (h ? f(h) : 'failed')
  const rows: [string, string, string][] = [
    ['30 days at 1/s (2,592,000 points), maxPoints 1000', q(p.query30d), over((h) => q(h.query30d))],
    ['24 h at 10 Hz (864,000 points), maxPoints 1000', q(p.query24h10Hz), over((h) => q(h.query24h10Hz))],
    [`24 h at 10 Hz, default maxPoints (${fmt(p.query24h10HzDefault.maxPoints)})`, q(p.query24h10HzDefault), ''],
    ['CSV export of 1,000,000 rows', `${fmt(p.export.rowsPerSec)} rows/s`, over((h) => `${fmt(h.export.rowsPerSec)} rows/s`)],
    ['  memory growth while exporting', `${mb(p.export.rssGrowthBytes)} (this process)`, over((h) => `${mb(h.export.serverRssGrowthBytes)} RSS of the server`)],
    [
      '  of which',
      '',
      over((h) => `heap ${mb(h.export.serverHeap.peakBytes - h.export.serverHeap.beforeBytes)}, buffers ${mb(h.export.serverExternal.peakBytes - h.export.serverExternal.beforeBytes)}`),
    ],
    ['  server CPU while exporting', '', over((h) => `${fmt(h.export.serverCpuPercent)} % of one core`)],
    ['database per million readings', mb(p.size.bytesPerMillionReadings), ''],
  ]
  const widths = [0, 1, 2].map((i) => Math.max(...rows.map((r) => r[i]!.length), ['', 'in process', 'over HTTP'][i]!.length))
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()
  return [
    `\nqueries and export, SQLite store (medians of ${p.query30d.runs}); filled with ${fmt(p.fill.readings)} readings at ${fmt(p.fill.rowsPerSec)} rows/s:`,
    line(['', 'in process', 'over HTTP']),
    ...rows.map(line),
  ].join('\n')
}

function historyTargets(ingest: IngestResult | undefined, p: HistoryBenchResult | undefined, h: HistoryHttpResult | undefined): TargetLine[] {
  const out: TargetLine[] = []
  if (ingest) {
    const hist = ingest.sqlite.history
    const full = ingest.durationMs >= INGEST_TARGETS.durationMs
    const kept = hist.readingsPerSec >= INGEST_TARGETS.readingsPerSec * 0.99 && hist.dropped === 0
    out.push({
      target: `${fmt(INGEST_TARGETS.readingsPerSec)} readings/s for ${INGEST_TARGETS.durationMs / 60_000} min`,
      result: `${fmt(hist.readingsPerSec)} readings/s stored for ${fmt(ingest.durationMs / 1000)} s`,
      met: kept && full ? true : !kept ? false : null,
    })
    out.push({
      target: `CPU at most ${INGEST_TARGETS.cpuDifferencePoints} points of one core above --no-store`,
      result: `${fmt(ingest.cpuDifference.median, 1)} points (medians: ${fmt(ingest.sqlite.cpu.median, 1)} % against ${fmt(ingest.memory.cpu.median, 1)} %)`,
      met: ingest.cpuDifference.median <= INGEST_TARGETS.cpuDifferencePoints,
    })
    out.push({
      target: 'the store queue never overflows',
      result: `${fmt(hist.dropped)} dropped, queue at most ${fmt(hist.queueDepth.max)}`,
      met: hist.dropped === INGEST_TARGETS.dropped,
    })
  }
  // each query target is judged on every measurement there is: in process, and over HTTP when it ran
  type Figure = { medianMs: number; buckets: number }
  const both = (f: (r: { query30d: Figure; query24h10Hz: Figure }) => Figure) => [p, h].flatMap((r) => (r ? [f(r)] : []))
  if (p || h) {
    const where = (inProc: string | undefined, overHttp: string | undefined) =>
      [inProc && `${inProc} in process`, overHttp && `${overHttp} over HTTP`].filter(Boolean).join(', ')
    const q30 = both((r) => r.query30d)
    const q24 = both((r) => r.query24h10Hz)
    out.push({
      target: `30 days in at most 1000 buckets within ${HISTORY_TARGETS.query30dMs} ms`,
      result: `${where(p && `${fmt(p.query30d.medianMs, 1)} ms`, h && `${fmt(h.query30d.medianMs, 1)} ms`)}; ${fmt(Math.max(...q30.map((x) => x.buckets)))} buckets`,
      met: q30.every((x) => x.medianMs <= HISTORY_TARGETS.query30dMs && x.buckets <= 1000),
    })
    out.push({
      target: `24 h at 10 Hz within ${HISTORY_TARGETS.query24h10HzMs} ms`,
      result: where(p && `${fmt(p.query24h10Hz.medianMs, 1)} ms`, h && `${fmt(h.query24h10Hz.medianMs, 1)} ms`),
      met: q24.every((x) => x.medianMs <= HISTORY_TARGETS.query24h10HzMs),
    })
    const rates = [p?.export.rowsPerSec, h?.export.rowsPerSec].filter((x): x is number => x !== undefined)
    out.push({
      target: `CSV export at least ${fmt(HISTORY_TARGETS.exportRowsPerSec)} rows/s`,
      result: where(p && `${fmt(p.export.rowsPerSec)} rows/s`, h && `${fmt(h.export.rowsPerSec)} rows/s`),
      met: rates.every((r) => r >= HISTORY_TARGETS.exportRowsPerSec),
    })
    const growth = [p?.export.rssGrowthBytes, h?.export.serverRssGrowthBytes].filter((x): x is number => x !== undefined)
    const mib = (bytes: number) => `${fmt(bytes / 2 ** 20, 1)} MiB`
    out.push({
      target: `memory growth while exporting 1 M rows at most ${HISTORY_TARGETS.exportRssGrowthBytes / 2 ** 20} MiB`,
      result: where(p && mib(p.export.rssGrowthBytes), h && `${mib(h.export.serverRssGrowthBytes)} (the server's RSS)`),
      met: growth.every((g) => g <= HISTORY_TARGETS.exportRssGrowthBytes),
    })
  }
  return out
}

async function cluster(opts: Omit<ClusterBenchOptions, 'onProgress' | 'signal'>, json: boolean): Promise<number> {
  const tty = process.stderr.isTTY
  process.stderr.write(
    `pulseboard bench: cluster (${fmt(opts.devices)} devices, ${fmt(opts.rate)} msg/s in all, ${fmt(opts.clients)} /live clients, ` +
      `${opts.standalone ? 'standalone, ' : ''}${opts.nodes.join(', ')} nodes; history ${opts.history}; ${opts.runs} round${opts.runs > 1 ? 's' : ''} ` +
      `of ${fmt(opts.warmupMs / 1000)} s warm-up and ${fmt(opts.durationMs / 1000)} s measured each)\n`,
  )
  // Ctrl-C or SIGTERM: every node, receiver, Redis and PostgreSQL is stopped before exiting
  const abort = new AbortController()
  const stop = () => abort.abort()
  process.once('SIGINT', stop)
  process.once('SIGTERM', stop)
  let result: ClusterBenchResult
  try {
    result = await runClusterBench({
      ...opts,
      signal: abort.signal,
      // a status line that stays on one line in a terminal; the summary of each configuration stays
      onProgress: (line) => {
        const done = /: [\d,]+ deliveries\/s, p50/.test(line)
        if (tty) return void process.stderr.write(`\r\x1b[K${line}${done ? '\n' : ''}`)
        // in a log, every fifth second of the window is enough
        const second = /: measure (\d+)\//.exec(line)?.[1]
        if (/: warm-up /.test(line) || (second !== undefined && Number(second) % 5 !== 0)) return
        process.stderr.write(`${line}\n`)
      },
    })
  } catch (err) {
    if (tty) process.stderr.write('\r\x1b[K')
    if (!abort.signal.aborted) throw err
    process.stderr.write('pulseboard bench: interrupted; the nodes, Redis and PostgreSQL are stopped\n')
    return 130
  } finally {
    process.off('SIGINT', stop)
    process.off('SIGTERM', stop)
  }
  if (tty) process.stderr.write('\r\x1b[K')
  if (json) {
    console.log(JSON.stringify({ scenario: 'cluster', ...result }, null, 2))
  } else {
    console.log(clusterReport(result))
  }
  // every run, not only the medians: one lost or duplicated message is a failure
  return result.runs.some((m) => m.lost > 0 || m.duplicates > 0) ? 1 : 0
}

/** A table: the first column left-aligned, the others right-aligned. */
function grid(head: string[], rows: string[][]): string[] {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((c) => c[i]!.length)))
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ')
  return [line(head), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)]
}

function clusterReport(r: ClusterBenchResult): string {
  const o = r.options
  const what = o.runs > 1 ? `medians of ${o.runs} rounds` : 'one round'
  const pg = r.medians.some((m) => m.postgres)
  const head = [
    'configuration', 'deliveries/s', 'p50 ms', 'p90 ms', 'p99 ms', 'max ms', 'lost', 'dup',
    'nodes CPU %', 'Redis CPU %', 'Redis RSS MB', ...(pg ? ['PostgreSQL CPU %'] : []),
    'system CPU %', 'µs/msg', 'µs/delivery', 'generator CPU %', 'machine busy %',
  ]
  const rows = r.medians.map((m) => [
    m.config,
    fmt(m.deliveriesPerSec),
    fmt(m.latency.p50, 2),
    fmt(m.latency.p90, 2),
    fmt(m.latency.p99, 1),
    fmt(m.latency.max, 1),
    fmt(m.lost),
    fmt(m.duplicates),
    `${fmt(m.nodesCpuPercent, 1)}${m.nodes > 1 ? ` (${m.perNode.map((n) => fmt(n.cpuPercent)).join('+')})` : ''}`,
    m.redis ? fmt(m.redis.cpuPercent, 1) : '-',
    m.redis ? fmt(m.redis.rssMb, 1) : '-',
    ...(pg ? [m.postgres ? fmt(m.postgres.cpuPercent, 1) : '-'] : []),
    fmt(m.systemCpuPercent, 1),
    fmt(m.cpuPerMessageUs.system, 1),
    m.deliveriesPerSec > 0 ? fmt(m.cpuPerDeliveryUs, 2) : '-',
    `${fmt(m.generatorCpu.publishers)} + ${fmt(m.generatorCpu.receivers)}`,
    `${fmt(m.machine.busyPercent)} (others ${fmt(m.machine.otherPercent)})`,
  ])
  const nodeHead = ['configuration', 'node', 'devices', 'clients', 'msgs in/s', 'deliveries/s', 'p50 ms', 'p99 ms', 'lost', 'dup', 'CPU %', 'RSS MB', 'µs/msg in', 'µs/delivery', 'loop p99 ms']
  const nodeRows = r.medians.flatMap((m) =>
    m.perNode.map((n) => [
      m.config,
      n.node,
      fmt(n.devices),
      fmt(n.clients),
      fmt(n.messagesInPerSec),
      fmt(n.deliveriesPerSec),
      fmt(n.latency.p50, 2),
      fmt(n.latency.p99, 1),
      fmt(n.lost),
      fmt(n.duplicates),
      fmt(n.cpuPercent, 1),
      fmt(n.rssMb),
      fmt(n.cpuPerMessageInUs, 1),
      n.deliveriesPerSec > 0 ? fmt(n.cpuPerDeliveryUs, 2) : '-',
      fmt(n.eventLoopDelay.p99, 1),
    ]),
  )
  const x = (n: number | null) => (n === null ? 'n/a' : `${fmt(n, 2)}x`)
  const out = [
    `\ncluster: ${fmt(o.devices)} devices${o.devicesOn === 'first' ? ', all on node a' : ''}, ${fmt(o.rate)} msg/s in all, ${fmt(o.clients)} /live clients each receiving everything; ${what}, ${fmt(o.durationMs / 1000)} s measured each`,
    ...grid(head, rows),
    '',
    'per node (µs/msg in: its CPU per message its own devices published to it; µs/delivery: per message delivered to one of its clients):',
    ...grid(nodeHead, nodeRows),
  ]
  if (r.ratios.length) {
    out.push('', 'ratios to the single node, same run:')
    for (const q of r.ratios) {
      out.push(
        `  ${q.config} / ${q.against}: deliveries/s ${x(q.deliveries)}, p50 ${x(q.p50)}, p99 ${x(q.p99)}, system CPU ${x(q.systemCpu)}, ` +
          `nodes CPU ${x(q.nodesCpu)}, CPU of one node ${x(q.perNodeCpu)}, Redis ${x(q.redisCpu)}${pg ? `, PostgreSQL ${x(q.postgresCpu)}` : ''}`,
      )
    }
  }
  if (r.fit) {
    const f = r.fit
    out.push(
      '',
      `fit over ${f.nodes.join(', ')} nodes, µs of CPU per message published:`,
      `  each node   ${fmt(f.sharedUsPerMessage, 1)} for every message of the cluster + ${fmt(f.dividedUsPerMessage, 1)} / n for the work shared out ` +
        `(its own devices, its own ${fmt(o.clients)}/n clients${pg ? ', storing its own readings' : ''})`,
      `  Redis       ${fmt(f.redisUsPerMessage.fixed, 1)} ${f.redisUsPerMessage.perNode < 0 ? '-' : '+'} ${fmt(Math.abs(f.redisUsPerMessage.perNode), 1)} × n`,
    )
  }
  const withPg = r.medians.filter((m): m is ClusterRun & { postgres: NonNullable<ClusterRun['postgres']> } => m.postgres !== null)
  if (withPg.length) {
    out.push('', 'PostgreSQL (the postmaster and every process under it):')
    out.push(
      ...grid(
        ['configuration', 'CPU %', 'memory MB (PSS)', 'processes', 'readings/s kept', 'messages/s logged', 'WAL KB/s', 'WAL B/reading', 'table B/reading', 'log B/message', 'µs/reading'],
        withPg.map((m) => {
          const p = m.postgres
          return [
            m.config,
            fmt(p.cpuPercent, 1),
            fmt(p.memoryMb),
            fmt(p.processes),
            fmt(p.readingsPerSec),
            fmt(p.messagesPerSec),
            fmt(p.walBytesPerSec / 1000),
            fmt(p.walBytesPerReading),
            fmt(p.bytesPerReading),
            fmt(p.bytesPerMessage),
            fmt(p.cpuPerReadingUs, 2),
          ]
        }),
      ),
    )
  }
  const bad = r.runs.filter((m) => m.lost > 0 || m.duplicates > 0)
  out.push(
    '',
    bad.length
      ? `NOT exactly once: ${bad
          .map((m) => {
            const skipped = m.perNode.reduce((sum, n) => sum + (n.health?.fanoutDropped ?? 0), 0)
            return `round ${m.round}, ${m.config}: lost ${fmt(m.lost)}, duplicates ${fmt(m.duplicates)} (messages the fan-out skipped for lagging clients since start: ${fmt(skipped)})`
          })
          .join('; ')}`
      : 'every message delivered exactly once to every client, in every configuration: none lost, no duplicates',
  )
  return out.join('\n')
}
