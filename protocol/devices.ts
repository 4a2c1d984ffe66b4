import { z } from 'zod'
import type { DeviceFormat } from './readings.ts'

/** The latest value of one metric of a device. */
export interface MetricState {
  value: number
  /** Epoch milliseconds of the reading. */
  ts: number
  unit?: string
  /** Display name announced by the firmware, when it differs from the metric name. */
  label?: string
  /** ON/OFF (1/0) metric, such as a relay: shown as a switch. */
  binary?: boolean
}

/** A device as the registry knows it; `GET /api/devices` returns an array of these. */
export interface DeviceState {
  id: string
  /** Display name: a user's (see `renamed`), announced by the firmware, or the id. */
  name: string
  /** The name was set by a user (`PATCH /api/devices/:id`); an announced name does not replace it. */
  renamed?: true
  format: DeviceFormat
  online: boolean
  /** Online, but silent for more than 3× its usual publish interval. */
  stale: boolean
  /**
   * Not connected, but expected back: it connects, reports and disconnects on a schedule (a
   * deep-sleep ESP32, a cron job). It turns offline when it misses about 3× its interval, or when
   * its will or status topic says so.
   */
  asleep: boolean
  /** When an asleep device's next report is due, epoch ms. */
  nextReport?: number
  /** Epoch milliseconds of the last message, or null if only announced. */
  lastSeen: number | null
  metrics: Record<string, MetricState>
  /** Commands the firmware announced, by name (a switch, a settable property). */
  commands: string[]
  /**
   * It published with MQTT 5 properties (through an external broker): commands go to it as
   * requests, with a response topic and correlation data, and their acknowledgement waits for its answer.
   */
  mqtt5?: true
  /** The MQTT client id it publishes through, while connected. */
  clientId?: string
  /** Topics it published on, most recent first (bounded). */
  topics: string[]
  /** The last will of its MQTT connection, if it set one; the payload cut to 256 characters. */
  will?: { topic: string; payload: string }
  /**
   * Times a new connection took its client id from a connected one [MQTT-3.1.4-2]. Two devices
   * sharing one id take it from each other on every connect; this shows it.
   */
  takeovers?: number
}

/** `GET /api/topics`: every topic seen since start (bounded), for the topic tree. */
export interface TopicSummary {
  topic: string
  /** The last payload as text, cut to 256 characters. */
  payload: string
  encoding?: 'base64'
  count: number
  ts: number
  retain: boolean
}

/** What a `/live` client emits as `command`: `{ device, name, value }`. */
export const CommandRequestSchema = z
  .object({
    device: z.string().min(1).max(1024),
    name: z.string().min(1).max(256),
    value: z.union([z.string().max(65536), z.number(), z.boolean(), z.null(), z.record(z.string(), z.unknown()), z.array(z.unknown())]),
  })
  .strict()

export type CommandRequest = z.input<typeof CommandRequestSchema>
