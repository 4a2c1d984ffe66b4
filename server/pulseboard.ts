import { readFileSync } from 'node:fs'
import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import net from 'node:net'
import tls from 'node:tls'
import path from 'node:path'
import type { Logger } from 'pino'
import { LIVE_NAMESPACE, type DeviceState, type HealthReport } from '../protocol/index.ts'
import { Access } from '../auth/access.ts'
import { emptyConfig, type AccessConfig } from '../auth/config.ts'
import { brokerDefaults, createBroker, type Broker, type BrokerOptions } from '../broker/broker.ts'
import { createBridge, type Bridge, type BridgeOptions } from '../bridge/bridge.ts'
import { embeddedSource } from '../bridge/embedded.ts'
import { externalSource, type ExternalBrokerOptions, type ExternalSource } from '../bridge/external.ts'
import type { MessageSource } from '../bridge/source.ts'
import { Registry, type RegistryOptions } from '../devices/registry.ts'
import type { HistoryStore } from '../store/history.ts'
import { MemoryStore, type MemoryStoreOptions } from '../store/memory.ts'
import { SqliteStore, type SqliteStoreOptions } from '../store/sqlite.ts'
import type { PostgresStoreOptions } from '../store/postgres.ts'
import { SqlitePersistence } from '../broker/sqlite-persistence.ts'
import type { FormatsState } from '../formats/index.ts'
import { identify, identifySocket, registerAccess } from './access.ts'
import { registerApi } from './api.ts'
import { createHttpServer, type HttpServer } from './http.ts'
import { createLimitLog } from './limit-log.ts'
import { createMetrics } from './metrics.ts'
import type { OriginCheckOptions } from './origin.ts'
import { builtDashboardDir } from './package.ts'

export interface PulseboardOptions extends BrokerOptions, BridgeOptions, OriginCheckOptions {
  /** MQTT over TCP. 0 picks a free port. @default 1883 */
  mqttPort?: number
  /** HTTP: dashboard, API, socket.io and MQTT over WebSocket. 0 picks a free port. @default 5000 */
  port?: number
  /** Address to listen on; devices on the LAN must reach it. @default all interfaces */
  host?: string
  /** Built dashboard. @default dist/dashboard of this package */
  dashboardDir?: string
  /** socket.io connections at once, on / and /live together. @default 500 */
  maxSockets?: number
  /** Bytes of broadcasts kept for `/live` clients that reconnect within a minute. @default 33554432 */
  maxRecoveryBytes?: number
  registry?: RegistryOptions
  /**
   * Where the database file (`pulseboard.db`) is kept: readings, the message log, the devices,
   * and the broker's retained messages, sessions and queues. Absent: everything in memory,
   * forgotten at a restart.
   */
  dataDir?: string
  /** The database's retention and write queue. */
  sqlite?: Omit<SqliteStoreOptions, 'file' | 'logger' | 'onLimit'>
  /** The in-memory history, without `dataDir`. */
  store?: MemoryStoreOptions
  /**
   * History on PostgreSQL instead (`postgres://user:pw@host/db`), one database for every node of a
   * cluster; `dataDir`, when given, still keeps the embedded broker's state.
   */
  postgres?: Omit<PostgresStoreOptions, 'logger' | 'onLimit'>
  /** Certificate and key files (PEM): HTTPS and WSS on `port`, and MQTT over TLS on `mqttsPort`; `reloadTls` reads them again. */
  tls?: { certFile: string; keyFile: string }
  /** MQTT over TLS, with `tls`. 0 picks a free port. @default 8883 */
  mqttsPort?: number
  /** Users, devices, tokens and ACLs (auth/config.ts); without any credential, everyone may do everything. */
  access?: AccessConfig
  /**
   * Run on this broker instead of the embedded one: no MQTT listener is opened, devices connect
   * to it. Start fails with a BrokerConnectError when it refuses or cannot be reached.
   */
  externalBroker?: Omit<ExternalBrokerOptions, 'logger'>
  /**
   * One node of a cluster through this Redis (`redis://host:6379`): the embedded brokers share
   * delivery, retained messages, sessions and queues; socket.io, presence and the devices are
   * shared too. Start fails with a ClusterConnectError when Redis cannot be reached.
   */
  cluster?: { url: string; nodeId?: string }
  logger?: Logger
}

