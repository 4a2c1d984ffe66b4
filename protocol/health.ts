import type { LimitName } from './limits.ts'

/** Where MQTT messages come from: the embedded broker, or the one `--broker` names, and whether it is connected. */
export interface BrokerStatus {
  mode: 'embedded' | 'external'
  /** The external broker, without credentials: `mqtt://host:1883`. */
  url?: string
  connected: boolean
  /** The MQTT version spoken with it: 4 is 3.1.1. */
  protocolVersion: 4 | 5
  /** Epoch ms when `connected` last changed (for the embedded broker: when it started). */
  since: number
  /** Why it is not connected (the last error), while it is not. */
  error?: string
}

/** With `--cluster`: this node in its cluster. */
export interface ClusterHealth {
  nodeId: string
  /** Nodes beating in Redis now. */
  nodes: number
  /**
   * MQTT messages Redis delivered to this node's broker, `$SYS` left out (one per subscription
   * pattern they match): what its MQTT clients subscribed to, from every node, and everything
   * while it has `/` clients. Other nodes' devices reach it as their shared state instead.
   */
  messagesFromRedis: number
  /** Device states this node shared with the other nodes, and the ones it took from them. */
  devicesShared: number
  devicesMirrored: number
  /** Redis commands that failed, and its connections' errors. */
  redisErrors: number
}

/** `GET /api/health`. Once the server has users, a request without a session or token gets `{ status }` only. */
export interface HealthReport {
  status: 'ok'
  /** Seconds since the server started. */
  uptime: number
  broker: BrokerStatus
  cluster?: ClusterHealth
  /**
   * `port` is the MQTT over TCP port devices connect to, and `clients` how many are connected;
   * both are null with an external broker, where devices connect to it and not to Pulseboard.
   */
  mqtt: { port: number | null; clients: number | null; messagesIn: number; messagesOut: number; deniedPublishes: number }
  sockets: { chat: number; live: number }
  /** Bridge and fan-out counters, by name (see docs/protocol.md). */
  bridge: Record<string, number>
  /** How full the bounded tables are: retained messages and bytes, queued bytes, sessions, devices, topics, history points. */
  usage: Record<string, number>
  /** Times input reached each bound since start (docs/limits.md). */
  limits: Record<LimitName, number>
}
