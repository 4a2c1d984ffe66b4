/**
 * `pulseboard bench --scenario cluster`: 1, 2 and 3 nodes of a cluster on one Redis (and
 * optionally one PostgreSQL), each node its own process, under the same load each time: devices
 * spread round robin over the nodes, `/live` receivers spread over them, each receiving
 * everything. What each node, Redis and PostgreSQL cost per message, side by side in one run.
 */
import { setTimeout as delay } from 'node:timers/promises'
import * as hdr from 'hdr-histogram-js'
import type { HealthReport } from '../protocol/health.ts'
import { spawnRole, type Role } from './ipc.ts'
import { startPostgres, type Postgres } from './postgres.ts'
import { cpuPercent, machinePercent, sampleMachine, sampleProcess, sampleProcessTree } from './process-stats.ts'
import type { PublisherConfig, PublisherReport } from './publisher.ts'
import type { ReceiverConfig, ReceiverReport } from './receiver.ts'
import { startRedis, type RedisServer } from './redis.ts'
import type { ServeConfig, ServeReady, ServerPauses } from './serve.ts'

export interface ClusterBenchOptions {
  /** Cluster sizes, in order within each round. @default [1, 2, 3] */
  nodes: number[]
  /** Also a single Pulseboard without Redis, first in each round: what joining a cluster costs. */
  standalone: boolean
  /** Devices, each its own MQTT connection; device d connects to node d mod n (see `devicesOn`). */
  devices: number
  /**
   * `all`: the devices spread over the nodes; `first`: every device on node a, so that the other
   * nodes show what the cluster's messages cost a node that takes in none of them.
   */
  devicesOn: 'all' | 'first'

  /** Messages per second from all devices together, whatever the number of nodes. */
  rate: number
  /** `/live` clients (each its own connection, every message), spread over the nodes. */
  clients: number
  payloadSize: number
  warmupMs: number
  durationMs: number
  /** Rounds: each measures every configuration once, in order; figures are medians across rounds. */
  runs: number
  /** `postgres`: a throwaway PostgreSQL for the whole bench, a new database for each configuration. */
  history: 'memory' | 'postgres'
  /** Write a V8 CPU profile of each node here (`node --cpu-prof`). */
  profileDir?: string
  onProgress?: (line: string) => void
  signal?: AbortSignal
}

/** One node of one configuration, over the measured window. */
export interface NodeFigures {
  node: string
  /** Devices connected to it, and `/live` clients. */
  devices: number
  clients: number
  /** Messages its own devices published to it (the ones it stores and broadcasts). */
  messagesInPerSec: number
  /** Messages delivered to its `/live` clients. */
  deliveriesPerSec: number
  /** Publisher's timestamp to receipt, of its clients, ms. */
  latency: { p50: number; p99: number; max: number }
  lost: number
  duplicates: number
  /** % of one core. */
  cpuPercent: number
  rssMb: number
  /** µs of this node's CPU per message delivered to one of its clients. */
  cpuPerDeliveryUs: number
  /** µs of this node's CPU per message its devices published to it. */
  cpuPerMessageInUs: number
  eventLoopDelay: ServerPauses['eventLoopDelay']
  /**
   * `/api/health` after the drain: messages its broker took in since it started, the nodes it
   * counts in Redis, what the fan-out skipped for clients that lagged (messages, and clients
   * disconnected for lagging too long), and its store's queue, drops and failed writes. Null when
   * it did not answer.
   */
  health: {
    messagesIn: number
    clusterNodes: number | null
    fanoutDropped: number
    laggedOut: number
    storeQueue: number
    storeDropped: number
    storeWriteFailures: number
  } | null
}

