/**
 * Durations as people type them on a command line: `250` (ms), `500ms`, `1.5s`, `2m`, `1h`.
 * Pure: returns whole milliseconds, or null for anything else (never throws).
 */

const UNIT_MS: Readonly<Record<string, number>> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 }

const DURATION = /^(\d+(?:\.\d+)?|\.\d+)\s*(ms|s|m|h)?$/i

export function parseDuration(text: string): number | null {
  const match = DURATION.exec(text.trim())
  if (match === null) return null
  const value = Number(match[1])
  const unit = UNIT_MS[(match[2] ?? 'ms').toLowerCase()]
  if (unit === undefined) return null
  const ms = Math.round(value * unit)
  return Number.isSafeInteger(ms) ? ms : null
}
