import type { Logger } from 'pino'
import { LIMITS, type LimitName } from '../protocol/limits.ts'

export interface LimitLog {
  /** Hits per limit since start, for `/metrics` and `/api/health`. */
  readonly hits: Readonly<Record<LimitName, number>>
  report(limit: LimitName, detail?: Record<string, unknown>): void
  close(): void
}

/**
 * Counts every time input reaches a bound, and logs it at most once per
 * interval per limit: an attack that hits a bound a million times must not
 * also write a million log lines.
 */
export function createLimitLog(logger: Logger | undefined, intervalMs = 10_000): LimitLog {
  const hits = Object.fromEntries(Object.keys(LIMITS).map((name) => [name, 0])) as Record<LimitName, number>
  /** Hits since the last line, per limit that logged within the interval. */
  const quiet = new Map<LimitName, number>()

  const timer = setInterval(() => {
    for (const [limit, count] of quiet) {
      if (count > 0) logger?.warn({ limit, count }, `limit reached ${count} more times in ${intervalMs / 1000} s: ${LIMITS[limit]}`)
    }
    quiet.clear()
  }, intervalMs)
  timer.unref()

  return {
    hits,
    report(limit, detail) {
      hits[limit]++
      const count = quiet.get(limit)
      if (count !== undefined) {
        quiet.set(limit, count + 1)
        return
      }
      quiet.set(limit, 0)
      logger?.warn({ limit, ...detail }, `limit reached: ${LIMITS[limit]}`)
    },
    close() {
      clearInterval(timer)
    },
  }
}