export interface ClusterRun {
  /** `standalone`, `1 node`, `2 nodes`, ... */
  config: string
  nodes: number
  clustered: boolean
  round: number
  /** Messages published per second over the window, by all devices. */
  sentPerSec: number
  deliveriesPerSec: number
  latency: { p50: number; p90: number; p99: number; max: number }
  lost: number
  duplicates: number
  perNode: NodeFigures[]
  /** The nodes together, % of one core. */
  nodesCpuPercent: number
  nodesRssMb: number
  redis: { cpuPercent: number; rssMb: number } | null
  postgres: PostgresFigures | null
  /** Nodes, Redis and PostgreSQL together. */
  systemCpuPercent: number
  /** µs of CPU per message published, for the whole cluster: of the nodes, of Redis, of PostgreSQL, and all. */
  cpuPerMessageUs: { nodes: number; redis: number; postgres: number; system: number }
  /** µs of the whole system's CPU per delivery. */
  cpuPerDeliveryUs: number
  /** The load generator, % of one core: one publisher process, one receiver process per node. */
  generatorCpu: { publishers: number; receivers: number }
  /** The whole machine over the window, % of one core (200 = both cores), and what of it was no process of this bench. */
  machine: { busyPercent: number; otherPercent: number }
  /** From nothing to every node, receiver and device connected, ms. */
  startupMs: number
}

export interface PostgresFigures {
  /** The postmaster and every process under it, % of one core; memory as PSS (shared buffers once). */
  cpuPercent: number
  memoryMb: number
  processes: number
  /** Rows stamped inside the window, per second: readings and logged messages. */
  readingsPerSec: number
  messagesPerSec: number
  /** WAL written per second over the window (`pg_current_wal_lsn`; this cluster runs with `full_page_writes=off`), and per reading kept. */
  walBytesPerSec: number
  walBytesPerReading: number
  /** What the tables grew by, per row added: readings with their index and rollups, per reading; the message log with its indexes, per message. */
  bytesPerReading: number
  bytesPerMessage: number
  /** µs of PostgreSQL CPU per reading kept. */
  cpuPerReadingUs: number
}

/** Configurations against the single node of the same run, of medians. */
export interface ClusterRatio {
  config: string
  against: string
  deliveries: number
  p50: number
  p99: number
  systemCpu: number
  nodesCpu: number
  /** A node's CPU, the mean of its nodes, against the single node's. */
  perNodeCpu: number
  redisCpu: number | null
  postgresCpu: number | null
}

/**
 * Each node's CPU as `shared + divided / n`, fitted over the cluster sizes measured: `shared` is what
 * every node spends on every message of the cluster (each node's broker receives every publish from
 * Redis and its registry reads it; each node reads every `/live` broadcast from the stream), and
 * `divided` what the cluster spends on the work it shares out (its own devices' messages, its own
 * clients' deliveries, the storage of its own readings). Both in µs per message published.
 */
export interface ClusterFit {
  sharedUsPerMessage: number
  dividedUsPerMessage: number
  /** Redis CPU as `fixed + perNode × n`, µs per message published. */
  redisUsPerMessage: { fixed: number; perNode: number }
  /** Cluster sizes the fit used. */
  nodes: number[]
}

export interface ClusterBenchResult {
  options: Omit<ClusterBenchOptions, 'onProgress' | 'signal'>
  /** Every configuration of every round, in the order run. */
  runs: ClusterRun[]
  /** Per configuration, the median of each figure across rounds. */
  medians: ClusterRun[]
  ratios: ClusterRatio[]
  fit: ClusterFit | null
}

const SECOND = 1000
/**
 * A role that has not said it is ready by then ends the bench with an error (a process of one is
 * ended when the bench exits: roles exit when their IPC channel closes).
 */
const START_TIMEOUT_MS = 60_000

/** Splits `total` into `parts` near-equal whole numbers, zeros kept: part i goes to node i. */
function spread(total: number, parts: number): number[] {
  return Array.from({ length: parts }, (_, i) => Math.floor(total / parts) + (i < total % parts ? 1 : 0))
}

