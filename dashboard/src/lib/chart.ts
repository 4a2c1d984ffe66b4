import {
  Chart,
  Decimation,
  Filler,
  LinearScale,
  LineController,
  LineElement,
  PointElement,
  Tooltip,
  type ChartConfiguration,
  type ChartDataset,
  type ChartOptions as ChartJsOptions,
  type Plugin,
} from 'chart.js'
import zoomPlugin from 'chartjs-plugin-zoom'
import type { Attachment } from 'svelte/attachments'
import { formatDateTime, formatExact, formatTick, formatValue } from './format.ts'
import { timeTicks } from './ticks.ts'
import { firstAfter, firstAtOrAfter, type Point } from './series.svelte.ts'
import { cssVar } from './theme.svelte.ts'

// Only what the line charts use: a smaller bundle and less work per update. Time runs on a
// linear axis of epoch ms with our own ticks, so no date adapter is needed.
Chart.register(LineController, LineElement, PointElement, LinearScale, Tooltip, Decimation, Filler, zoomPlugin)

export type LineChart = Chart<'line', Point[]>

/** One line: its points come from a store and are read again at each update. */
export interface ChartSeries {
  /** Stable id, also the key in the canvas' `data-points` attribute. */
  key: string
  label: string
  unit?: string
  color: string
  points: () => readonly Point[]
  /**
   * For bucketed data: each bucket's lowest and highest value, at the same x as `points` (its
   * mean), drawn as a band behind the line so that peaks survive.
   */
  band?: () => { min: readonly Point[]; max: readonly Point[] } | null
}

/**
 * Where each band's two datasets are: after all the lines (dataset i is line i), in the order of
 * the series that have one. The chart's config and its updates both read it.
 */
export function bandSlots(list: readonly ChartSeries[]): Map<number, [min: number, max: number]> {
  const slots = new Map<number, [number, number]>()
  let next = list.length
  list.forEach((s, i) => {
    if (s.band) {
      slots.set(i, [next, next + 1])
      next += 2
    }
  })
  return slots
}

export interface ChartOptions {
  zoomable?: boolean
  /** The user zoomed or panned (not called for a reset). */
  onZoom?: () => void
  /** Draw the area under a single line (small charts). */
  fill?: boolean
  /** Values are never negative (rates, counts): the axis starts at 0. */
  zeroBased?: boolean
  /** Y axes that show ticks at most (see `planAxes`). @default 3 */
  maxAxes?: number
}

/**
 * Creates the chart on the canvas it is attached to and destroys it when the canvas goes
 * or the config changes. `bind` receives the instance for updates (null when destroyed).
 */
export function chart(config: ChartConfiguration<'line', Point[]>, bind?: (c: LineChart | null) => void): Attachment<HTMLCanvasElement> {
  return (canvas) => {
    const instance = new Chart(canvas, config)
    bind?.(instance)
    return () => {
      bind?.(null)
      instance.destroy()
    }
  }
}

/** Units of a device's own health rather than of what it measures: WiFi signal, link quality, uptime. */
const DIAGNOSTIC_UNITS = new Set(['dbm', 'db', 'lqi', 's', 'ms', 'min', 'h'])

/** Where the lines of one unit are read: their y scale, and whether it shows ticks. */
export interface AxisPlan {
  /** Chart.js scale id. */
  id: string
  unit: string
  /** Ticks and title drawn; false: the scale fits its lines but takes no room. */
  shown: boolean
  position: 'left' | 'right'
  /** Keys of the lines on it. */
  keys: string[]
}

/**
 * One y scale per unit (metrics without a unit share one), so that each line spans its own
 * range: 1,013 hPa next to 21 °C on one axis would flatten the temperature into a line.
 * Ticks show on at most `maxShown` scales (3 on a wide chart, 2 on a narrow one): each column
 * of ticks takes 40 to 60 px from the plot, and past three, nobody can tell which axis belongs to
 * which line. The units with the most lines get them, those of what a device measures before
 * those of its own health (signal, uptime), then in the order the lines come. Any further unit
 * keeps a scale of its own, unlabelled, rather than share one with a unit it is not: its line
 * keeps its shape, its values are in the tooltip and on its tile, and the legend says it has no
 * axis. The first shown axis is on the left, the others on the right.
 */