/** The database in the data directory. */
export const DATABASE_FILE = 'pulseboard.db'
/** A dead node's clients' wills are published by another node within 4 of these (aedes' default is a minute). */
const CLUSTER_BROKER_HEARTBEAT_MS = 5000
/** Broadcasts a cluster keeps in its Redis stream for `/live` clients that reconnect, to any node. */
const CLUSTER_STREAM_LENGTH = 10_000
/** How often devices and discovery state are saved. */
const SAVE_INTERVAL_MS = 5000

export const pulseboardDefaults = {
  mqttPort: 1883,
  mqttsPort: 8883,
  port: 5000,
  maxSockets: 500,
  maxRecoveryBytes: 32 * 1024 * 1024,
  dashboardDir: builtDashboardDir,
}

/** A listener that could not start because its port is taken. */
export class PortInUseError extends Error {
  constructor(
    readonly listener: 'mqtt' | 'mqtts' | 'http',
    readonly port: number,
  ) {
    super(`port ${port} (${listener}) is already in use`)
    this.name = 'PortInUseError'
  }
}

export interface Pulseboard {
  /** The embedded broker; null on an external one (`externalBroker`). */
  readonly broker: Broker | null
  readonly source: MessageSource
  readonly registry: Registry
  readonly store: HistoryStore
  readonly bridge: Bridge
  readonly http: HttpServer
  /** Credentials, sessions and the Policy; `reload` takes a changed config file. */
  readonly access: Access
  /** This node's name in its cluster (`cluster`), or null for a single node. */
  readonly nodeId: string | null
  /** Starts the listeners; resolves with the ports actually bound (`mqttsPort` with TLS; no MQTT ports on an external broker). */
  listen(): Promise<ListeningPorts>
  /** Reads the certificate and key files again (SIGHUP): new connections get them, open ones carry on. */
  reloadTls(): void
  /**
   * A changed access config: new checks use it at once, and every socket.io client is
   * disconnected, so each reconnects (recovering what it missed) and is authenticated anew:
   * a revoked token or a removed user does not keep a socket open.
   */
  reloadAccess(config: AccessConfig): void
  /** Logs and counts an error nothing else caught (the CLI's process-level handler calls it). */
  uncaught(err: unknown, origin: string): void
  /** Stops accepting, then closes in reverse order of creation. */
  close(): Promise<void>
}

export interface ListeningPorts {
  port: number
  mqttPort?: number
  mqttsPort?: number
}

/**
 * The composition root: the broker and its MessageSource, the registry, the
 * store, the bridge and the HTTP API, wired as data flows through them:
 * device → broker → bridge → registry → store, and bridge → dashboard.
 */