const nodeName = (i: number) => String.fromCharCode(97 + i)
const round1 = (n: number) => Math.round(n * 10) / 10
const round2 = (n: number) => Math.round(n * 100) / 100

export async function runClusterBench(opts: ClusterBenchOptions): Promise<ClusterBenchResult> {
  const progress = opts.onProgress ?? (() => {})
  const configs = [...(opts.standalone ? [{ nodes: 1, clustered: false }] : []), ...opts.nodes.map((nodes) => ({ nodes, clustered: true }))]
  const runs: ClusterRun[] = []
  let postgres: Postgres | null = null
  try {
    if (opts.history === 'postgres') {
      progress('cluster: starting PostgreSQL')
      postgres = await startPostgres()
    }
    for (let round = 1; round <= opts.runs; round++) {
      for (const config of configs) {
        const label = `[${round}/${opts.runs}] ${configName(config)}`
        runs.push(await runConfiguration({ ...config, round, label, opts, postgres, progress }))
        opts.signal?.throwIfAborted()
      }
    }
  } finally {
    await postgres?.close().catch(() => {})
  }
  const medians = configs.map((c) => medianOf(runs.filter((r) => r.config === configName(c))))
  const { onProgress: _p, signal: _s, ...options } = opts
  // with every device on node a, a node's work is not shared out: there is nothing to fit
  return { options, runs, medians, ratios: ratiosOf(medians), fit: options.devicesOn === 'all' ? fitOf(medians) : null }
}

function configName(c: { nodes: number; clustered: boolean }): string {
  return c.clustered ? `${c.nodes} node${c.nodes > 1 ? 's' : ''}` : 'standalone'
}

interface ConfigurationRun {
  nodes: number
  clustered: boolean
  round: number
  label: string
  opts: ClusterBenchOptions
  postgres: Postgres | null
  progress: (line: string) => void
}

