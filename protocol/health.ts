import type { LimitName } from './limits.ts'

/** `GET /api/health`. Once the server has users, a request without a session or token gets `{ status }` only. */
export interface HealthReport {
  status: 'ok'
  /** Seconds since the server started. */
  uptime: number
  /** `port` is the MQTT over TCP port devices connect to. */
  mqtt: { port: number; clients: number; messagesIn: number; messagesOut: number; deniedPublishes: number }
  sockets: { chat: number; live: number }
  /** Bridge and fan-out counters, by name (see docs/protocol.md). */
  bridge: Record<string, number>
  /** How full the bounded tables are: retained messages and bytes, queued bytes, sessions, devices, topics, history points. */
  usage: Record<string, number>
  /** Times input reached each bound since start (docs/limits.md). */
  limits: Record<LimitName, number>
}