export function planAxes(list: readonly ChartSeries[], maxShown = 3): Map<string, AxisPlan> {
  const byUnit = new Map<string, AxisPlan>()
  for (const s of list) {
    const unit = s.unit ?? ''
    let plan = byUnit.get(unit)
    if (!plan) byUnit.set(unit, (plan = { id: byUnit.size === 0 ? 'y' : `y${byUnit.size}`, unit, shown: false, position: 'left', keys: [] }))
    plan.keys.push(s.key)
  }
  const health = (unit: string) => (DIAGNOSTIC_UNITS.has(unit.toLowerCase()) ? 1 : 0)
  // a stable sort: ties keep the order of first use
  const ranked = [...byUnit.values()].sort((a, b) => health(a.unit) - health(b.unit) || b.keys.length - a.keys.length)
  ranked.forEach((plan, i) => {
    plan.shown = i < maxShown
    plan.position = i === 0 ? 'left' : 'right'
  })
  return byUnit
}

/** A streaming time chart: no animation, no parsing, decimated, colours from the theme. */
export function timeChartConfig(list: readonly ChartSeries[], opts: ChartOptions = {}): ChartConfiguration<'line', Point[]> {
  const muted = cssVar('--text-muted')
  const grid = cssVar('--chart-grid')
  const text = cssVar('--text')
  const surface = cssVar('--surface-raised')
  const border = cssVar('--border-strong')
  Chart.defaults.font.family = getComputedStyle(document.body).fontFamily
  Chart.defaults.font.size = 11

  /** Distance between x ticks, ms: decides whether labels show seconds. */
  let xStep = 0
  const axes = planAxes(list, opts.maxAxes ?? 3)
  const units = new Map(list.map((s) => [s.key, s.unit]))
  const scales: NonNullable<ChartJsOptions<'line'>['scales']> = {
    x: {
      type: 'linear',
      grid: { color: grid, drawTicks: false },
      border: { color: border },
      afterBuildTicks(scale) {
        // at least three: a phone-wide axis of a day and a minute would otherwise get one tick
        const ticks = timeTicks(scale.min, scale.max, Math.max(3, Math.floor(scale.width / 80)))
        xStep = ticks.length > 1 ? ticks[1]!.value - ticks[0]!.value : scale.max - scale.min
        scale.ticks = ticks
      },
      ticks: {
        color: muted,
        maxRotation: 0,
        autoSkipPadding: 16,
        padding: 6,
        callback: (value) => formatTick(Number(value), xStep),
      },
    },
  }
  const shownAxes = [...axes.values()].filter((a) => a.shown).length
  const colors = new Map(list.map((s) => [s.key, s.color]))
  for (const axis of axes.values()) {
    const single = axis.keys.length === 1 ? colors.get(axis.keys[0]!) : undefined
    scales[axis.id] = {
      type: 'linear',
      position: axis.position,
      display: axis.shown,
      // the range is set at each redraw, from the data (see `valueBounds`); Chart.js' own went below zero
      ...(opts.zeroBased && { min: 0 }),
      // grid lines of the left axis only: two grids of different steps read as noise
      grid: { color: grid, display: axis.shown && axis.position === 'left', drawTicks: false },
      border: { display: false },
      // with several axes, each is titled with its unit, in its line's colour when it has one line
      title: { display: axis.unit !== '' && shownAxes > 1, text: axis.unit, color: single ?? muted, padding: 2 },
      ticks: {
        color: muted,
        padding: 6,
        maxTicksLimit: 6,
        // the range ends a little past the data, not on a round number: no label there
        includeBounds: false,
        callback: (v) => formatValue(Number(v)) + (shownAxes === 1 && axis.unit ? ` ${axis.unit}` : ''),
      },
    }
  }

  const slots = bandSlots(list)
  const datasets: ChartDataset<'line', Point[]>[] = list.map((s) => ({
    label: s.label,
    data: [],
    borderColor: s.color,
    backgroundColor: opts.fill ? withAlpha(s.color, 0.14) : s.color,
    fill: opts.fill ? 'origin' : false,
    yAxisID: axes.get(s.unit ?? '')!.id,
    borderWidth: 1.75,
    pointRadius: 0,
    pointHoverRadius: 4,
    pointHitRadius: 6,
    tension: 0,
    normalized: true,
    parsing: false,
    indexAxis: 'x',
    order: 0,
  }))
  // bands under the lines (a higher order is drawn first), filled from min up to max
  list.forEach((s, i) => {
    const slot = slots.get(i)
    if (!slot) return
    const band = {
      data: [],
      yAxisID: axes.get(s.unit ?? '')!.id,
      borderWidth: 0,
      pointRadius: 0,
      pointHoverRadius: 0,
      pointHitRadius: 0,
      tension: 0,
      normalized: true,
      parsing: false as const,
      indexAxis: 'x' as const,
      order: 1,
      backgroundColor: withAlpha(s.color, 0.16),
    }
    datasets.push({ ...band, label: `${s.label} min`, fill: false }, { ...band, label: `${s.label} max`, fill: slot[0] })
  })

  return {
    type: 'line',
    data: { datasets },
    plugins: [dataStartMarker(muted, cssVar('--surface'))],
    options: {
      animation: false,
      responsive: true,
      maintainAspectRatio: false,
      parsing: false,
      normalized: true,
      interaction: { mode: 'nearest', axis: 'x', intersect: false },
      layout: { padding: { top: 4, right: 4 } },
      scales,
      plugins: {
        // the time chart hands over at most two points a pixel (`decimate`); this is for a zoomed one, which gets every point
        decimation: { enabled: true, algorithm: 'lttb', samples: 500 },
        legend: { display: false },
        tooltip: {
          backgroundColor: surface,
          titleColor: text,
          bodyColor: text,
          borderColor: border,
          borderWidth: 1,
          padding: 10,
          boxPadding: 4,
          usePointStyle: true,
          // the bands are shown in their line's label
          filter: (item) => item.datasetIndex < list.length,
          callbacks: {
            title: (items) => (items[0] ? formatDateTime(items[0].parsed.x ?? 0) : ''),
            label: (item) => {
              const unit = units.get(list[item.datasetIndex]?.key ?? '')
              const u = unit ? ` ${unit}` : ''
              const slot = slots.get(item.datasetIndex)
              const low = slot && item.chart.data.datasets[slot[0]]?.data[item.dataIndex]
              const high = slot && item.chart.data.datasets[slot[1]]?.data[item.dataIndex]
              const x = item.parsed.x
              if (isPoint(low) && isPoint(high) && low.x === x && high.x === x) {
                return ` ${item.dataset.label ?? ''}: mean ${formatExact(item.parsed.y ?? 0)}${u} (${formatExact(low.y)} to ${formatExact(high.y)})`
              }
              return ` ${item.dataset.label ?? ''}: ${formatExact(item.parsed.y ?? 0)}${u}`
            },
          },
        },
        zoom: opts.zoomable
          ? {
              limits: { x: { min: 'original', max: 'original', minRange: 2000 } },
              pan: { enabled: true, mode: 'x', onPanComplete: () => opts.onZoom?.() },
              zoom: {
                mode: 'x',
                wheel: { enabled: true, modifierKey: 'ctrl' },
                pinch: { enabled: true },
                onZoomComplete: () => opts.onZoom?.(),
              },
            }
          : { pan: { enabled: false }, zoom: { wheel: { enabled: false }, pinch: { enabled: false } } },
      },
    },
  }
}

