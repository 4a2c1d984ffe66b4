import { randomBytes } from 'node:crypto'
import { createRequire } from 'node:module'
import os from 'node:os'
import { Readable } from 'node:stream'
import type { Logger } from 'pino'
import { createClient } from 'redis'
import { createAdapter } from '@socket.io/redis-streams-adapter'
import { Adapter } from 'socket.io-adapter'
import type { Namespace } from 'socket.io'
import type { ClusterHealth } from '../protocol/health.ts'
import type { OnLimit } from '../protocol/limits.ts'
import type { AsyncPersistence } from '../broker/persistence.ts'
import type { LiveGroup } from '../bridge/fanout.ts'
import type { MessageSource, PresenceEvent } from '../bridge/source.ts'
import type { Saved } from '../store/history.ts'

export interface ClusterOptions {
  /** `redis://host:6379` (or `rediss://`), the one Redis every node uses. */
  url: string
  /** This node's name in Redis and in logs. @default <host name>-<random> */
  nodeId?: string
  logger?: Logger
  /** Called each time input reaches a bound. */
  onLimit?: OnLimit
}

/** Redis cannot be reached at start: one line for people. */
export class ClusterConnectError extends Error {
  override name = 'ClusterConnectError'
}

/** What a node of a cluster shares through Redis. */
export interface Cluster {
  readonly nodeId: string
  /** aedes' emitter: a publish on any node reaches subscribers on every node. */
  readonly mq: unknown
  /** aedes' retained messages, sessions, offline queues and wills, kept in Redis. */
  readonly persistence: AsyncPersistence
  /** socket.io's adapter: `/live` broadcasts (and connection state recovery) across nodes; `/` stays on its node. */
  adapter(liveNamespace: string, maxLen: number): typeof Adapter
  /** The source, with presence shared: each node is told of every node's connections, and of a dead node's clients leaving. */
  share(source: MessageSource): MessageSource
  /** Which node holds each connected MQTT client. */
  clients(): Promise<Record<string, string>>
  /** Devices' presence and latest values, as every node sees them. */
  loadDevices(): Promise<Saved[]>
  saveDevices(devices: readonly Saved[]): void
  /** This node's devices that changed, for every other node's registry (a PUBLISH of at most 1 MiB each, one a batch as a rule). */
  shareDevices(devices: readonly Saved[]): void
  /** Devices another node shared. */
  onDevices(handler: (devices: Saved[]) => void): () => void
  forgetDevice(id: string): void
  /** A user's change to a device, for every node's registry. */
  publishEdit(edit: DeviceEdit): void
  onEdit(handler: (edit: DeviceEdit) => void): () => void
  /** Groups of `/live` clients on any node (by topic filters, by the devices whose readings they follow), and news of new ones. */
  groups(): Promise<LiveGroup[]>
  announceGroup(group: LiveGroup): void
  onGroup(handler: (group: LiveGroup) => void): () => void
  readonly stats: ClusterStats
  close(): Promise<void>
}

/** What `/api/health` shows of the cluster. */
export type ClusterStats = Omit<ClusterHealth, 'nodeId'>

/** What a user changed on one node, for the others. */
export type DeviceEdit = { op: 'rename'; id: string; name: string | null } | { op: 'forget'; id: string }

/** Redis keys and channels, all under one prefix. */
const KEY = {
  nodes: 'pulseboard:nodes',
  clients: 'pulseboard:clients',
  nodeClients: (node: string) => `pulseboard:node:${node}:clients`,
  devices: 'pulseboard:devices',
  groups: 'pulseboard:groups',
  presence: 'pulseboard:presence',
  groupNews: 'pulseboard:groups:news',
  edits: 'pulseboard:edits',
  deviceNews: 'pulseboard:devices:news',
  stream: 'pulseboard:live',
  wills: 'pulseboard:wills',
}
/** A node that has not beaten for this long is dead: its clients are gone. */
const HEARTBEAT_MS = 2000
const DEAD_AFTER_MS = 10_000
/** `/live` groups shared at most; beyond, a node's new groups are not announced (and logged). */
const MAX_GROUPS = 10_000
/** Bytes of one PUBLISH of shared devices; a batch over it goes in several, and a device over it alone is not shared. */
const MAX_DEVICE_NEWS_BYTES = 1024 * 1024
/** `$`, the first byte after the channel prefix of the broker's own topics. */
const DOLLAR = 0x24