export async function createPulseboard(opts: PulseboardOptions = {}): Promise<Pulseboard> {
  const startedAt = Date.now()
  const logger = opts.logger
  const limitLog = createLimitLog(logger)
  const onLimit = limitLog.report
  // the registry is made below; the policy asks it for a device's topics only once messages flow
  let deviceTopics: (id: string) => readonly string[] = () => []
  const access = new Access(opts.access ?? emptyConfig(), (id) => deviceTopics(id))
  const policy = access.policy

  // one file keeps history and broker state, so a restart (or a backup) sees them together
  // with history in PostgreSQL and broker state in Redis, nothing is left for a file
  const sqlite = opts.dataDir && !(opts.postgres && opts.cluster) ? SqliteStore.open({ file: path.join(opts.dataDir, DATABASE_FILE), ...opts.sqlite, ...(logger && { logger }), onLimit }) : null
  // loaded only when asked for: a single node never pays for the PostgreSQL client
  const postgres = opts.postgres
    ? await (await import('../store/postgres.ts')).PostgresStore.open({ ...opts.postgres, ...(logger && { logger }), onLimit }).catch(async (err: unknown) => {
        await sqlite?.close()
        throw err
      })
    : null
  const store: HistoryStore = postgres ?? sqlite ?? new MemoryStore({ onLimit, ...opts.store })
  // a failed write of broker state (a full disk) is logged once per 10 s; the broker carries on from memory
  let persistenceErrors = 0
  let persistenceLoggedAt = 0
  const persistenceFailed = (err: unknown) => {
    persistenceErrors++
    if (Date.now() - persistenceLoggedAt < 10_000) return
    persistenceLoggedAt = Date.now()
    logger?.error({ err, failures: persistenceErrors }, `broker state could not be written to ${sqlite?.file}; the broker carries on from memory, and what was not written is lost at the next restart`)
  }
  // loaded only for a cluster: a single node never pays for the Redis clients
  const cluster = opts.cluster
    ? await (await import('../cluster/redis.ts')).joinCluster({ ...opts.cluster, ...(logger && { logger }), onLimit }).catch(async (err: unknown) => {
        await sqlite?.close()
        throw err
      })
    : null
  // the embedded broker, or a connection to the one the user runs
  const external: ExternalSource | null = opts.externalBroker
    ? await externalSource({ ...opts.externalBroker, ...(logger && { logger }) }, policy, {
        maxPacketSize: opts.maxPacketSize ?? brokerDefaults.maxPacketSize,
        maxTopicLength: opts.maxTopicLength ?? brokerDefaults.maxTopicLength,
      }).catch(async (err: unknown) => {
        await sqlite?.close()
        throw err
      })
    : null
  const broker = external
    ? null
    : await createBroker({
        ...opts,
        policy,
        onLimit,
        authenticate: (username, password, clientId, address) => access.mqtt(username, password, clientId, address),
        // a cluster's broker state is in Redis, where every node finds it
        ...(cluster
          ? { persistence: cluster.persistence, mq: cluster.mq, heartbeatIntervalMs: CLUSTER_BROKER_HEARTBEAT_MS }
          : sqlite && { persistence: new SqlitePersistence(sqlite.db, persistenceFailed) }),
      })
  const own: MessageSource = external ?? embeddedSource(broker!, policy)
  const source: MessageSource = cluster ? cluster.share(own) : own
  const registry = new Registry({ onLimit, ...opts.registry }, (await store.loadFormats()) as FormatsState | undefined)
  deviceTopics = (id) => registry.get(id)?.topics ?? []
  // in a cluster the devices every node sees are in Redis, each the other nodes' until this one
  // hears from it; this node's file has only its own
  const restored = registry.restore(await (cluster ?? store).loadDevices(), { mirrored: cluster !== null })
  const saved = new Set(registry.list().map((d) => d.id))
  if (restored > 0) logger?.info({ devices: restored }, 'devices restored from the database')
  const snapshotsOf = (ids: Iterable<string>) =>
    [...ids].flatMap((id) => {
      const snapshot = registry.snapshot(id)
      return snapshot ? [{ id, snapshot }] : []
    })

  // this node's devices only: another node's (`mirrored`) is saved by that node
  registry.on('update', (changed, _readings, valuesOnly, stored) => {
    // each reading is stored once, by the node that received its message
    if (stored.length > 0) store.append(stored)
    for (const d of changed) dirty.add(d.id)
    for (const d of valuesOnly) dirty.add(d.id)
    // a device seen for the first time is saved with this batch, not at the next save: after a
    // crash its readings would be in the database and the device unknown
    const fresh = changed.filter((d) => !saved.has(d.id))
    if (fresh.length > 0) {
      for (const d of fresh) saved.add(d.id)
      const snapshots = snapshotsOf(fresh.map((d) => d.id))
      store.saveDevices(snapshots)
      // a node that starts now lists it at once
      cluster?.saveDevices(snapshots)
    }
  })
  registry.on('forget', (id) => {
    dirty.delete(id)
    saved.delete(id)
    store.forget(id)
    if (cluster && !applyingEdit) {
      cluster.forgetDevice(id)
      cluster.publishEdit({ op: 'forget', id })
    }
  })
  // a user's rename or forget on any node changes every node's registry
  let applyingEdit = false
  registry.on('rename', (id, name) => {
    if (cluster && !applyingEdit) cluster.publishEdit({ op: 'rename', id, name })
  })
  cluster?.onEdit((edit) => {
    applyingEdit = true
    try {
      if (edit.op === 'rename') registry.rename(edit.id, edit.name)
      else registry.forget(edit.id)
    } finally {
      applyingEdit = false
    }
  })
  // the other nodes' devices, as those nodes tell their own dashboards of them
  cluster?.onDevices((devices) => registry.mirror(devices))
  // Devices and what discovery taught the parsers are saved every few seconds, not at every
  // message: a restart needs their last state, and the readings themselves are stored as they come.
  const dirty = new Set<string>()
  let factsSaved = registry.factsSeen
  function saveState(): void {
    const saved = snapshotsOf(dirty)
    dirty.clear()
    if (saved.length > 0) store.saveDevices(saved)
    cluster?.saveDevices(saved)
    if (registry.factsSeen !== factsSaved) {
      factsSaved = registry.factsSeen
      store.saveFormats(registry.formats())
    }
  }
  const saveTimer = setInterval(saveState, SAVE_INTERVAL_MS)
  saveTimer.unref()

  const readTls = () => (opts.tls ? { cert: readFileSync(opts.tls.certFile), key: readFileSync(opts.tls.keyFile) } : undefined)
  const pem = readTls()
  const mqttsServer = pem && broker
    ? tls.createServer(pem, (socket) => {
        socket.setNoDelay(true)
        broker.handle(socket)
      })
    : null
  // a handshake that fails (a client that does not trust the certificate) ends that connection only
  mqttsServer?.on('tlsClientError', (err) => logger?.debug({ err }, 'mqtt over tls: handshake failed'))

  const http = await createHttpServer({
    ...(pem && { tls: pem }),
    maxPacketSize: source.limits.maxPacketSize,
    ...(broker && { handleMqtt: (stream: Duplex, req: IncomingMessage) => broker.handle(stream, req) }),
    identify: (req) => identify(access, { headers: req.headers, address: req.socket.remoteAddress ?? 'unknown' }),
    dashboardDir: opts.dashboardDir ?? pulseboardDefaults.dashboardDir,
    maxSockets: opts.maxSockets ?? pulseboardDefaults.maxSockets,
    maxRecoveryBytes: opts.maxRecoveryBytes ?? pulseboardDefaults.maxRecoveryBytes,
    ...(cluster && { adapter: cluster.adapter(LIVE_NAMESPACE, CLUSTER_STREAM_LENGTH) }),
    ...(opts.allowOrigins && { allowOrigins: opts.allowOrigins }),
    ...(opts.publicUrl && { publicUrl: opts.publicUrl }),
    ...(logger && { logger }),
    onLimit,
  })
  registerAccess(http.fastify, access)
  const bridge = createBridge(
    {
      source,
      io: http.io,
      registry,
      policy,
      identify: (handshake) => identifySocket(access, handshake),
      record: (e) => store.log([e]),
      ...(cluster && { cluster: { shareDevices: (devices: DeviceState[]) => cluster.shareDevices(snapshotsOf(devices.map((d) => d.id))) } }),
    },
    { ...opts, onLimit, ...(cluster && { fanout: { ...opts.fanout, cluster } }) },
  )
  // every node's `/live` groups get this node's messages and readings
  if (cluster) {
    for (const group of await cluster.groups()) bridge.fanout.addGroup(group)
    cluster.onGroup((group) => bridge.fanout.addGroup(group))
  }
  let uncaughtErrors = 0
  const metrics = createMetrics({ broker, source, bridge, registry, store }, limitLog.hits, () => uncaughtErrors)

  let mqttPort = opts.mqttPort ?? pulseboardDefaults.mqttPort
  registerApi(http.fastify, {
    registry,
    store,
    policy,
    health: () =>
      ({
        status: 'ok',
        uptime: (Date.now() - startedAt) / 1000,
        broker: source.status(),
        ...(cluster && { cluster: { nodeId: cluster.nodeId, ...cluster.stats } }),
        mqtt: {
          port: broker ? mqttPort : null,
          clients: broker ? broker.stats.clients : null,
          messagesIn: source.stats.messagesIn,
          messagesOut: source.stats.messagesOut,
          deniedPublishes: broker ? broker.stats.deniedPublishes : 0,
        },
        sockets: { chat: bridge.chat.sockets.size, live: bridge.live.sockets.size },
        bridge: { ...bridge.stats, ...bridge.fanout.stats },
        usage: { ...broker?.persistence.usage, ...registry.usage, ...store.usage, ...(sqlite && { brokerWriteErrors: persistenceErrors }) },
        limits: limitLog.hits,
      }) satisfies HealthReport,
    metrics: () => metrics.scrape(),
  })

  // Retained messages are the broker's memory of what devices last said: start the registry from them.
  for await (const message of source.retained()) bridge.learn(message)

  async function listen(): Promise<ListeningPorts> {
    await http.fastify.ready()
    if (broker) mqttPort = await listenOn(broker.tcpServer, 'mqtt', mqttPort, opts.host)
    const mqttsPort = mqttsServer ? await listenOn(mqttsServer, 'mqtts', opts.mqttsPort ?? pulseboardDefaults.mqttsPort, opts.host) : undefined
    const port = await listenOn(http.server, 'http', opts.port ?? pulseboardDefaults.port, opts.host)
    return { port, ...(broker && { mqttPort }), ...(mqttsPort !== undefined && { mqttsPort }) }
  }

  function reloadTls(): void {
    const fresh = readTls()
    if (!fresh) return
    mqttsServer?.setSecureContext(fresh)
    ;(http.server as unknown as tls.Server).setSecureContext(fresh)
  }

  function uncaught(err: unknown, origin: string): void {
    uncaughtErrors++
    logger?.error({ err, origin }, 'uncaught error; the server carries on, but please report this with the stack above')
  }

  async function close(): Promise<void> {
    // stops accepting; its connections end when the broker closes its clients
    if (mqttsServer?.listening) mqttsServer.close()
    await http.close()
    // the broker first: once it stops, nothing more is acknowledged, and what it acknowledged reached the bridge
    await broker?.close()
    await external?.close()
    await bridge.close()
    // emits the last batch, so the store gets it
    registry.close()
    clearInterval(saveTimer)
    // after the broker, whose persistence shares the database; writes out what is queued
    saveState()
    await cluster?.close()
    await store.close()
    // the broker's state, when the history is elsewhere
    if (postgres) await sqlite?.close()
    limitLog.close()
  }

  function reloadAccess(config: AccessConfig): void {
    access.reload(config)
    bridge.chat.disconnectSockets()
    bridge.live.disconnectSockets()
  }

  return { broker, source, registry, store, bridge, http, access, nodeId: cluster?.nodeId ?? null, listen, reloadTls, reloadAccess, uncaught, close }
}

function listenOn(server: net.Server, listener: 'mqtt' | 'mqtts' | 'http', port: number, host?: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => {
      reject(err.code === 'EADDRINUSE' ? new PortInUseError(listener, port) : err)
    }
    server.once('error', onError)
    server.listen(port, host, () => {
      server.off('error', onError)
      resolve((server.address() as net.AddressInfo).port)
    })
  })
}