/** Where each chart's data begins, when that is after the start of its range (see `markDataStart`). */
const dataStarts = new WeakMap<object, number>()

/**
 * Marks where the data begins (epoch ms) with a dashed line, or removes the mark (null): a range
 * only partly filled says so, rather than look like a device that was silent.
 */
export function markDataStart(c: LineChart, x: number | null): void {
  if (x === null) dataStarts.delete(c)
  else dataStarts.set(c, x)
}

function dataStartMarker(color: string, background: string): Plugin<'line'> {
  return {
    id: 'dataStart',
    afterDatasetsDraw(c) {
      const x = dataStarts.get(c)
      const scale = c.scales['x']
      if (x === undefined || !scale) return
      const { top, bottom, left, right } = c.chartArea
      const px = Math.round(scale.getPixelForValue(x)) + 0.5
      if (px < left || px > right) return
      const ctx = c.ctx
      ctx.save()
      ctx.strokeStyle = color
      ctx.lineWidth = 1
      ctx.setLineDash([3, 3])
      ctx.beginPath()
      ctx.moveTo(px, top)
      ctx.lineTo(px, bottom)
      ctx.stroke()
      const text = 'data begins'
      ctx.font = `11px ${Chart.defaults.font.family ?? 'sans-serif'}`
      const width = ctx.measureText(text).width
      // beside the line, on the side with room
      const tx = px + 6 + width <= right ? px + 6 : px - 6 - width
      ctx.fillStyle = background
      ctx.fillRect(tx - 3, top + 2, width + 6, 15)
      ctx.fillStyle = color
      ctx.textBaseline = 'middle'
      ctx.fillText(text, tx, top + 10)
      ctx.restore()
    },
  }
}

