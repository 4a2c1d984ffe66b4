import { execFileSync } from 'node:child_process'
import { existsSync, mkdirSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import type { MqttClient } from 'mqtt'
import type { Browser, BrowserContext, Page } from 'playwright-core'
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { launchChromium } from '../../bench/browser.ts'
import type { DeviceHistory, DeviceState } from '../../protocol/index.ts'
import { startStack, type Stack } from '../helpers/stack.ts'
import { chartState, goto, openDashboard, waitForPoints, waitForSettled, waitForValues, type PageTrouble, type View } from './page.ts'

/**
 * The device page's chart and tiles: every metric charted, one axis per unit, ranges from the
 * data, a range only partly filled, the legend remembered, a lone reading drawn, and tiles that
 * follow the readings frame by frame; and screenshots of it.
 */

const repoRoot = fileURLToPath(new URL('../..', import.meta.url))
const dashboardDir = fileURLToPath(new URL('../../dist/dashboard', import.meta.url))
const screenshotDir = fileURLToPath(new URL('../screenshots/', import.meta.url))

let browser: Browser
let stack: Stack
let context: BrowserContext | null = null
let trouble: PageTrouble = { errors: [], csp: [] }
/** Run after each test, before the stack closes. */
const cleanups: (() => void)[] = []

beforeAll(async () => {
  // `npm test` builds first; a lone `vitest run tests/e2e` builds here once.
  if (!existsSync(`${dashboardDir}/index.html`)) execFileSync('npm', ['run', 'build'], { cwd: repoRoot, stdio: 'inherit' })
  mkdirSync(screenshotDir, { recursive: true })
  browser = await launchChromium()
}, 120_000)

afterAll(async () => {
  await browser?.close()
})

beforeEach(async () => {
  stack = await startStack({ dashboardDir })
  trouble = { errors: [], csp: [] }
})

afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) cleanup()
  await context?.close()
  context = null
  await stack.close()
  expect(trouble.errors, 'uncaught errors in the page').toEqual([])
  expect(trouble.csp, 'what the Content-Security-Policy blocked').toEqual([])
})

/** A new browser context on the dashboard at `hash`; the previous one is closed. */
async function open(hash: string, view: View = {}): Promise<Page> {
  await context?.close()
  const opened = await openDashboard(browser, stack.httpUrl, hash, view, trouble)
  context = opened.context
  return opened.page
}

/** What the chart says of its y axes (`data-axes`, written at each redraw). */
interface Axis {
  unit: string
  shown: boolean
  position: 'left' | 'right'
  keys: string[]
  min: number
  max: number
}

async function axes(page: Page): Promise<Axis[]> {
  return JSON.parse((await page.getByTestId('time-chart').getAttribute('data-axes')) ?? '[]') as Axis[]
}

const UNITS = { temperature: '°C', humidity: '%', pressure: 'hPa', battery: '%', rssi: 'dBm' }

/** A weather station of five magnitudes: 21 °C, 55 %, 1,013 hPa, 87 % of battery, −60 dBm. Smooth and repeatable. */
function weather(t: number): Record<string, number> {
  const round = (n: number, digits: number) => Number(n.toFixed(digits))
  return {
    temperature: round(21 + 1.5 * Math.sin(t / 40_000) + 0.2 * Math.sin(t / 7_000), 2),
    humidity: round(55 - 4 * Math.sin(t / 50_000 + 0.8) + 0.6 * Math.sin(t / 9_000), 1),
    pressure: round(1013 + 1.2 * Math.sin(t / 90_000), 1),
    battery: round(87 - ((t / 60_000) % 1) * 0.5, 1),
    rssi: Math.round(-60 - 4 * Math.sin(t / 20_000) - 2 * Math.sin(t / 3_000)),
  }
}

/**
 * The station has reported for five minutes (readings sent with their own timestamps) and goes
 * on every half second: a 1-hour range is only partly filled. Resolves with its first timestamp.
 */
