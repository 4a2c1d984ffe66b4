/** Steps a person reads at a glance, in ms: 1 s … 7 days. */
const STEPS = [
  1, 2, 5, 10, 15, 30, 60, 120, 180, 300, 600, 900, 1800, 3600, 7200, 10_800, 21_600, 43_200, 86_400, 172_800, 604_800,
].map((s) => s * 1000)

/**
 * Time-axis ticks on round local times (every 30 s, every 5 min, at midnight…), at most `max`
 * of them. Chart.js' time scale needs a date library for this; the rule is short enough here.
 */
export function timeTicks(min: number, max: number, maxCount: number): { value: number }[] {
  if (!Number.isFinite(min) || !Number.isFinite(max) || max <= min) return []
  const span = max - min
  const step = STEPS.find((s) => span / s <= maxCount) ?? Math.ceil(span / maxCount / 86_400_000) * 86_400_000
  // minutes and longer align to the local clock; time zones are whole minutes, most whole hours
  const offset = step >= 60_000 ? -new Date(min).getTimezoneOffset() * 60_000 : 0
  const ticks: { value: number }[] = []
  for (let t = Math.ceil((min + offset) / step) * step - offset; t <= max; t += step) ticks.push({ value: t })
  return ticks
}