type RedisClient = ReturnType<typeof createClient>
const require = createRequire(import.meta.url)
// CommonJS, both; the persistence's async class is exported by path only (as aedes-persistence's is)
const { MQEmitterRedisPrefix } = require('mqemitter-redis') as {
  MQEmitterRedisPrefix: new (prefix: string, opts: { connectionString: string }) => {
    close(cb: () => void): void
    /** Its ioredis subscriber: a message of a channel it subscribed to, or of a pattern. */
    subConn: { on(event: 'messageBuffer', listener: (channel: Buffer) => void): void; on(event: 'pmessageBuffer', listener: (pattern: Buffer, channel: Buffer) => void): void }
  }
}
/**
 * The emitter's Redis channels start with this: it subscribes to a pattern for `#`, which
 * without a prefix would catch every channel, Pulseboard's own included. A level of its own, so
 * the emitter's matching of `+` and `#` is unchanged.
 */
const MQTT_CHANNEL_PREFIX = 'pulseboard/mqtt/'
const RedisPersistence = require('aedes-persistence-redis/asyncPersistence.js') as new (opts: IORedisOptions) => AsyncPersistence
/** What ioredis (under aedes-persistence-redis) takes instead of a URL. */
interface IORedisOptions {
  host: string
  port: number
  username?: string
  password?: string
  db?: number
  tls?: object
  maxRetriesPerRequest: null
}

/**
 * Joins this node to the others through one Redis: aedes' emitter and persistence, socket.io's
 * streams adapter, presence (which node holds which client, and heartbeats, so a dead node's
 * clients are marked gone), the devices' shared state and the `/live` filter groups.
 */
