/** Every number, time and duration on screen goes through these, in the browser's locale. */

const time = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' })
const timeMs = new Intl.DateTimeFormat(undefined, {
  hour: '2-digit',
  minute: '2-digit',
  second: '2-digit',
  fractionalSecondDigits: 3,
})
const shortTime = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' })
const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' })
const dayTime = new Intl.DateTimeFormat(undefined, { weekday: 'short', hour: '2-digit', minute: '2-digit' })
const weekday = new Intl.DateTimeFormat(undefined, { weekday: 'short' })
const dayMonth = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric' })
const relative = new Intl.RelativeTimeFormat(undefined, { numeric: 'always', style: 'narrow' })
const integer = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 })
const exact = new Intl.NumberFormat(undefined, { maximumFractionDigits: 6 })
const rate = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1, minimumFractionDigits: 1 })
const byPrecision = [0, 1, 2, 3].map((digits) => new Intl.NumberFormat(undefined, { maximumFractionDigits: digits }))

export const formatTime = (ts: number): string => time.format(ts)
export const formatTimeMs = (ts: number): string => timeMs.format(ts)
export const formatDateTime = (ts: number): string => dateTime.format(ts)

/** "12:03:04" today, the date too on another day: a `since` can be old. */
export function formatSince(ts: number, now = Date.now()): string {
  return new Date(ts).toDateString() === new Date(now).toDateString() ? formatTime(ts) : formatDateTime(ts)
}

export const formatCount = (n: number): string => integer.format(n)
export const formatExact = (n: number): string => exact.format(n)
export const formatRate = (n: number): string => rate.format(n)

const HOUR_MS = 3_600_000
const DAY_MS = 86_400_000

/**
 * Axis labels: seconds only when ticks are seconds apart; hours and minutes, with the weekday at
 * midnight, when they are hours apart; the weekday and time when a tick is half a day; the date
 * when ticks are days apart (a 30-day axis of weekdays would repeat them).
 */
export function formatTick(ts: number, stepMs: number): string {
  if (stepMs < 60_000) return time.format(ts)
  if (stepMs < 6 * HOUR_MS) {
    const d = new Date(ts)
    return stepMs >= HOUR_MS && d.getHours() === 0 && d.getMinutes() === 0 ? weekday.format(ts) : shortTime.format(ts)
  }
  if (stepMs < DAY_MS) return dayTime.format(ts)
  return dayMonth.format(ts)
}

/** A reading for display: fewer decimals as the magnitude grows. */
export function formatValue(value: number): string {
  const abs = Math.abs(value)
  const digits = abs >= 1000 ? 0 : abs >= 100 ? 1 : abs >= 1 ? 2 : 3
  return byPrecision[digits]!.format(value)
}

/** "3s ago", "5m ago": how long since `ts`, for "last seen". */
export function formatAgo(ts: number, now: number): string {
  const seconds = Math.max(0, Math.round((now - ts) / 1000))
  if (seconds < 60) return relative.format(-seconds, 'second')
  const minutes = Math.floor(seconds / 60)
  if (minutes < 60) return relative.format(-minutes, 'minute')
  const hours = Math.floor(minutes / 60)
  if (hours < 48) return relative.format(-hours, 'hour')
  return relative.format(-Math.floor(hours / 24), 'day')
}

/** "in 4m", "in 30s": how long until `ts`, for an asleep device's next report. */
export function formatIn(ts: number, now: number): string {
  const seconds = Math.max(0, Math.round((ts - now) / 1000))
  if (seconds < 60) return relative.format(seconds, 'second')
  const minutes = Math.round(seconds / 60)
  if (minutes < 60) return relative.format(minutes, 'minute')
  const hours = Math.round(minutes / 60)
  if (hours < 48) return relative.format(hours, 'hour')
  return relative.format(Math.round(hours / 24), 'day')
}

const oneDecimal = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 })

/** A size in bytes: "512 B", "3.2 MiB" (powers of 1024, as docs/limits.md counts). */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let n = Math.max(0, bytes)
  let i = 0
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024
    i++
  }
  return `${i === 0 ? integer.format(n) : oneDecimal.format(n)} ${units[i]}`
}

/** A bucket width as people say it: "250-ms", "5-s", "1-min", "2-h", "1-day". */
export function formatSpan(ms: number): string {
  if (ms < 1000) return `${integer.format(ms)}-ms`
  if (ms < 60_000) return `${oneDecimal.format(ms / 1000)}-s`
  if (ms < HOUR_MS) return `${oneDecimal.format(ms / 60_000)}-min`
  if (ms < DAY_MS) return `${oneDecimal.format(ms / HOUR_MS)}-h`
  return `${oneDecimal.format(ms / DAY_MS)}-day`
}

const unitParts = (['day', 'hour', 'minute', 'second'] as const).map(
  (unit) => new Intl.NumberFormat(undefined, { style: 'unit', unit, unitDisplay: 'narrow' }),
)

/** An uptime: the two largest units, "2d 3h" or "4m 12s". */
export function formatDuration(totalSeconds: number): string {
  const s = Math.max(0, Math.floor(totalSeconds))
  const parts = [Math.floor(s / 86400), Math.floor((s % 86400) / 3600), Math.floor((s % 3600) / 60), s % 60]
  const first = parts.findIndex((n) => n > 0)
  if (first === -1) return unitParts[3]!.format(0)
  return parts
    .slice(first, first + 2)
    .map((n, i) => unitParts[first + i]!.format(n))
    .join(' ')
}
