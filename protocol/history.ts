/** One bucket of a long range: its start (epoch ms), the lowest, highest and mean value in it. */
export type Bucket = [start: number, min: number, max: number, avg: number]

/**
 * One metric over a range: the raw points when they fit in `maxPoints`, otherwise
 * buckets of `bucketMs` with their min and max, so that peaks survive.
 */
export type MetricHistory =
  | { unit?: string; points: [ts: number, value: number][] }
  | { unit?: string; bucketMs: number; buckets: Bucket[] }

/** `GET /api/devices/:id/history`: per metric, oldest first. */
export interface DeviceHistory {
  device: string
  /** The range answered, epoch ms. */
  from: number
  to: number
  metrics: Record<string, MetricHistory>
}

/** What a history query asks for. */
export interface HistoryQuery {
  device: string
  /** Every metric when absent. */
  metrics?: readonly string[]
  /** Epoch ms, inclusive; the oldest kept when absent. */
  from?: number
  /** Epoch ms, inclusive; now when absent. */
  to?: number
  /** More points than this per metric come as buckets. */
  maxPoints?: number
}