export async function joinCluster(opts: ClusterOptions): Promise<Cluster> {
  const nodeId = opts.nodeId ?? `${os.hostname()}-${randomBytes(3).toString('hex')}`
  const log = opts.logger
  const url = redact(opts.url)
  const stats: ClusterStats = { nodes: 1, redisErrors: 0, messagesFromRedis: 0, devicesShared: 0, devicesMirrored: 0 }
  const onLimit: OnLimit = opts.onLimit ?? (() => {})

  const connect = async (): Promise<RedisClient> => {
    // at start one attempt, so a wrong URL is one line; afterwards it retries with back-off
    let started = false
    const client = createClient({
      url: opts.url,
      socket: { connectTimeout: 5000, reconnectStrategy: (retries) => (started ? Math.min(5000, 100 * 2 ** retries) : false) },
    })
    let loggedAt = 0
    client.on('error', (err: Error) => {
      stats.redisErrors++
      if (!started || Date.now() - loggedAt < 10_000) return
      loggedAt = Date.now()
      log?.error({ err: err.message, redis: url }, `Redis ${url}: ${err.message}; retrying`)
    })
    try {
      await client.connect()
    } catch (err) {
      throw new ClusterConnectError(explain(err as NodeJS.ErrnoException, url))
    }
    started = true
    return client
  }
  const db = await connect()
  const sub = db.duplicate()
  sub.on('error', () => stats.redisErrors++)
  await sub.connect()
  const adapterClient = db.duplicate()
  adapterClient.on('error', () => stats.redisErrors++)
  await adapterClient.connect()

  const mq = new MQEmitterRedisPrefix(MQTT_CHANNEL_PREFIX, { connectionString: opts.url })
  // what every node's publishes cost this one: each reaches it only through a subscription here
  const heard = (channel: Buffer) => {
    if (channel[MQTT_CHANNEL_PREFIX.length] !== DOLLAR) stats.messagesFromRedis++
  }
  mq.subConn.on('messageBuffer', heard)
  mq.subConn.on('pmessageBuffer', (_pattern, channel) => heard(channel))
  const persistence = streaming(oneWillPerClient(new RedisPersistence(ioredisOptions(opts.url)), db, () => stats.redisErrors++))

  // heartbeats, and the sweep of nodes that stopped beating
  const beat = () => db.zAdd(KEY.nodes, { score: Date.now(), value: nodeId }).catch(() => {})
  await beat()
  const presenceHandlers = new Set<(e: PresenceEvent) => void>()
  const deliver = (e: PresenceEvent) => {
    for (const h of presenceHandlers) h(e)
  }
  async function sweep(): Promise<void> {
    stats.nodes = await db.zCard(KEY.nodes)
    const dead = await db.zRangeByScore(KEY.nodes, 0, Date.now() - DEAD_AFTER_MS)
    for (const node of dead) {
      // whoever removes it cleans up after it, once
      if ((await db.zRem(KEY.nodes, node)) !== 1) continue
      const clients = await db.sMembers(KEY.nodeClients(node))
      log?.warn({ node, clients: clients.length }, `cluster node ${node} stopped beating; its ${clients.length} MQTT clients are gone`)
      for (const clientId of clients) {
        if ((await db.hGet(KEY.clients, clientId)) !== node) continue
        await db.hDel(KEY.clients, clientId)
        await db.publish(KEY.presence, JSON.stringify({ node, event: { type: 'disconnect', clientId } }))
      }
      await db.del(KEY.nodeClients(node))
    }
  }
  const timer = setInterval(() => {
    void beat()
    sweep().catch(() => stats.redisErrors++)
  }, HEARTBEAT_MS)
  timer.unref()

  // which node last connected each client: a disconnect from another node is stale (the client moved)
  const holder = new Map<string, string>()
  function fromNode(node: string, e: PresenceEvent): void {
    if (e.type === 'connect') holder.set(e.clientId, node)
    else if (e.type === 'disconnect') {
      if (holder.get(e.clientId) !== node) return
      holder.delete(e.clientId)
    }
    deliver(e)
  }
  await sub.subscribe(KEY.presence, (text) => {
    const { node, event } = JSON.parse(text) as { node: string; event: PresenceEvent & { will?: { topic: string; payload: string } } }
    // this node's own were handled as they happened
    if (node === nodeId) return
    // a will travels as base64
    fromNode(node, event.type === 'connect' && event.will ? { ...event, will: { topic: event.will.topic, payload: Buffer.from(event.will.payload, 'base64') } } : event)
  })
  // clients connected before this node started
  for (const [clientId, node] of Object.entries(await db.hGetAll(KEY.clients))) holder.set(clientId, node)

  const groupHandlers = new Set<(group: LiveGroup) => void>()
  await sub.subscribe(KEY.groupNews, (text) => {
    const group = parseGroup(text)
    if (group) for (const h of groupHandlers) h(group)
  })

  const editHandlers = new Set<(edit: DeviceEdit) => void>()
  await sub.subscribe(KEY.edits, (text) => {
    const { node, edit } = JSON.parse(text) as { node: string; edit: DeviceEdit }
    if (node === nodeId) return
    for (const h of editHandlers) h(edit)
  })

  const deviceHandlers = new Set<(devices: Saved[]) => void>()
  // this node's own news comes back too: known by its first bytes, it is not parsed
  const ownNews = `{"node":${JSON.stringify(nodeId)},`
  await sub.subscribe(KEY.deviceNews, (text) => {
    if (text.startsWith(ownNews)) return
    const { devices } = JSON.parse(text) as { node: string; devices: Saved[] }
    stats.devicesMirrored += devices.length
    for (const h of deviceHandlers) h(devices)
  })
  function publishNews(parts: readonly string[]): void {
    stats.devicesShared += parts.length
    db.publish(KEY.deviceNews, `${ownNews}"devices":[${parts.join(',')}]}`).catch(() => stats.redisErrors++)
  }
  /** Bytes of a PUBLISH of shared devices besides the devices themselves. */
  const newsFrame = Buffer.byteLength(`${ownNews}"devices":[]}`)

  const cluster: Cluster = {
    nodeId,
    mq,
    persistence,
    stats,

    adapter(liveNamespace, maxLen) {
      const streams = createAdapter(adapterClient, { streamName: KEY.stream, maxLen })
      function PerNamespace(nsp: Namespace) {
        return nsp.name === liveNamespace ? streams(nsp) : new Adapter(nsp)
      }
      return PerNamespace as unknown as typeof Adapter
    },

    share(source) {
      return {
        ...source,
        onPresence(handler) {
          presenceHandlers.add(handler)
          const stop = source.onPresence((e) => {
            fromNode(nodeId, e)
            void recordLocal(e).catch(() => stats.redisErrors++)
          })
          // clients held by other nodes now are online here too
          for (const [clientId, node] of holder) if (node !== nodeId) handler({ type: 'connect', clientId })
          return () => {
            stop()
            presenceHandlers.delete(handler)
          }
        },
      }
    },

    async clients() {
      return db.hGetAll(KEY.clients)
    },

    async loadDevices() {
      const all = await db.hGetAll(KEY.devices)
      return Object.entries(all).map(([id, json]) => ({ id, snapshot: JSON.parse(json) as unknown }))
    },
    saveDevices(devices) {
      if (devices.length === 0) return
      const fields = Object.fromEntries(devices.map((d) => [d.id, JSON.stringify(d.snapshot)]))
      db.hSet(KEY.devices, fields).catch(() => stats.redisErrors++)
    },
    shareDevices(devices) {
      let parts: string[] = []
      let bytes = newsFrame
      for (const device of devices) {
        const json = JSON.stringify(device)
        // and its comma
        const size = Buffer.byteLength(json) + 1
        if (newsFrame + size > MAX_DEVICE_NEWS_BYTES) {
          onLimit('cluster_device_bytes', { device: device.id, bytes: size })
          continue
        }
        if (bytes + size > MAX_DEVICE_NEWS_BYTES) {
          publishNews(parts)
          parts = []
          bytes = newsFrame
        }
        parts.push(json)
        bytes += size
      }
      if (parts.length > 0) publishNews(parts)
    },
    onDevices(handler) {
      deviceHandlers.add(handler)
      return () => deviceHandlers.delete(handler)
    },
    forgetDevice(id) {
      db.hDel(KEY.devices, id).catch(() => stats.redisErrors++)
    },

    publishEdit(edit) {
      db.publish(KEY.edits, JSON.stringify({ node: nodeId, edit })).catch(() => stats.redisErrors++)
    },
    onEdit(handler) {
      editHandlers.add(handler)
      return () => editHandlers.delete(handler)
    },

    async groups() {
      return (await db.sMembers(KEY.groups)).map(parseGroup).filter((g): g is LiveGroup => g !== null)
    },
    announceGroup(group) {
      const json = groupJson(group)
      void (async () => {
        if ((await db.sCard(KEY.groups)) >= MAX_GROUPS) return log?.warn({ group }, `${MAX_GROUPS} /live groups are shared already; this one reaches this node's clients only`)
        if ((await db.sAdd(KEY.groups, json)) === 1) await db.publish(KEY.groupNews, json)
      })().catch(() => stats.redisErrors++)
    },
    onGroup(handler) {
      groupHandlers.add(handler)
      return () => groupHandlers.delete(handler)
    },

    async close() {
      clearInterval(timer)
      // a clean leave: this node's clients are gone now, not after the dead-node timeout
      await db.zRem(KEY.nodes, nodeId).catch(() => {})
      for (const clientId of await db.sMembers(KEY.nodeClients(nodeId)).catch(() => [] as string[])) {
        if ((await db.hGet(KEY.clients, clientId).catch(() => null)) === nodeId) await db.hDel(KEY.clients, clientId).catch(() => {})
      }
      await db.del(KEY.nodeClients(nodeId)).catch(() => {})
      // the broker closes its emitter and persistence first; these are for a node whose broker never started
      await Promise.race([new Promise<void>((resolve) => mq.close(() => resolve())), new Promise((resolve) => setTimeout(resolve, 1000).unref())]).catch(() => {})
      await persistence.destroy().catch(() => {})
      await Promise.all([sub.quit(), adapterClient.quit(), db.quit()].map((p) => p.catch(() => {})))
    },
  }

  async function recordLocal(e: PresenceEvent): Promise<void> {
    const will = e.type === 'connect' && e.will ? { topic: e.will.topic, payload: e.will.payload.toString('base64') } : undefined
    if (e.type === 'connect') {
      await db.hSet(KEY.clients, e.clientId, nodeId)
      await db.sAdd(KEY.nodeClients(nodeId), e.clientId)
    } else if (e.type === 'disconnect') {
      // the client may have moved to another node already: only our own entry goes
      if ((await db.hGet(KEY.clients, e.clientId)) === nodeId) await db.hDel(KEY.clients, e.clientId)
      await db.sRem(KEY.nodeClients(nodeId), e.clientId)
    }
    await db.publish(KEY.presence, JSON.stringify({ node: nodeId, event: { ...e, ...(will && { will }) } }))
  }

  log?.info({ node: nodeId, redis: url }, `joined the cluster at ${url} as ${nodeId}`)
  return cluster
}