/**
 * Indexes [start, end) of the points between `min` and `max`, plus one on each side so lines
 * reach the edges. Indexes, so that a band slices its min and max the same way as its line.
 */
export function visibleRange(points: readonly Point[], min: number, max: number): [number, number] {
  const lo = firstAtOrAfter(points, min)
  const end = firstAfter(points, max, lo)
  return [Math.max(0, lo - 1), Math.min(points.length, end + 1)]
}

/**
 * How wide a bucket of `decimate` is for a window of `spanMs` drawn over `pixels`: about a
 * pixel, rounded up to a power of two milliseconds so that it changes only when the window
 * doubles or halves, not at every redraw of a window that grows.
 */
export function bucketWidth(spanMs: number, pixels: number): number {
  return 2 ** Math.ceil(Math.log2(Math.max(1, spanMs / Math.max(1, pixels))))
}

/**
 * The points [lo, hi) as a line of at most two a bucket: each bucket's lowest and highest in
 * the order they came, and the first and last point so the line reaches both edges. Peaks
 * stay, and the chart draws a bounded number of points however fast the device reports. The
 * buckets are counted from time zero, so they stay put as a live window slides: the line does
 * not shimmer from one redraw to the next.
 */
export function decimate(points: readonly Point[], lo: number, hi: number, bucketMs: number): Point[] {
  const out: Point[] = []
  if (hi <= lo) return out
  out.push(points[lo]!)
  let i = lo + 1
  while (i < hi - 1) {
    const bucket = Math.floor(points[i]!.x / bucketMs)
    let low = i
    let high = i
    let j = i + 1
    for (; j < hi - 1 && Math.floor(points[j]!.x / bucketMs) === bucket; j++) {
      if (points[j]!.y < points[low]!.y) low = j
      if (points[j]!.y > points[high]!.y) high = j
    }
    if (low === high) out.push(points[low]!)
    else out.push(points[Math.min(low, high)]!, points[Math.max(low, high)]!)
    i = j
  }
  if (hi - 1 > lo) out.push(points[hi - 1]!)
  return out
}

function isPoint(value: unknown): value is Point {
  return typeof value === 'object' && value !== null && 'x' in value && 'y' in value
}

/** Line colours that read on both themes, in order of use. */
const palette = ['--series-1', '--series-2', '--series-3', '--series-4', '--series-5', '--series-6', '--series-7', '--series-8']

export function seriesColor(index: number): string {
  return cssVar(palette[index % palette.length]!)
}

/** `#rrggbb` with an alpha; canvas fill styles do not take `color-mix()` everywhere. */
export function withAlpha(hex: string, alpha: number): string {
  if (!/^#[0-9a-f]{6}$/i.test(hex)) return hex
  return hex + Math.round(alpha * 255).toString(16).padStart(2, '0')
}