/** One configuration, started from nothing and stopped at the end: a new Redis, a new database. */
async function runConfiguration(c: ConfigurationRun): Promise<ClusterRun> {
  const { opts, progress, label } = c
  const signal = opts.signal
  let redis: RedisServer | null = null
  const servers: Role<ServeReady, never>[] = []
  const roles: Role<unknown, unknown>[] = []
  let database: string | null = null
  const since = performance.now()
  try {
    progress(`${label}: starting`)
    if (c.clustered) redis = await startRedis()
    if (c.postgres) database = await c.postgres.createDatabase()
    const started = await Promise.allSettled(
      Array.from({ length: c.nodes }, (_, i) => {
        const config: ServeConfig = {
          target: 'pulseboard',
          ...(redis && { cluster: { url: redis.url, nodeId: nodeName(i) } }),
          ...(database !== null && { postgresUrl: database }),
        }
        return within(START_TIMEOUT_MS, `node ${nodeName(i)} to start`, spawnRole<ServeReady, never>('serve', config, opts.profileDir ? ['--cpu-prof', '--cpu-prof-dir', opts.profileDir] : []))
      }),
    )
    for (const s of started) if (s.status === 'fulfilled') servers.push(s.value)
    for (const s of started) if (s.status === 'rejected') throw s.reason
    signal?.throwIfAborted()
    const httpUrls = servers.map((s) => `http://127.0.0.1:${s.ready.port}`)

    // the receivers and the devices connect at once; the devices publish only once told to start
    const clients = spread(opts.clients, c.nodes)
    const receiverSpawns = servers.map((s, i) =>
      clients[i]! > 0
        ? within(
            START_TIMEOUT_MS,
            `the receivers of node ${nodeName(i)} to connect`,
            spawnRole<object, ReceiverReport>('receiver', {
              kind: 'live',
              httpUrl: httpUrls[i]!,
              host: '127.0.0.1',
              mqttPort: s.ready.mqttPort,
              clients: clients[i]!,
              qos: 0,
            } satisfies ReceiverConfig),
          )
        : Promise.resolve(null),
    )
    const publisherSpawn = within(
      START_TIMEOUT_MS,
      'the devices to connect',
      spawnRole<object, PublisherReport>('publisher', {
        host: '127.0.0.1',
        port: servers[0]!.ready.mqttPort,
        ports: (opts.devicesOn === 'first' ? servers.slice(0, 1) : servers).map((s) => s.ready.mqttPort),
        first: 0,
        count: opts.devices,
        rate: opts.rate,
        qos: 0,
        payloadSize: opts.payloadSize,
      } satisfies PublisherConfig),
    )
    const [publisherSettled, ...receiversSettled] = await Promise.allSettled([publisherSpawn, ...receiverSpawns])
    // whatever started is stopped at the end, also when another part failed to
    for (const r of [publisherSettled!, ...receiversSettled]) if (r.status === 'fulfilled' && r.value) roles.push(r.value)
    for (const r of [publisherSettled!, ...receiversSettled]) if (r.status === 'rejected') throw r.reason
    const publisher = (publisherSettled as PromiseFulfilledResult<Role<object, PublisherReport>>).value
    const receiverOf = receiversSettled.map((r) => (r as PromiseFulfilledResult<Role<object, ReceiverReport> | null>).value)
    const receivers = receiverOf.filter((r): r is Role<object, ReceiverReport> => r !== null)
    signal?.throwIfAborted()
    const startupMs = Math.round(performance.now() - since)

    const heard = new Map<Role<unknown, unknown>, number>()
    for (const r of receivers) r.onProgress(({ received }) => heard.set(r, received))
    const totalHeard = () => [...heard.values()].reduce((a, b) => a + b, 0)

    publisher.send({ type: 'start' })
    for (let s = 0; s < opts.warmupMs; s += SECOND) {
      progress(`${label}: warm-up ${s / SECOND}/${opts.warmupMs / SECOND} s`)
      await delay(Math.min(SECOND, opts.warmupMs - s), undefined, { signal })
    }

    const pg0 = c.postgres && database ? await pgSizes(c.postgres, database) : null
    publisher.send({ type: 'measure' })
    for (const s of servers) s.send({ type: 'measure' })
    const measureAt = performance.now()
    const epoch0 = Date.now()
    const machine0 = sampleMachine()
    const bench0 = process.cpuUsage()
    const node0 = servers.map((s) => sampleProcess(s.pid))
    const redis0 = redis ? sampleProcess(redis.pid) : null
    const pgTree0 = c.postgres ? sampleProcessTree(c.postgres.postmasterPid()) : null
    const gen0 = [publisher, ...receivers].map((r) => sampleProcess(r.pid))
    let last = { nodes: node0, redis: redis0, heard: totalHeard(), at: performance.now() }
    const t0 = performance.now()
    // a status line a second; the last tick is the end of the window, so the loop ends with it
    for (let tick = 1; ; tick++) {
      const wait = t0 + Math.min(tick * SECOND, opts.durationMs) - performance.now()
      if (wait > 0) await delay(wait, undefined, { signal })
      const now = { nodes: servers.map((s) => sampleProcess(s.pid)), redis: redis ? sampleProcess(redis.pid) : null, heard: totalHeard(), at: performance.now() }
      const rate = ((now.heard - last.heard) / (now.at - last.at)) * SECOND
      progress(
        `${label}: measure ${Math.round((now.at - t0) / SECOND)}/${opts.durationMs / SECOND} s, ${fmt(rate)} deliveries/s, ` +
          `node CPU ${now.nodes.map((n, i) => fmt(cpuPercent(last.nodes[i]!, n))).join(' + ')} %` +
          (now.redis && last.redis ? `, Redis ${fmt(cpuPercent(last.redis, now.redis))} %` : ''),
      )
      last = now
      if (now.at - t0 >= opts.durationMs) break
    }
    const node1 = servers.map((s) => sampleProcess(s.pid))
    const redis1 = redis ? sampleProcess(redis.pid) : null
    const pgTree1 = c.postgres ? sampleProcessTree(c.postgres.postmasterPid()) : null
    const gen1 = [publisher, ...receivers].map((r) => sampleProcess(r.pid))
    const machine1 = sampleMachine()
    const bench1 = process.cpuUsage(bench0)
    const epoch1 = Date.now()
    // the devices stop at the end of the window: rates are of what was sent inside it
    const sentReport = within(10_000, 'the publisher to report', publisher.next<PublisherReport>('report'))
    sentReport.catch(() => {}) // awaited below; meanwhile a timeout is not an unhandled rejection
    publisher.send({ type: 'stop' })
    const seconds = (performance.now() - measureAt) / SECOND
    const pg1 = c.postgres && database ? await pgSizes(c.postgres, database) : null
    const pauses = await Promise.all(
      servers.map(async (s) => {
        s.send({ type: 'report' })
        return (await within(10_000, 'a node to report', s.next<{ pauses: ServerPauses }>('report'))).pauses
      }),
    )
    const sent = await sentReport

    // what is in flight counts when it arrives: a second without news from the receivers ends the drain
    progress(`${label}: drain`)
    for (let quiet = 0, seen = totalHeard(), waited = 0; quiet < 10 && waited < 100; waited++) {
      await delay(100, undefined, { signal })
      quiet = totalHeard() === seen ? quiet + 1 : 0
      seen = totalHeard()
    }
    const reports = await Promise.all(receivers.map((r) => (r.send({ type: 'report' }), within(10_000, 'a receiver to report', r.next<ReceiverReport>('report')))))
    const healths = await Promise.all(httpUrls.map((url) => nodeHealth(url)))
    const reportOf = (i: number) => {
      const r = receiverOf[i]
      return r ? reports[receivers.indexOf(r)]! : null
    }

    const measuredSent = sent.measuredSent
    const byPort = sent.measuredSentByPort ?? [measuredSent]
    const all = newHistogram()
    const perNode: NodeFigures[] = servers.map((s, i) => {
      const report = reportOf(i)
      const histogram = newHistogram()
      if (report) {
        const h = hdr.decodeFromCompressedBase64(report.histogram)
        histogram.add(h)
        all.add(h)
      }
      const received = report?.received ?? 0
      const cpu = cpuPercent(node0[i]!, node1[i]!)
      const deliveriesPerSec = received / seconds
      const messagesInPerSec = (byPort[i] ?? 0) / seconds
      return {
        node: nodeName(i),
        devices: opts.devicesOn === 'first' ? (i === 0 ? opts.devices : 0) : spread(opts.devices, c.nodes)[i]!,
        clients: clients[i]!,
        messagesInPerSec: round1(messagesInPerSec),
        deliveriesPerSec: round1(deliveriesPerSec),
        latency: { p50: ms(histogram, 50), p99: ms(histogram, 99), max: Math.round(histogram.maxValue) / 1000 },
        lost: Math.max(0, measuredSent * clients[i]! - received),
        duplicates: report?.duplicates ?? 0,
        cpuPercent: round1(cpu),
        rssMb: round1(node1[i]!.rssBytes / 1e6),
        cpuPerDeliveryUs: deliveriesPerSec > 0 ? round2((cpu / 100 / deliveriesPerSec) * 1e6) : 0,
        cpuPerMessageInUs: messagesInPerSec > 0 ? round2((cpu / 100 / messagesInPerSec) * 1e6) : 0,
        eventLoopDelay: pauses[i]!.eventLoopDelay,
        health: healths[i]!,
      }
    })

    let pgFigures: PostgresFigures | null = null
    if (c.postgres && database && pg0 && pg1 && pgTree0 && pgTree1) {
      // everything stamped inside the window is written within a flush or two (200 ms each) of the drain
      const kept = await pgKept(c.postgres, database, epoch0, epoch1)
      // what the tables grew by from the start of the window until all of it was written, against the rows added
      const pg2 = await pgSizes(c.postgres, database)
      const cpu = cpuPercent(pgTree0, pgTree1)
      const readingsPerSec = kept.readings / ((epoch1 - epoch0) / SECOND)
      pgFigures = {
        cpuPercent: round1(cpu),
        memoryMb: round1(pgTree1.rssBytes / 1e6),
        processes: pgTree1.processes,
        readingsPerSec: round1(readingsPerSec),
        messagesPerSec: round1(kept.messages / ((epoch1 - epoch0) / SECOND)),
        walBytesPerSec: Math.round(Number(pg1.lsn - pg0.lsn) / ((pg1.at - pg0.at) / SECOND)),
        walBytesPerReading: round1(kept.readings > 0 ? Number(pg1.lsn - pg0.lsn) / ((pg1.at - pg0.at) / SECOND) / readingsPerSec : 0),
        bytesPerReading: round1(pg2.readings > pg0.readings ? (pg2.readingBytes - pg0.readingBytes) / (pg2.readings - pg0.readings) : 0),
        bytesPerMessage: round1(pg2.messages > pg0.messages ? (pg2.messageBytes - pg0.messageBytes) / (pg2.messages - pg0.messages) : 0),
        cpuPerReadingUs: readingsPerSec > 0 ? round2((cpu / 100 / readingsPerSec) * 1e6) : 0,
      }
    }

    const sentPerSec = measuredSent / seconds
    const nodesCpu = perNode.reduce((a, n) => a + n.cpuPercent, 0)
    const redisFigures = redis0 && redis1 ? { cpuPercent: round1(cpuPercent(redis0, redis1)), rssMb: round1(redis1.rssBytes / 1e6) } : null
    const system = nodesCpu + (redisFigures?.cpuPercent ?? 0) + (pgFigures?.cpuPercent ?? 0)
    const deliveriesPerSec = perNode.reduce((a, n) => a + n.deliveriesPerSec, 0)
    const perMessage = (percent: number) => round2((percent / 100 / sentPerSec) * 1e6)
    const generator = (from: number, to: number) => gen0.slice(from, to).reduce((sum, b, i) => sum + cpuPercent(b, gen1[from + i]!), 0)
    const generatorCpu = { publishers: round1(generator(0, 1)), receivers: round1(generator(1, Infinity)) }
    const busy = machinePercent(machine0, machine1)
    const benchSelf = ((bench1.user + bench1.system) / 1e6 / seconds) * 100
    const result: ClusterRun = {
      config: configName(c),
      nodes: c.nodes,
      clustered: c.clustered,
      round: c.round,
      sentPerSec: round1(sentPerSec),
      deliveriesPerSec: round1(deliveriesPerSec),
      latency: { p50: ms(all, 50), p90: ms(all, 90), p99: ms(all, 99), max: Math.round(all.maxValue) / 1000 },
      lost: perNode.reduce((a, n) => a + n.lost, 0),
      duplicates: perNode.reduce((a, n) => a + n.duplicates, 0),
      perNode,
      nodesCpuPercent: round1(nodesCpu),
      nodesRssMb: round1(perNode.reduce((a, n) => a + n.rssMb, 0)),
      redis: redisFigures,
      postgres: pgFigures,
      systemCpuPercent: round1(system),
      cpuPerMessageUs: {
        nodes: perMessage(nodesCpu),
        redis: perMessage(redisFigures?.cpuPercent ?? 0),
        postgres: perMessage(pgFigures?.cpuPercent ?? 0),
        system: perMessage(system),
      },
      cpuPerDeliveryUs: deliveriesPerSec > 0 ? round2((system / 100 / deliveriesPerSec) * 1e6) : 0,
      generatorCpu,
      machine: { busyPercent: round1(busy), otherPercent: round1(Math.max(0, busy - system - generatorCpu.publishers - generatorCpu.receivers - benchSelf)) },
      startupMs,
    }
    progress(
      `${label}: ${fmt(result.deliveriesPerSec)} deliveries/s, p50 ${result.latency.p50} ms, p99 ${result.latency.p99} ms, lost ${result.lost}, duplicates ${result.duplicates}, ` +
        `nodes ${perNode.map((n) => fmt(n.cpuPercent)).join(' + ')} %` +
        (redisFigures ? `, Redis ${fmt(redisFigures.cpuPercent)} %` : '') +
        (pgFigures ? `, PostgreSQL ${fmt(pgFigures.cpuPercent)} % (${fmt(pgFigures.readingsPerSec)} readings/s)` : '') +
        `; machine ${fmt(busy)} % busy; started in ${fmt(startupMs / SECOND)} s`,
    )
    return result
  } finally {
    for (const role of roles) role.send({ type: 'stop' })
    await Promise.all([...roles, ...servers].map((r) => r.kill()))
    await redis?.close().catch(() => {})
    if (c.postgres && database) await c.postgres.sql(c.postgres.url(), `DROP DATABASE IF EXISTS ${new URL(database).pathname.slice(1)} WITH (FORCE)`).catch(() => {})
  }
}