/** A filter group as the nodes before device groups wrote it (a JSON array of filters); any other group as `{ kind, keys }`. */
function groupJson(group: LiveGroup): string {
  return JSON.stringify(group.kind === 'filters' ? group.keys : group)
}

function parseGroup(json: string): LiveGroup | null {
  const value = JSON.parse(json) as unknown
  if (Array.isArray(value)) return { kind: 'filters', keys: value.map(String) }
  const group = value as Partial<LiveGroup> | null
  if ((group?.kind === 'filters' || group?.kind === 'readings') && Array.isArray(group.keys)) return { kind: group.kind, keys: group.keys.map(String) }
  return null
}

function explain(err: NodeJS.ErrnoException, url: string): string {
  if (err.code === 'ECONNREFUSED') return `cannot reach ${url}: connection refused; is redis-server running, and is --cluster right?`
  if (err.code === 'ENOTFOUND' || err.code === 'EAI_AGAIN') return `cannot reach ${url}: no such host; fix --cluster`
  if (/WRONGPASS|NOAUTH/.test(err.message)) return `${url} refused the login: ${err.message}; put the password in the URL (redis://:password@host:6379)`
  return `cannot connect to ${url}: ${err.message}; check --cluster`
}

type WillClient = Parameters<AsyncPersistence['delWill']>[0] & { brokerId?: string }

