import type { DeviceHistory, HistoryQuery, Reading } from '../protocol/index.ts'

/**
 * Where readings are kept for charts and `/api/devices/:id/history`. The
 * registry's batched update feeds it, so each batch is one write; the
 * registry itself keeps only the latest values.
 */
export interface HistoryStore {
  /** One batch of readings. Never throws and never waits: a store that cannot keep up counts what it drops. */
  append(batch: readonly Reading[]): void
  /** Points (or buckets, when more than `maxPoints`) per metric over the range; no units, the registry has those. */
  query(query: HistoryQuery): Promise<DeviceHistory>
  /** The newest point of each metric of a device. */
  latest(device: string): Promise<Record<string, { ts: number; value: number }>>
  /** Drops a device's points (it was forgotten). */
  forget(device: string): void
  /** How full it is, for `/api/health`. */
  readonly usage: Record<string, number>
  close(): Promise<void>
}

/** Points per metric that a query answers with when it names no `maxPoints`. */
export const DEFAULT_MAX_POINTS = 20_000
