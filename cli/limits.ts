import { brokerDefaults, type BrokerLimits } from '../broker/broker.ts'
import { fanoutDefaults, type FanoutOptions } from '../bridge/fanout.ts'
import { registryDefaults, type RegistryOptions } from '../devices/registry.ts'
import { memoryStoreDefaults, type MemoryStoreOptions } from '../store/memory.ts'
import { MAX_LOGGED_PAYLOAD_BYTES } from '../store/history.ts'
import { sqliteStoreDefaults, type SqliteStoreOptions } from '../store/sqlite.ts'
import { pulseboardDefaults } from '../server/pulseboard.ts'

/** How a limit's value is written on the command line. */
export type LimitUnit = 'count' | 'bytes' | 'seconds' | 'duration'

interface Flag<Part extends string, Key extends string> {
  /** The flag without its dashes; its environment variable is the same in capitals with underscores. */
  flag: string
  part: Part
  key: Key
  unit: LimitUnit
  min: number
  max: number
  default: number
  help: string
}

type LimitFlag =
  | Flag<'broker', keyof BrokerLimits>
  | Flag<'registry', 'maxDevices' | 'maxMetricsPerDevice' | 'maxTopics' | 'maxTopicIndexBytes'>
  | Flag<'store', keyof typeof memoryStoreDefaults>
  | Flag<'sqlite', 'maxQueue' | 'maxQueueBytes'>
  | Flag<'fanout', 'maxPendingBytes' | 'maxLagMs'>
  | Flag<'app', 'maxSockets' | 'maxRecoveryBytes'>

const MAX_INT = 2 ** 31 - 1
const GiB = 1024 ** 3

/**
 * Every bound a user can set from the command line, in the order docs/limits.md
 * lists them. `pulseboard start --help` and the config reader are built from it.
 */