async function nodeHealth(httpUrl: string): Promise<NodeFigures['health']> {
  try {
    const h = (await (await fetch(`${httpUrl}/api/health`, { signal: AbortSignal.timeout(5000) })).json()) as HealthReport
    return {
      messagesIn: h.mqtt.messagesIn,
      clusterNodes: h.cluster?.nodes ?? null,
      fanoutDropped: h.bridge['dropped'] ?? 0,
      laggedOut: h.bridge['laggedOut'] ?? 0,
      storeQueue: h.usage['queueDepth'] ?? 0,
      storeDropped: h.usage['dropped'] ?? 0,
      storeWriteFailures: h.usage['writeFailures'] ?? 0,
    }
  } catch {
    return null
  }
}

/** Rows in the tables and their sizes on disk (readings: every day's partition, with its index and its rollups), and the WAL position. */
interface PgSizes {
  at: number
  lsn: bigint
  readings: number
  messages: number
  readingBytes: number
  messageBytes: number
}

async function pgSizes(pg: Postgres, database: string): Promise<PgSizes> {
  const [row] = await pg.sql<Record<string, string>>(
    database,
    `SELECT
       pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::text AS lsn,
       (SELECT count(*) FROM readings) AS readings,
       (SELECT count(*) FROM messages) AS messages,
       (SELECT coalesce(sum(pg_total_relation_size(i.inhrelid)), 0) FROM pg_inherits i
          WHERE i.inhparent IN ('readings'::regclass, 'rollup_1m'::regclass, 'rollup_1h'::regclass)) AS reading_bytes,
       pg_total_relation_size('messages') AS message_bytes`,
  )
  const n = (k: string) => Number(row![k])
  return { at: performance.now(), lsn: BigInt(row!['lsn']!.split('.')[0]!), readings: n('readings'), messages: n('messages'), readingBytes: n('reading_bytes'), messageBytes: n('message_bytes') }
}

