import type { DeviceHistory, Envelope, HistoryQuery, LoggedEnvelope, Reading } from '../protocol/index.ts'

export type { LoggedEnvelope }

/** What `GET /api/messages` pages through: newest first, before `before` (epoch ms), matching an MQTT filter. */
export interface MessageQuery {
  /** An MQTT topic filter (`+`, `#`); every topic when absent. */
  filter?: string
  /** Only messages strictly older than this, epoch ms; the newest when absent. */
  before?: number
  /**
   * With `before`: also the messages of exactly `before` whose `id` is lower. Paging with the
   * last message's `ts` and `id` then never repeats or skips messages of the same millisecond.
   */
  beforeId?: number
  /** At most this many. */
  limit: number
}


/** Bytes of a payload that the message log keeps (UTF-8 text, or base64 characters); the rest is cut. */
export const MAX_LOGGED_PAYLOAD_BYTES = 4096

/** What a CSV export covers. */
export interface ExportQuery {
  device: string
  /** Every metric when absent. */
  metrics?: readonly string[]
  from?: number
  to?: number
}

/** One saved record of the registry's choosing (a device, or what the formats learned): plain JSON. */
export interface Saved {
  id: string
  snapshot: unknown
}

/**
 * Where what Pulseboard saw is kept: readings for charts and exports, the raw
 * message log, and what the registry knows of each device, so a restart starts
 * from it. The registry's batched update feeds it, so each batch is one write;
 * the registry itself keeps only the latest values.
 *
 * Writes never throw and never wait: they join a bounded queue, and a store
 * that cannot keep up (or whose disk is full) counts what it drops and says so
 * in `usage`. Reads are async.
 */
export interface HistoryStore {
  /** One batch of readings. */
  append(batch: readonly Reading[]): void
  /** One batch of raw messages, for the message log; payloads are kept cut to a bound. */
  log(batch: readonly Envelope[]): void
  /** Points per metric over the range, or buckets with min, max and mean when more than `maxPoints`; no units, the registry has those. */
  query(query: HistoryQuery): Promise<DeviceHistory>
  /** The message log, newest first (by `ts`, then `id`). */
  messages(query: MessageQuery): Promise<LoggedEnvelope[]>
  /**
   * Readings as CSV (`ts,metric,value`, the header first, ordered by `ts`), produced as they are read:
   * a month never sits in memory. Each string is one or more whole lines, each ending in CRLF (RFC 4180).
   */
  exportCsv(query: ExportQuery): AsyncIterable<string>
  /** The newest point of each metric of a device. */
  latest(device: string): Promise<Record<string, { ts: number; value: number }>>
  /** Saves devices (by id, replacing what was saved); written with the next batch, the newest snapshot of each id wins. */
  saveDevices(devices: readonly Saved[]): void
  loadDevices(): Promise<Saved[]>
  /** Saves what the firmware formats learned from discovery. */
  saveFormats(state: unknown): void
  loadFormats(): Promise<unknown>
  /** Drops a device: its points, its log is left alone, its saved record. */
  forget(device: string): void
  /** Writes out everything queued (at shutdown). */
  flush(): Promise<void>
  /** How full it is and how it is doing, for `/api/health` and `/metrics`: numbers only. */
  readonly usage: Record<string, number>
  close(): Promise<void>
}

/** Points per metric that a query answers with when it names no `maxPoints`. */
export const DEFAULT_MAX_POINTS = 20_000