/**
 * aedes keeps a will per broker and client (`will:<broker>:<client>`), and when a broker stops
 * beating another publishes that broker's wills. A device that reconnected to another node first
 * would then be announced gone while it is connected: its new connection takes the old will
 * away, as a new connection cancels a delayed will [MQTT-3.1.3-9]. aedes' own delete at connect
 * names no broker and so removes nothing; `pulseboard:wills` says which broker holds each
 * client's will.
 */
function oneWillPerClient(persistence: AsyncPersistence, db: RedisClient, failed: () => void): AsyncPersistence {
  let brokerId: string | undefined
  async function dropElsewhere(clientId: string): Promise<void> {
    const holder = await db.hGet(KEY.wills, clientId)
    if (holder === null || holder === undefined || holder === brokerId) return
    await persistence.delWill({ id: clientId, brokerId: holder } as WillClient)
    if ((await db.hGet(KEY.wills, clientId)) === holder) await db.hDel(KEY.wills, clientId)
  }
  const wrapped: Partial<AsyncPersistence> = {
    async setup(broker) {
      brokerId = broker.id
      await persistence.setup(broker)
    },
    async putWill(client, packet) {
      await dropElsewhere(client.id).catch(failed)
      await persistence.putWill(client, packet)
      if (brokerId !== undefined) await db.hSet(KEY.wills, client.id, brokerId).catch(failed)
    },
    async delWill(client: WillClient) {
      // without a broker: a new connection of this client (aedes' storeWill), whose old will goes wherever it is
      if (client.brokerId === undefined) await dropElsewhere(client.id).catch(failed)
      const will = await persistence.delWill(client)
      if (client.brokerId !== undefined && (await db.hGet(KEY.wills, client.id).catch(() => null)) === client.brokerId) {
        await db.hDel(KEY.wills, client.id).catch(failed)
      }
      return will
    },
  }
  return new Proxy(persistence, {
    get(target, name) {
      if (Object.hasOwn(wrapped, name)) return wrapped[name as keyof typeof wrapped]
      const value: unknown = Reflect.get(target, name, target)
      // its methods use private fields: `this` must be the persistence itself
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value
    },
  })
}

/** The persistence's methods that aedes pipes: aedes 1.2 wants streams, aedes-persistence-redis 12 gives async iterables. */
const STREAMING = new Set(['createRetainedStream', 'createRetainedStreamCombi', 'outgoingStream', 'streamWill', 'getClientList'])

function streaming(persistence: AsyncPersistence): AsyncPersistence {
  return new Proxy(persistence, {
    get(target, name, receiver) {
      const value: unknown = Reflect.get(target, name, receiver)
      if (typeof value !== 'function') return value
      const method = value as (...args: unknown[]) => unknown
      if (!STREAMING.has(String(name))) return method.bind(target)
      return (...args: unknown[]) => {
        const out = method.apply(target, args)
        return out instanceof Readable ? out : Readable.from(out as AsyncIterable<unknown>)
      }
    },
  })
}

function ioredisOptions(text: string): IORedisOptions {
  const u = new URL(text)
  return {
    host: u.hostname,
    port: Number(u.port || 6379),
    ...(u.username && { username: decodeURIComponent(u.username) }),
    ...(u.password && { password: decodeURIComponent(u.password) }),
    ...(u.pathname.length > 1 && { db: Number(u.pathname.slice(1)) }),
    ...(u.protocol === 'rediss:' && { tls: {} }),
    maxRetriesPerRequest: null,
  }
}

/** The URL as logs show it: never a password. */
function redact(text: string): string {
  try {
    const u = new URL(text)
    u.password = ''
    return u.toString().replace(/\/$/, '')
  } catch {
    return text
  }
}