/** Rows stamped inside the window. */
async function pgKept(pg: Postgres, database: string, from: number, to: number): Promise<{ readings: number; messages: number }> {
  const [row] = await pg.sql<Record<string, string>>(
    database,
    `SELECT (SELECT count(*) FROM readings WHERE ts >= $1 AND ts < $2) AS readings, (SELECT count(*) FROM messages WHERE ts >= $1 AND ts < $2) AS messages`,
    [from, to],
  )
  return { readings: Number(row!['readings']), messages: Number(row!['messages']) }
}

const newHistogram = () => hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 600_000_000, numberOfSignificantValueDigits: 3 })
const ms = (h: hdr.Histogram, percentile: number) => (h.totalCount === 0 ? 0 : Math.round(h.getValueAtPercentile(percentile)) / 1000)
const fmt = (n: number) => Math.round(n).toLocaleString('en-US')

function within<T>(ms: number, what: string, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms)
  })
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer))
}

/** The median of every number, field by field (and element by element in arrays), across runs of one shape. */
function medianOf<T>(values: T[]): T {
  const first = values[0]
  if (typeof first === 'number') {
    const sorted = (values as number[]).slice().sort((a, b) => a - b)
    const mid = sorted.length / 2
    // of an even count, the mean of the middle two
    return (Number.isInteger(mid) ? (sorted[mid - 1]! + sorted[mid]!) / 2 : sorted[Math.floor(mid)]!) as T
  }
  if (Array.isArray(first)) return first.map((_, i) => medianOf(values.map((v) => (v as unknown[])[i]))) as T
  if (first && typeof first === 'object') {
    const present = values.filter((v) => v !== null)
    return Object.fromEntries(Object.keys(first).map((k) => [k, medianOf(present.map((v) => (v as Record<string, unknown>)[k]))])) as T
  }
  return first as T
}