export const LIMIT_FLAGS: readonly LimitFlag[] = [
  { flag: 'max-packet-size', part: 'broker', key: 'maxPacketSize', unit: 'bytes', min: 1024, max: 268_435_455, default: brokerDefaults.maxPacketSize, help: 'largest MQTT packet' },
  { flag: 'max-topic-length', part: 'broker', key: 'maxTopicLength', unit: 'bytes', min: 16, max: 65535, default: brokerDefaults.maxTopicLength, help: 'longest topic or filter' },
  { flag: 'max-connections', part: 'broker', key: 'maxConnections', unit: 'count', min: 1, max: 1_000_000, default: brokerDefaults.maxConnections, help: 'MQTT connections at once (TCP and WebSocket)' },
  { flag: 'max-keepalive', part: 'broker', key: 'maxKeepalive', unit: 'seconds', min: 1, max: 65535, default: brokerDefaults.maxKeepalive, help: 'longest keepalive; 0 and longer ones are capped to it' },
  { flag: 'max-subscriptions', part: 'broker', key: 'maxSubscriptions', unit: 'count', min: 1, max: 1_000_000, default: brokerDefaults.maxSubscriptions, help: 'subscriptions per MQTT client' },
  { flag: 'max-retained', part: 'broker', key: 'maxRetained', unit: 'count', min: 0, max: 10_000_000, default: brokerDefaults.maxRetained, help: 'retained messages kept' },
  { flag: 'max-retained-bytes', part: 'broker', key: 'maxRetainedBytes', unit: 'bytes', min: 0, max: 64 * GiB, default: brokerDefaults.maxRetainedBytes, help: 'bytes of retained messages kept' },
  { flag: 'max-queued', part: 'broker', key: 'maxQueued', unit: 'count', min: 0, max: 1_000_000, default: brokerDefaults.maxQueued, help: 'QoS 1/2 messages queued per offline session' },
  { flag: 'max-queued-bytes', part: 'broker', key: 'maxQueuedBytes', unit: 'bytes', min: 0, max: 64 * GiB, default: brokerDefaults.maxQueuedBytes, help: 'bytes queued per offline session' },
  { flag: 'max-queued-total-bytes', part: 'broker', key: 'maxQueuedTotalBytes', unit: 'bytes', min: 0, max: 64 * GiB, default: brokerDefaults.maxQueuedTotalBytes, help: 'bytes queued for all sessions' },
  { flag: 'max-sessions', part: 'broker', key: 'maxSessions', unit: 'count', min: 1, max: 10_000_000, default: brokerDefaults.maxSessions, help: 'persistent sessions remembered' },
  { flag: 'flap-max', part: 'broker', key: 'flapMax', unit: 'count', min: 1, max: 1_000_000, default: brokerDefaults.flapMax, help: 'connects of one client id per --flap-window' },
  { flag: 'flap-window', part: 'broker', key: 'flapWindowMs', unit: 'duration', min: 1000, max: MAX_INT, default: brokerDefaults.flapWindowMs, help: 'window for --flap-max' },
  { flag: 'flap-ban', part: 'broker', key: 'flapBanMs', unit: 'duration', min: 1000, max: MAX_INT, default: brokerDefaults.flapBanMs, help: 'how long a flapping client id is refused' },
  { flag: 'max-sockets', part: 'app', key: 'maxSockets', unit: 'count', min: 1, max: 1_000_000, default: pulseboardDefaults.maxSockets, help: 'socket.io connections at once' },
  { flag: 'max-socket-backlog', part: 'fanout', key: 'maxPendingBytes', unit: 'bytes', min: 1024, max: GiB, default: fanoutDefaults.maxPendingBytes, help: 'bytes waiting for one socket client before it is skipped' },
  { flag: 'max-recovery-bytes', part: 'app', key: 'maxRecoveryBytes', unit: 'bytes', min: 0, max: 64 * GiB, default: pulseboardDefaults.maxRecoveryBytes, help: 'broadcasts kept for /live clients that reconnect within a minute' },
  { flag: 'max-socket-lag', part: 'fanout', key: 'maxLagMs', unit: 'duration', min: 1000, max: MAX_INT, default: fanoutDefaults.maxLagMs, help: 'a socket client behind for longer is disconnected' },
  { flag: 'max-devices', part: 'registry', key: 'maxDevices', unit: 'count', min: 1, max: 10_000_000, default: registryDefaults.maxDevices, help: 'devices remembered' },
  { flag: 'max-metrics-per-device', part: 'registry', key: 'maxMetricsPerDevice', unit: 'count', min: 1, max: 100_000, default: registryDefaults.maxMetricsPerDevice, help: 'metrics per device' },
  { flag: 'max-topics', part: 'registry', key: 'maxTopics', unit: 'count', min: 0, max: 10_000_000, default: registryDefaults.maxTopics, help: 'topics in the topic index' },
  { flag: 'max-topic-index-bytes', part: 'registry', key: 'maxTopicIndexBytes', unit: 'bytes', min: 0, max: 64 * GiB, default: registryDefaults.maxTopicIndexBytes, help: 'characters of topics and payload previews in the index' },
  { flag: 'history-size', part: 'store', key: 'historySize', unit: 'count', min: 1, max: 10_000_000, default: memoryStoreDefaults.historySize, help: 'points kept in memory per metric' },
  { flag: 'max-history-points', part: 'store', key: 'maxHistoryPoints', unit: 'count', min: 1, max: 1_000_000_000, default: memoryStoreDefaults.maxHistoryPoints, help: 'points kept in memory for all metrics' },
  { flag: 'store-max-queue', part: 'sqlite', key: 'maxQueue', unit: 'count', min: 1000, max: 100_000_000, default: sqliteStoreDefaults.maxQueue, help: 'readings and messages waiting to be written to the database' },
  { flag: 'store-max-queue-bytes', part: 'sqlite', key: 'maxQueueBytes', unit: 'bytes', min: 1024 * 1024, max: 64 * GiB, default: sqliteStoreDefaults.maxQueueBytes, help: 'bytes of logged messages waiting to be written' },
]

/** `MAX_CONNECTIONS` for `max-connections`. */
export const envOf = (flag: string) => flag.toUpperCase().replaceAll('-', '_')