async function station(client: MqttClient, id = 'station'): Promise<number> {
  const now = Date.now()
  const first = now - 5 * 60_000
  for (let t = first; t < now; t += 2000) await client.publishAsync(`devices/${id}/telemetry`, JSON.stringify({ ts: t, ...weather(t), units: UNITS }))
  const timer = setInterval(() => void client.publishAsync(`devices/${id}/telemetry`, JSON.stringify({ ...weather(Date.now()), units: UNITS })), 500)
  cleanups.push(() => clearInterval(timer))
  return first
}

async function chooseRange(page: Page, name: string): Promise<void> {
  await page.getByRole('radio', { name }).check({ force: true })
}

/** Waits until the chart shows the 1-hour range's data: an x axis that starts at the first point, not an hour ago. */
async function untilPartlyFilled(page: Page, first: number): Promise<void> {
  await expect
    .poll(async () => {
      const canvas = page.getByTestId('time-chart')
      return Number(await canvas.getAttribute('data-start')) === first && (await chartState(page)).counts['temperature']! > 100
    }, { timeout: 10_000, message: `the chart to mark where the data begins (${first})` })
    .toBe(true)
}

describe('the device chart', () => {
  it('charts all five metrics of five magnitudes on one axis per unit, from the data, and shows a partly filled range from its first point', async () => {
    const client = await stack.mqtt({ clientId: 'station' })
    const first = await station(client)
    const page = await open('#/devices/station')
    await waitForPoints(page, 'pressure', 100)
    await chooseRange(page, '1 h')
    await untilPartlyFilled(page, first)

    const chart = await chartState(page)
    // every metric, by default
    expect(Object.keys(chart.counts).sort()).toEqual(['battery', 'humidity', 'pressure', 'rssi', 'temperature'])
    for (const [metric, n] of Object.entries(chart.counts)) expect(n, `points of ${metric}`).toBeGreaterThan(100)

    // one scale per unit; % holds humidity and battery; three of them labelled on a wide chart
    const list = await axes(page)
    expect(list.map((a) => a.unit).sort()).toEqual(['%', 'dBm', 'hPa', '°C'].sort())
    expect(list.find((a) => a.unit === '%')?.keys.sort()).toEqual(['battery', 'humidity'])
    expect(list.filter((a) => a.shown)).toHaveLength(3)
    expect(list.find((a) => a.shown && a.position === 'left')?.unit).toBe('%')
    // the device's own signal strength ranks after what it measures
    expect(list.find((a) => !a.shown)?.unit).toBe('dBm')
    expect(await page.getByTestId('chart-legend').locator('[data-metric=rssi] [data-testid=no-axis]').count()).toBe(1)

    // each range is the data's, padded a little: no negative axis for positive data, no positive one for RSSI
    const history = (await (await fetch(`${stack.httpUrl}/api/devices/station/history?from=${first}&maxPoints=100000`)).json()) as DeviceHistory
    const values = (metric: string) => {
      const kept = history.metrics[metric]
      return kept && 'points' in kept ? kept.points.map(([, v]) => v) : []
    }
    for (const axis of list) {
      const all = axis.keys.flatMap(values)
      expect(all.length).toBeGreaterThan(100)
      const lo = Math.min(...all)
      const hi = Math.max(...all)
      expect(axis.min, `${axis.unit} axis from ${axis.min}, data from ${lo}`).toBeLessThanOrEqual(lo)
      expect(axis.max, `${axis.unit} axis to ${axis.max}, data to ${hi}`).toBeGreaterThanOrEqual(hi)
      // at most about 10 % either side of the data (or the span flat data gets)
      const span = Math.max(hi - lo, Math.abs(hi) * 0.005)
      expect(axis.max - axis.min, `the ${axis.unit} axis spans ${axis.min} to ${axis.max} for data from ${lo} to ${hi}`).toBeLessThan(span * 1.5)
      if (lo >= 0) expect(axis.min).toBeGreaterThanOrEqual(0)
      if (hi <= 0) expect(axis.max).toBeLessThanOrEqual(0)
    }

    // the 1-hour range has five minutes of data: the axis starts just before the first point, which is marked
    const [min, max] = chart.x
    expect(min).toBeLessThanOrEqual(first)
    expect(min).toBeGreaterThan(first - 30_000)
    expect(max).toBeGreaterThan(Date.now() - 5000)
    expect(Number(await page.getByTestId('time-chart').getAttribute('data-start'))).toBe(first)

    // a 5-minute range is full: no mark, the whole range
    await chooseRange(page, '5 min')
    await expect.poll(async () => (await page.getByTestId('time-chart').getAttribute('data-start')) ?? 'none', { timeout: 5000 }).toBe('')
    const [min5, max5] = (await chartState(page)).x
    expect(Math.round((max5 - min5) / 1000)).toBe(300)
  }, 45_000)

  it('draws at most two points a pixel of a device that reports fast, keeping its peaks, and redraws as often as the axis moves a pixel', async () => {
    const client = await stack.mqtt({ clientId: 'fast' })
    await client.publishAsync('devices/fast/telemetry', JSON.stringify({ temperature: 21, units: { temperature: '°C' } }))
    const page = await open('#/devices/fast')
    await waitForPoints(page, 'temperature', 1)
    // history loaded: what follows is live points only, each one charted, none a bucket's mean
    await waitForSettled(page)
    // 4,000 readings as fast as they go, with one spike and one dip: far more than the chart has pixels
    for (let i = 0; i < 4000; i++) {
      await client.publishAsync('devices/fast/telemetry', JSON.stringify({ temperature: i === 1500 ? 95 : i === 2500 ? -40 : Number((21 + Math.sin(i / 100)).toFixed(2)) }))
    }
    await waitForPoints(page, 'temperature', 4001)
    const drawn = JSON.parse((await page.getByTestId('time-chart').getAttribute('data-drawn')) ?? '{}') as Record<string, number>
    expect(drawn['pixels']).toBeGreaterThan(500)
    // the burst spans a few seconds of the 5-minute axis: a few pixels, so a few points each
    expect(drawn['temperature']).toBeGreaterThan(2)
    expect(drawn['temperature']).toBeLessThanOrEqual(Math.min(2 * drawn['pixels']! + 2, 400))
    // the axis comes from what is drawn: the spike and the dip are in it
    const [axis] = await axes(page)
    expect(axis!.max).toBeGreaterThanOrEqual(95)
    expect(axis!.min).toBeLessThanOrEqual(-40)

    // the chart redraws when its axis has moved a pixel, not at every frame: a minute over 1,000 pixels is 60 ms a pixel
    const [from, to] = (await chartState(page)).x
    const msPerPixel = (to - from) / drawn['pixels']!
    const timer = setInterval(() => void client.publishAsync('devices/fast/telemetry', JSON.stringify({ temperature: 21 })), 20)
    cleanups.push(() => clearInterval(timer))
    const redraws = await page.evaluate(
      () =>
        new Promise<number>((resolve) => {
          const canvas = document.querySelector<HTMLCanvasElement>('canvas[data-testid=time-chart]')!
          let n = 0
          const seen = new MutationObserver(() => n++)
          seen.observe(canvas, { attributes: true, attributeFilter: ['data-x'] })
          setTimeout(() => {
            seen.disconnect()
            resolve(n)
          }, 3000)
        }),
    )
    expect(msPerPixel).toBeGreaterThan(30)
    expect(redraws).toBeGreaterThanOrEqual(3)
    expect(redraws, `${redraws} redraws in 3 s at ${msPerPixel.toFixed(0)} ms a pixel`).toBeLessThanOrEqual(Math.ceil((3000 / msPerPixel) * 1.3) + 2)
  })

  it('never draws a negative axis for data that never goes below zero, with no units to tell the metrics apart', async () => {
    // the benchmark's device: five metrics, no units, 18 to 1,018 on one shared axis (it ran from −500)
    const client = await stack.mqtt({ clientId: 'bench-0' })
    const now = Date.now()
    for (let i = 0; i < 60; i++) {
      const t = now - 60_000 + i * 1000
      await client.publishAsync('devices/bench-0/telemetry', JSON.stringify({ ts: t, temperature: 21 + 3 * Math.sin(i / 9), humidity: 45 + 10 * Math.sin(i / 13), pressure: 1013 + 5 * Math.sin(i / 30), co2: 600 + 4 * i, voc: 100 + i }))
    }
    const page = await open('#/devices/bench-0')
    await waitForPoints(page, 'voc', 60)
    const list = await axes(page)
    expect(list).toHaveLength(1)
    expect(list[0]!.keys.sort()).toEqual(['co2', 'humidity', 'pressure', 'temperature', 'voc'])
    expect(list[0]!.min).toBe(0)
    expect(list[0]!.max).toBeGreaterThanOrEqual(1018)
    expect(list[0]!.max).toBeLessThan(1150)
  })

  it('toggles lines from the legend, and remembers the choice per device after a reload', async () => {
    const client = await stack.mqtt({ clientId: 'station' })
    await station(client)
    await station(client, 'other')
    const page = await open('#/devices/station')
    await waitForPoints(page, 'humidity', 10)
    const legend = page.getByTestId('chart-legend')
    const entry = (metric: string) => legend.locator(`[data-testid=legend-entry][data-metric=${metric}]`)
    expect(await entry('humidity').getAttribute('aria-pressed')).toBe('true')

    await entry('humidity').click()
    await expect.poll(async () => Object.keys((await chartState(page)).counts).sort(), { timeout: 5000 }).toEqual(['battery', 'pressure', 'rssi', 'temperature'])
    expect(await entry('humidity').getAttribute('aria-pressed')).toBe('false')
    // the tile says so too
    expect(await page.locator('.tile[data-metric=humidity]').getAttribute('aria-pressed')).toBe('false')
    // battery alone on the % axis now
    expect((await axes(page)).find((a) => a.unit === '%')?.keys).toEqual(['battery'])

    await page.reload()
    await page.getByText('Live', { exact: true }).waitFor({ timeout: 10_000 })
    await waitForPoints(page, 'temperature', 10)
    expect(Object.keys((await chartState(page)).counts).sort()).toEqual(['battery', 'pressure', 'rssi', 'temperature'])
    expect(await entry('humidity').getAttribute('aria-pressed')).toBe('false')

    // another device keeps its own choice
    await goto(page, `${stack.httpUrl}/#/devices/other`)
    await waitForPoints(page, 'humidity', 10)
    expect(Object.keys((await chartState(page)).counts)).toContain('humidity')

    // and turning it on again is remembered too
    await goto(page, `${stack.httpUrl}/#/devices/station`)
    await entry('humidity').click()
    await waitForPoints(page, 'humidity', 10)
    await page.reload()
    await page.getByText('Live', { exact: true }).waitFor({ timeout: 10_000 })
    await waitForPoints(page, 'humidity', 10)
  }, 45_000)

  it('draws a lone reading as a point', async () => {
    const client = await stack.mqtt({ clientId: 'lone' })
    await client.publishAsync('devices/lone/telemetry', JSON.stringify({ temperature: 21.5 }))
    const page = await open('#/devices/lone')
    await waitForValues(page, 'temperature', [21.5])
    const color = await page.evaluate(() => getComputedStyle(document.documentElement).getPropertyValue('--series-1').trim())
    // pixels of the line's colour on the canvas: the dot (a line of one point draws nothing)
    const painted = await page.getByTestId('time-chart').evaluate((canvas: HTMLCanvasElement, hex: string) => {
      const [r, g, b] = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16))
      const { data } = canvas.getContext('2d')!.getImageData(0, 0, canvas.width, canvas.height)
      let n = 0
      for (let i = 0; i < data.length; i += 4) if (Math.abs(data[i]! - r!) < 8 && Math.abs(data[i + 1]! - g!) < 8 && Math.abs(data[i + 2]! - b!) < 8 && data[i + 3]! > 200) n++
      return n
    }, color)
    expect(painted, 'pixels of the dot').toBeGreaterThan(10)
  })
})