function ratiosOf(medians: ClusterRun[]): ClusterRatio[] {
  const single = medians.find((m) => m.clustered && m.nodes === 1)
  if (!single) return []
  const perNode = (m: ClusterRun) => m.nodesCpuPercent / m.nodes
  const r = (a: number | undefined, b: number | undefined) => (a !== undefined && b ? round2(a / b) : null)
  return medians
    .filter((m) => m !== single)
    .map((m) => ({
      config: m.config,
      against: single.config,
      deliveries: round2(m.deliveriesPerSec / single.deliveriesPerSec),
      p50: round2(m.latency.p50 / single.latency.p50),
      p99: round2(m.latency.p99 / single.latency.p99),
      systemCpu: round2(m.systemCpuPercent / single.systemCpuPercent),
      nodesCpu: round2(m.nodesCpuPercent / single.nodesCpuPercent),
      perNodeCpu: round2(perNode(m) / perNode(single)),
      redisCpu: r(m.redis?.cpuPercent, single.redis?.cpuPercent),
      postgresCpu: r(m.postgres?.cpuPercent, single.postgres?.cpuPercent),
    }))
}

/** Least squares of y = a + b·x. */
function line(points: [number, number][]): { a: number; b: number } {
  const n = points.length
  const mx = points.reduce((s, [x]) => s + x, 0) / n
  const my = points.reduce((s, [, y]) => s + y, 0) / n
  const sxx = points.reduce((s, [x]) => s + (x - mx) ** 2, 0)
  const b = sxx === 0 ? 0 : points.reduce((s, [x, y]) => s + (x - mx) * (y - my), 0) / sxx
  return { a: my - b * mx, b }
}

function fitOf(medians: ClusterRun[]): ClusterFit | null {
  const clustered = medians.filter((m) => m.clustered)
  if (new Set(clustered.map((m) => m.nodes)).size < 2) return null
  // µs per message published, of one node: (CPU % / 100) / (messages/s) × 10⁶
  const us = (m: ClusterRun, percent: number) => (percent / 100 / m.sentPerSec) * 1e6
  const node = line(clustered.map((m) => [1 / m.nodes, us(m, m.nodesCpuPercent / m.nodes)]))
  const redis = line(clustered.map((m) => [m.nodes, us(m, m.redis?.cpuPercent ?? 0)]))
  return {
    sharedUsPerMessage: round2(node.a),
    dividedUsPerMessage: round2(node.b),
    redisUsPerMessage: { fixed: round2(redis.a), perNode: round2(redis.b) },
    nodes: clustered.map((m) => m.nodes),
  }
}