/** The options of each part, as `createPulseboard` takes them. */
export interface LimitValues {
  broker: Partial<BrokerLimits>
  registry: Partial<RegistryOptions>
  store: Partial<MemoryStoreOptions>
  sqlite: Partial<Pick<SqliteStoreOptions, 'maxQueue' | 'maxQueueBytes'>>
  fanout: Partial<FanoutOptions>
  app: { maxSockets?: number; maxRecoveryBytes?: number }
}

/** A default as people write it: 256KiB, 10m, 600s. */
export function formatLimit(unit: LimitUnit, value: number): string {
  if (unit === 'bytes' && value >= 64 * 1024) {
    for (const [suffix, size] of [['GiB', GiB], ['MiB', 1024 ** 2], ['KiB', 1024]] as const) {
      if (value >= size && value % size === 0) return `${value / size}${suffix}`
    }
  }
  if (unit === 'duration') return value % 60_000 === 0 ? `${value / 60_000}m` : `${value / 1000}s`
  if (unit === 'seconds') return `${value}s`
  return String(value)
}

/**
 * What each kind of state can cost at most, in bytes. Measured on Node 20 here
 * (docs/limits.md says how) and rounded up: the worst case is a sum of bounds
 * times these, not a guess at typical use.
 */
export const ITEM_COST = {
  /** An MQTT connection's socket, aedes client and parser, before any packet. */
  connection: 20 * 1024,
  /** A socket.io connection's engine.io and socket.io state. */
  socket: 24 * 1024,
  /** A device's state and maps, without its topics and metrics. */
  device: 4 * 1024,
  /** One metric: its name three times over, its latest value, and its history series' empty ring. */
  metric: 1024,
  /** One history point: two float64s, twice over because a ring grows by doubling. */
  historyPoint: 32,
  /** One topic index entry beyond its characters. */
  topic: 200,
  /** A reading waiting to be written: its object, and its place in a batch. */
  queuedReading: 128,
} as const

/** Each bounded structure's worst case, and their sum, for a set of limits (defaults for what is not given). */
export function memoryBudget(values: LimitValues): { parts: { what: string; bytes: number }[]; total: number } {
  const v = (flag: string) => {
    const l = LIMIT_FLAGS.find((f) => f.flag === flag)!
    return (values[l.part] as Record<string, number | undefined>)[l.key] ?? l.default
  }
  const topicLength = v('max-topic-length')
  // socket.io may buffer one incoming message of this size per connection (see bridge/http.ts)
  const socketMessage = Math.ceil(v('max-packet-size') * 1.4) + 4096
  const parts = [
    { what: 'MQTT connections, each reading one packet of --max-packet-size', bytes: v('max-connections') * (ITEM_COST.connection + v('max-packet-size')) },
    { what: 'socket.io connections, each with its backlog twice over and one message', bytes: v('max-sockets') * (ITEM_COST.socket + 2 * v('max-socket-backlog') + socketMessage) },
    { what: 'broadcasts kept for /live clients that reconnect', bytes: v('max-recovery-bytes') },
    { what: 'retained messages', bytes: v('max-retained-bytes') },
    { what: 'offline session queues', bytes: v('max-queued-total-bytes') },
    // a device remembers its 16 latest topics; a character may take two bytes
    { what: 'devices and their metrics', bytes: v('max-devices') * (ITEM_COST.device + 16 * 2 * topicLength + v('max-metrics-per-device') * ITEM_COST.metric) },
    { what: 'topic index', bytes: v('max-topics') * ITEM_COST.topic + 2 * v('max-topic-index-bytes') },
    { what: 'history points in memory', bytes: v('max-history-points') * ITEM_COST.historyPoint },
    // not a flag: the database keeps the real log; this is the last few messages with --no-store
    { what: 'message log in memory', bytes: memoryStoreDefaults.logSize * (ITEM_COST.topic + 2 * MAX_LOGGED_PAYLOAD_BYTES + 2 * topicLength) },
    // payloads wait as strings, two bytes a character at worst
    { what: 'writes waiting for the database', bytes: v('store-max-queue') * ITEM_COST.queuedReading + 2 * v('store-max-queue-bytes') },
  ]
  return { parts, total: parts.reduce((sum, p) => sum + p.bytes, 0) }
}