describe('tiles', () => {
  it('show each reading’s value with its timestamp, updating the DOM at most once a frame', async () => {
    const client = await stack.mqtt({ clientId: 'fast' })
    await client.publishAsync('devices/fast/telemetry', JSON.stringify({ temperature: 20 }))
    const page = await open('#/devices/fast')
    const tile = page.locator('.tile[data-metric=temperature] [data-testid=tile-value]')
    await expect.poll(() => tile.textContent(), { timeout: 10_000 }).toBe('20')

    // every change of the tile's data-ts, with when it happened
    await page.evaluate(() => {
      const changes: number[] = []
      ;(window as unknown as { tileChanges: number[] }).tileChanges = changes
      new MutationObserver((records) => {
        for (const r of records) if (r.attributeName === 'data-ts') changes.push(performance.now())
      }).observe(document.querySelector('.tile[data-metric=temperature] [data-testid=tile-value]')!, { attributes: true })
    })
    // a burst of 200 readings, each with its own timestamp and value
    const t0 = Date.now() - 1000
    for (let i = 1; i <= 200; i++) void client.publishAsync('devices/fast/telemetry', JSON.stringify({ ts: t0 + i, temperature: 20 + i / 100 }))
    await expect.poll(() => tile.textContent(), { timeout: 10_000 }).toBe('22')
    expect(Number(await tile.getAttribute('data-ts'))).toBe(t0 + 200)
    const changes = await page.evaluate(() => (window as unknown as { tileChanges: number[] }).tileChanges)
    // coalesced: far fewer DOM writes than readings, and never two in one frame
    expect(changes.length).toBeLessThan(50)
    for (let i = 1; i < changes.length; i++) expect(changes[i]! - changes[i - 1]!, 'time between two DOM writes of the tile, ms').toBeGreaterThan(8)

    // a reading the server stamps: the tile's data-ts is that stamp
    await client.publishAsync('devices/fast/telemetry', JSON.stringify({ temperature: 23.5 }))
    await expect.poll(() => tile.textContent(), { timeout: 5000 }).toBe('23.5')
    const state = (await (await fetch(`${stack.httpUrl}/api/devices/fast`)).json()) as DeviceState
    expect(Number(await tile.getAttribute('data-ts'))).toBe(state.metrics['temperature']!.ts)
  })
})

describe('screenshots', () => {
  it('of a device page with five metrics on a 1-hour range only partly filled, light and dark, wide and narrow', async () => {
    const client = await stack.mqtt({ clientId: 'station' })
    await client.publishAsync('devices/station/telemetry', JSON.stringify({ relay: false }))
    const first = await station(client)
    const renamed = await fetch(`${stack.httpUrl}/api/devices/station`, { method: 'PATCH', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'Weather station' }) })
    expect(renamed.status).toBe(200)
    for (const colorScheme of ['light', 'dark'] as const) {
      for (const view of [{ width: 1280, height: 800 }, { width: 390, height: 844 }]) {
        const suffix = `${colorScheme}-${view.width}x${view.height}`
        const page = await open('#/devices/station', { ...view, colorScheme })
        await waitForPoints(page, 'pressure', 100)
        await chooseRange(page, '1 h')
        await untilPartlyFilled(page, first)
        await page.screenshot({ path: `${screenshotDir}device-metrics-1h-partial-${suffix}.png`, fullPage: view.width < 640 })
      }
    }
  }, 90_000)
})
