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

/** 1, 2, 2.5 or 5 times a power of ten: the step of a value axis with about `span / step` ticks. */
export function niceStep(rough: number): number {
  if (!(rough > 0) || !Number.isFinite(rough)) return 1
  const power = 10 ** Math.floor(Math.log10(rough))
  const f = rough / power
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10) * power
}

/**
 * The y range for values from `lo` to `hi`, from the data alone:
 * - 5 % of their spread either side, rounded outwards to a quarter of a tick step (so 5 to
 *   10 % in all), so that points streaming in within the range do not move the axis each frame;
 * - for flat data, a span of 0.5 % of their magnitude (0 to 1 for zeros): a steady 21 °C is a
 *   calm line mid-chart, while 1,013 hPa that moves by 2 still shows it;
 * - never across zero for data on one side of it: a battery at 80–90 % gets no negative axis,
 *   an RSSI at −60 dBm no positive one.
 * Chart.js' own range (`grace`, then ticks rounded out to its step) crossed zero: 18 to 1,018 on
 * one axis took a step of 500, and its margin below 18 (to −7) a first tick at −500.
 */
export function valueBounds(lo: number, hi: number, ticks = 5): [number, number] {
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) return [0, 1]
  if (hi < lo) [lo, hi] = [hi, lo]
  if (lo === 0 && hi === 0) return [0, 1]
  const magnitude = Math.max(Math.abs(lo), Math.abs(hi))
  const flat = magnitude * 0.005
  let min: number
  let max: number
  if (hi - lo < flat) {
    const mid = (lo + hi) / 2
    min = mid - flat / 2
    max = mid + flat / 2
  } else {
    const pad = (hi - lo) * 0.05
    min = lo - pad
    max = hi + pad
  }
  const quantum = niceStep((max - min) / ticks) / 4
  min = Math.floor(min / quantum) * quantum
  max = Math.ceil(max / quantum) * quantum
  if (lo >= 0 && min < 0) min = 0
  if (hi <= 0 && max > 0) max = 0
  return [min, max]
}
