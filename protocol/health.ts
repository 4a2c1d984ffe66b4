/** `GET /api/health`. */
export interface HealthReport {
  status: 'ok'
  /** Seconds since the server started. */
  uptime: number
  /** `port` is the MQTT over TCP port devices connect to. */
  mqtt: { port: number; clients: number; messagesIn: number; messagesOut: number }
  sockets: { chat: number; live: number }
  /** Bridge and fan-out counters, by name (see docs/protocol.md). */
  bridge: Record<string, number>
}
