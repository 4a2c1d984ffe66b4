import { execFileSync } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import type { MqttClient } from 'mqtt'
import type { Browser, BrowserContext, Page } from 'playwright-core'
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { launchChromium } from '../../bench/browser.ts'
import type { DeviceHistory, DeviceState } from '../../protocol/index.ts'
import { createFleet, type Fleet } from '../../simulators/fleet.ts'
import { startStack, within, type Stack } from '../helpers/stack.ts'
import { chartState, goto, openDashboard, waitForPoints, waitForSettled, waitForValues, type PageTrouble, type View } from './page.ts'

/**
 * The dashboard with the SQLite history store on: charts that survive a reload, buckets with
 * their band, gaps filled after a reconnect, renaming and forgetting, older messages, CSV export,
 * asleep devices; and screenshots of it.
 */

const repoRoot = fileURLToPath(new URL('../..', import.meta.url))
const dashboardDir = fileURLToPath(new URL('../../dist/dashboard', import.meta.url))
const screenshotDir = fileURLToPath(new URL('../screenshots/', import.meta.url))

let browser: Browser
let stack: Stack
let dataDir: string
let context: BrowserContext | null = null
let fleet: Fleet | null = null
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
  dataDir = mkdtempSync(path.join(tmpdir(), 'pulseboard-e2e-'))
  stack = await startStack({ dashboardDir, dataDir })
  trouble = { errors: [], csp: [] }
})

afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) cleanup()
  await context?.close()
  context = null
  await fleet?.close()
  fleet = null
  await stack.close()
  rmSync(dataDir, { recursive: true, force: true })
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

function telemetry(client: MqttClient, device: string, body: Record<string, unknown>): Promise<unknown> {
  return client.publishAsync(`devices/${device}/telemetry`, JSON.stringify(body))
}

async function api<T>(url: string, init?: RequestInit): Promise<{ status: number; body: T }> {
  const res = await fetch(stack.httpUrl + url, init)
  const text = await res.text()
  return { status: res.status, body: (text === '' ? null : JSON.parse(text)) as T }
}

/** Values of one metric the store has written (it writes every 200 ms). */
async function stored(device: string, metric: string): Promise<number[]> {
  const { body } = await api<DeviceHistory>(`/api/devices/${encodeURIComponent(device)}/history?metrics=${metric}`)
  const kept = body.metrics[metric]
  return kept && 'points' in kept ? kept.points.map(([, v]) => v) : []
}

/** Waits until the store has written `n` values of the metric. */
async function untilStored(device: string, metric: string, n: number): Promise<void> {
  await expect.poll(async () => (await stored(device, metric)).length, { timeout: 5000, message: `${n} stored values of ${device}/${metric}` }).toBeGreaterThanOrEqual(n)
}

/** Every history answer a page receives, and a way to wait for more. */
function historyAnswers(page: Page, device: string): { count: () => number; until: (n: number) => Promise<void> } {
  let count = 0
  const waiters = new Set<() => void>()
  page.on('response', (res) => {
    if (!res.url().includes(`/api/devices/${encodeURIComponent(device)}/history`)) return
    count++
    for (const wake of waiters) wake()
  })
  return {
    count: () => count,
    until: (n) =>
      within(10_000, `${n} history answers for ${device}`, new Promise<void>((resolve) => {
        const check = () => {
          if (count < n) return
          waiters.delete(check)
          resolve()
        }
        waiters.add(check)
        check()
      })),
  }
}

describe('charts with stored history', () => {
  it('shows earlier points after a reload, from the history API, and continues live with no seam', async () => {
    const device = await stack.mqtt({ clientId: 'e2e-1' })
    const t0 = Date.now() - 60_000
    const values = [21.5, 22.25, 23, 22.75, 22.5]
    for (const [i, temperature] of values.entries()) await telemetry(device, 'e2e-1', { ts: t0 + i * 10_000, temperature })
    await untilStored('e2e-1', 'temperature', values.length)

    const page = await open('#/devices/e2e-1')
    await waitForValues(page, 'temperature', values)

    // live: the next reading joins the stored ones, once
    await telemetry(device, 'e2e-1', { temperature: 24 })
    await waitForValues(page, 'temperature', [...values, 24])
    await untilStored('e2e-1', 'temperature', values.length + 1)

    // a reload starts with nothing live: the points come from the history API
    await waitForSettled(page)
    const answers = historyAnswers(page, 'e2e-1')
    const answer = page.waitForResponse((res) => res.url().includes('/api/devices/e2e-1/history?'))
    await page.reload()
    const history = (await (await answer).json()) as DeviceHistory
    const kept = history.metrics['temperature']
    expect(kept && 'points' in kept && kept.points.map(([, v]) => v)).toEqual([...values, 24])
    await page.getByText('Live', { exact: true }).waitFor({ timeout: 10_000 })
    await waitForValues(page, 'temperature', [...values, 24])
    // asked again once the socket has settled (the store then holds what came just before it connected), and still each point once
    await answers.until(2)
    await waitForSettled(page)
    await telemetry(device, 'e2e-1', { temperature: 24.5 })
    await waitForValues(page, 'temperature', [...values, 24, 24.5])

    // the 5-minute range has a minute of data: the x axis starts just before it, and marks where it begins
    const { x } = await chartState(page)
    expect(x[0]).toBeLessThanOrEqual(t0)
    expect(x[0]).toBeGreaterThan(t0 - 10_000)
    expect(x[1]).toBeGreaterThan(Date.now() - 5000)
    expect(Number(await page.getByTestId('time-chart').getAttribute('data-start'))).toBe(t0)

    // and a restarted server has them too: they are on disk
    const port = stack.port
    await stack.close()
    stack = await startStack({ dashboardDir, dataDir, port })
    await goto(page, `${stack.httpUrl}/#/devices/e2e-1`)
    await page.reload()
    await page.getByText('Live', { exact: true }).waitFor({ timeout: 10_000 })
    await waitForValues(page, 'temperature', [...values, 24, 24.5])
  }, 45_000)

  it('loads the range chosen, and draws many points as buckets: a mean line, a min–max band that keeps the peak', async () => {
    const device = await stack.mqtt({ clientId: 'dense' })
    const now = Date.now()
    // 3,000 readings over the last five minutes, one of them a spike
    const n = 3000
    for (let i = 0; i < n; i++) {
      const ts = now - 300_000 + i * 100
      await telemetry(device, 'dense', { ts, temperature: i === 1500 ? 99 : 20 + Math.sin(i / 200) })
    }
    await untilStored('dense', 'temperature', 1)

    const page = await open('#/devices/dense')
    const note = page.getByTestId('bucket-note')
    await note.waitFor({ timeout: 10_000 })
    expect(await note.textContent()).toMatch(/^[\d.,]+-(ms|s) buckets$/)
    await waitForPoints(page, 'temperature', 100)
    let chart = await chartState(page)
    // about one bucket per pixel of a 1280-px page's chart, not 3,000 points
    expect(chart.counts['temperature']).toBeLessThanOrEqual(1300)
    expect(chart.bands['temperature']?.[1]).toBe(99)

    // live readings go on in buckets of the same width: one alone in its bucket is its own mean
    await telemetry(device, 'dense', { temperature: 30 })
    await expect.poll(async () => (await chartState(page)).points['temperature']?.at(-1), { timeout: 5000 }).toBe(30)

    // a longer range is loaded again; it has five minutes of data, so the x axis starts there until it fills
    const answers = historyAnswers(page, 'dense')
    await page.getByRole('radio', { name: '1 h' }).check({ force: true })
    await answers.until(1)
    await expect.poll(async () => Number(await page.getByTestId('time-chart').getAttribute('data-start')), { timeout: 5000 }).toBeGreaterThan(0)
    const start = Number(await page.getByTestId('time-chart').getAttribute('data-start'))
    // the first bucket’s middle, a few seconds into the data at most
    expect(start - (now - 300_000)).toBeLessThan(5000)
    const [xMin, xMax] = (await chartState(page)).x
    expect(xMin).toBeLessThanOrEqual(start)
    expect(Math.round((xMax - xMin) / 60_000)).toBeLessThan(7)
    chart = await chartState(page)
    expect(chart.bands['temperature']?.[1]).toBe(99)

    // a custom range with both ends, in the past: from the store only
    await page.getByRole('radio', { name: 'Custom' }).check({ force: true })
    const local = (ts: number) => new Date(ts - new Date(ts).getTimezoneOffset() * 60_000).toISOString().slice(0, 16)
    await page.getByTestId('custom-from').fill(local(now - 10 * 60_000))
    await page.getByTestId('custom-to').fill(local(now - 2 * 60_000))
    await page.getByTestId('custom-range').getByRole('button', { name: 'Show' }).click()
    await expect.poll(async () => {
      const [min, max] = (await chartState(page)).x
      return Math.round((max - min) / 60_000)
    }, { timeout: 5000 }).toBe(9)
  }, 45_000)

  it('fills what a reconnect missed: replayed when the server recovers the session, fetched when it cannot', async () => {
    const device = await stack.mqtt({ clientId: 'e2e-gap' })
    // each reading its own millisecond: the SQLite store keeps one reading per metric and millisecond
    let ts = Date.now()
    const reading = (temperature: number) => telemetry(device, 'e2e-gap', { ts: ts++, temperature })
    const page = await open('#/devices/e2e-gap')
    await reading(1)
    await page.getByTestId('device-name').filter({ hasText: 'e2e-gap' }).waitFor({ timeout: 10_000 })
    await waitForValues(page, 'temperature', [1])
    await waitForSettled(page)
    const answers = historyAnswers(page, 'e2e-gap')

    // The server disconnects the socket from /live on purpose: a session it does not keep, so no
    // recovery; the page asks the history API for what it missed. (First: socket.io keeps a
    // session it restored for the rest of its window, so after one recovery the next reconnect
    // would be recovered from it whatever the reason.)
    stack.app.http.io.of('/live').disconnectSockets()
    await reading(2)
    await reading(3)
    await answers.until(1)
    await waitForValues(page, 'temperature', [1, 2, 3])
    await waitForSettled(page)

    // the transport drops: socket.io recovers the session and replays what was sent meanwhile
    const asked = answers.count()
    for (const socket of stack.app.http.io.of('/live').sockets.values()) socket.conn.close()
    await reading(4)
    await reading(5)
    await waitForValues(page, 'temperature', [1, 2, 3, 4, 5])
    await reading(6)
    await waitForValues(page, 'temperature', [1, 2, 3, 4, 5, 6])
    // recovered: nothing was asked for
    expect(answers.count()).toBe(asked)
  }, 30_000)

  it('downloads the chart’s range and metrics as CSV from the export link', async () => {
    const device = await stack.mqtt({ clientId: 'e2e-csv' })
    const t0 = Date.now() - 30_000
    for (const [i, temperature] of [20.5, 21, 21.5].entries()) await telemetry(device, 'e2e-csv', { ts: t0 + i * 1000, temperature, humidity: 40 + i })
    await untilStored('e2e-csv', 'humidity', 3)

    const page = await open('#/devices/e2e-csv')
    await waitForPoints(page, 'temperature', 3)
    // chart temperature only
    await page.locator('.tile[data-metric=humidity]').click()
    const link = page.getByTestId('export-csv')
    expect(await link.getAttribute('download')).not.toBeNull()
    const href = new URL((await link.getAttribute('href'))!, stack.httpUrl)
    expect(href.pathname).toBe('/api/devices/e2e-csv/export.csv')
    expect(href.searchParams.get('metrics')).toBe('temperature')
    expect(Number(href.searchParams.get('from'))).toBeGreaterThan(Date.now() - 5 * 60_000 - 5000)

    const [download] = await Promise.all([page.waitForEvent('download', { timeout: 10_000 }), link.click()])
    expect(download.suggestedFilename()).toBe('e2e-csv.csv')
    const csv = readFileSync((await download.path())!, 'utf8')
    const lines = csv.trim().split(/\r\n/)
    expect(lines[0]).toBe('ts,metric,value')
    expect(lines.slice(1)).toEqual([`${t0},temperature,20.5`, `${t0 + 1000},temperature,21`, `${t0 + 2000},temperature,21.5`])
  }, 30_000)
})

describe('devices', () => {
  it('renames a device inline, and the name persists through the API and a reload', async () => {
    const device = await stack.mqtt({ clientId: 'e2e-1' })
    await telemetry(device, 'e2e-1', { temperature: 21 })
    const page = await open('#/devices/e2e-1')
    await page.getByTestId('device-name').filter({ hasText: 'e2e-1' }).waitFor({ timeout: 10_000 })

    await page.getByTestId('rename').click()
    const input = page.getByTestId('rename-input')
    await input.fill('Kitchen')
    await input.press('Enter')
    await page.getByTestId('device-name').filter({ hasText: 'Kitchen' }).waitFor({ timeout: 5000 })
    const answer = await api<DeviceState>('/api/devices/e2e-1')
    expect(answer.body.name).toBe('Kitchen')
    expect(answer.body.renamed).toBe(true)

    // a new reading does not undo it; a reload shows it
    await telemetry(device, 'e2e-1', { temperature: 22 })
    await page.reload()
    await page.getByTestId('device-name').filter({ hasText: 'Kitchen' }).waitFor({ timeout: 10_000 })
    await page.goto(`${stack.httpUrl}/#/`)
    await page.locator('[data-testid=device-card][data-device=e2e-1] .name').filter({ hasText: 'Kitchen' }).waitFor({ timeout: 5000 })

    // Escape cancels; "Reset name" goes back to what the firmware announced (here: the id)
    await page.goto(`${stack.httpUrl}/#/devices/e2e-1`)
    await page.getByTestId('rename').click()
    await page.getByTestId('rename-input').fill('Not this')
    await page.getByTestId('rename-input').press('Escape')
    await page.getByTestId('device-name').filter({ hasText: 'Kitchen' }).waitFor({ timeout: 5000 })
    await page.getByTestId('rename').click()
    await page.getByTestId('rename-reset').click()
    await page.getByTestId('device-name').filter({ hasText: 'e2e-1' }).waitFor({ timeout: 5000 })
    const reset = await api<DeviceState>('/api/devices/e2e-1')
    expect(reset.body.name).toBe('e2e-1')
    expect(reset.body.renamed).toBeUndefined()
  }, 30_000)

  it('forgets a device after a confirm; other pages drop it on the live forget event', async () => {
    const device = await stack.mqtt({ clientId: 'e2e-1' })
    await telemetry(device, 'e2e-1', { temperature: 21 })
    await telemetry(device, 'other', { temperature: 5 })
    const page = await open('#/devices/e2e-1')
    const overview = await context!.newPage()
    await goto(overview, `${stack.httpUrl}/#/`)
    const card = overview.locator('[data-testid=device-card][data-device=e2e-1]')
    await card.waitFor({ timeout: 10_000 })

    await page.getByTestId('forget').click()
    const dialog = page.getByTestId('forget-dialog')
    await dialog.waitFor({ state: 'visible', timeout: 5000 })
    expect(await dialog.textContent()).toContain('Forget “e2e-1”?')
    // cancel keeps it
    await dialog.getByRole('button', { name: 'Cancel' }).click()
    await dialog.waitFor({ state: 'hidden', timeout: 5000 })
    expect((await api('/api/devices/e2e-1')).status).toBe(200)

    await page.getByTestId('forget').click()
    await page.getByTestId('forget-confirm').click()
    // back on the overview, without it
    await page.locator('[data-testid=device-card][data-device=other]').waitFor({ timeout: 5000 })
    expect(await page.locator('[data-testid=device-card][data-device=e2e-1]').count()).toBe(0)
    expect((await api('/api/devices/e2e-1')).status).toBe(404)
    // the other page heard `forget`
    await card.waitFor({ state: 'detached', timeout: 5000 })
  }, 30_000)

  it('shows a device that reports on a schedule as asleep, with when its next report is due', async () => {
    const page = await open('#/')
    // a deep-sleep device: connect, report, disconnect; twice, 3 s apart
    for (const temperature of [18, 19]) {
      const client = await stack.mqtt({ clientId: 'porch' })
      await telemetry(client, 'porch', { temperature })
      await client.endAsync()
      if (temperature === 18) await new Promise((resolve) => setTimeout(resolve, 3000)) // its schedule, not a wait for something
    }
    // asleep until it misses about three reports: 9 s here
    const card = page.locator('[data-testid=device-card][data-device=porch]')
    await card.getByTestId('card-status').filter({ hasText: 'Asleep' }).waitFor({ timeout: 5000 })
    expect(await card.getByTestId('next-report').textContent()).toMatch(/next report (in \d+s|due)/)
    await page.getByTestId('asleep-count').filter({ hasText: '1 asleep' }).waitFor({ timeout: 5000 })

    await card.click()
    await page.getByTestId('device-status').filter({ hasText: 'Asleep' }).waitFor({ timeout: 5000 })
    expect(await page.getByTestId('device-status').textContent()).toMatch(/next report (in \d+s|due)/)
  }, 30_000)
})

describe('messages', () => {
  it('loads older pages from the server’s log below the live ones, each message once', async () => {
    const client = await stack.mqtt()
    for (let i = 0; i < 250; i++) await client.publishAsync(`old/${i}`, `m${i}`)
    await expect.poll(async () => (await api<unknown[]>('/api/messages?limit=1000')).body.length, { timeout: 5000 }).toBe(250)

    const page = await open('#/messages')
    const count = () => page.getByTestId('message-count').evaluate((el) => el.textContent?.replace(/\s+/g, ' ').trim())
    await client.publishAsync('live/a', 'a')
    await client.publishAsync('live/b', 'b')
    await expect.poll(count, { timeout: 5000 }).toBe('2 messages')
    // the live ones are in the server's log too, and newer than every older page
    await expect.poll(async () => (await api<unknown[]>('/api/messages?limit=1000')).body.length, { timeout: 5000 }).toBe(252)

    const older = page.getByTestId('load-older')
    await older.click()
    await page.getByTestId('older-count').waitFor({ timeout: 5000 })
    const topics = () => page.getByTestId('message-row').evaluateAll((els) => els.slice(0, 4).map((el) => el.getAttribute('data-topic')))
    expect(await topics()).toEqual(['live/b', 'live/a', 'old/249', 'old/248'])

    await older.click()
    await expect.poll(count, { timeout: 5000 }).toBe('252 messages')
    await page.getByTestId('older-end').waitFor({ timeout: 5000 })

    // the oldest is at the end of the list
    const list = page.getByTestId('message-log').locator('[role=region]')
    await list.evaluate((el) => (el.scrollTop = el.scrollHeight))
    await page.locator('[data-testid=message-row][data-topic="old/0"]').waitFor({ timeout: 5000 })

    // a filter asks the server for its own older pages
    await page.getByTestId('message-filter').fill('old/+')
    await expect.poll(count, { timeout: 5000 }).toBe('0 of 2 messages')
    await older.click()
    await page.getByTestId('older-count').filter({ hasText: '200 older' }).waitFor({ timeout: 5000 })
    expect(await topics()).toEqual(['old/249', 'old/248', 'old/247', 'old/246'])
  }, 30_000)
})

/**
 * A greenhouse that reports every 5 s, with 26 hours of readings behind it: a daily cycle, slower
 * drifts, a little noise and a few short spikes (a door opened), so that long ranges come as
 * buckets whose band shows the spikes. Repeatable: the noise is a hash of the time.
 */
async function greenhouse(): Promise<void> {
  const client = await stack.mqtt({ clientId: 'greenhouse' })
  const round = (n: number, digits: number) => Number(n.toFixed(digits))
  const day = 86_400_000
  const noise = (t: number) => ((Math.sin(t * 12.9898e-3) * 43758.5453) % 1) - 0.5
  const reading = (t: number) => {
    const phase = (2 * Math.PI * t) / day
    const spike = Math.floor(t / 5000) % 1601 < 2 ? 3 : 0
    return JSON.stringify({
      ts: t,
      temperature: round(22 - 4 * Math.cos(phase) + 0.6 * Math.sin(t / 1_100_000) + 0.25 * Math.sin(t / 400_000) + 0.06 * noise(t) + spike, 2),
      humidity: round(58 + 9 * Math.cos(phase + 0.4) - 1.5 * Math.sin(t / 2_300_000) + 0.6 * Math.sin(t / 650_000) + 0.3 * noise(t + 1), 1),
      units: { temperature: '°C', humidity: '%' },
    })
  }
  const now = Date.now()
  for (let t = now - 26 * 3_600_000; t < now; t += 5000) await client.publishAsync('devices/greenhouse/telemetry', reading(t))
  const timer = setInterval(() => void client.publishAsync('devices/greenhouse/telemetry', reading(Date.now())), 5000)
  cleanups.push(() => clearInterval(timer))
}

/**
 * A porch sensor that reports every five minutes and sleeps between: two real reports make it a
 * sleeper, then it is restored as the server restores one after a restart, due in four minutes.
 */
async function porch(): Promise<void> {
  for (const temperature of [11.5, 11.25]) {
    const client = await stack.mqtt({ clientId: 'porch' })
    await telemetry(client, 'porch', { temperature, battery: 87 })
    await client.endAsync()
    await new Promise((resolve) => setTimeout(resolve, 400))
  }
  const { registry } = stack.app
  await expect.poll(() => registry.get('porch')?.asleep, { timeout: 5000 }).toBe(true)
  const snapshot = structuredClone(registry.snapshot('porch')!)
  snapshot.state.lastSeen = Date.now() - 60_000
  snapshot.state.nextReport = Date.now() + 4 * 60_000 + 20_000
  snapshot.presence.interval = 5 * 60_000
  registry.restore([{ id: 'porch', snapshot }])
  const renamed = await api('/api/devices/porch', { method: 'PATCH', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'Porch sensor' }) })
  expect(renamed.status).toBe(200)
}

describe('screenshots', () => {
  it('of the device page with history, the overview with an asleep device, and the broker page', async () => {
    await greenhouse()
    await porch()
    fleet = createFleet({ url: stack.mqttUrl, devices: 5, intervalMs: 500, format: 'mixed' })
    await fleet.start()
    await untilStored('greenhouse', 'temperature', 18_000)
    const views = [
      { width: 1280, height: 800, name: 'desktop' },
      { width: 390, height: 844, name: 'mobile' },
    ]
    for (const colorScheme of ['light', 'dark'] as const) {
      for (const view of views) {
        const suffix = `${colorScheme}-${view.width}x${view.height}`
        const page = await open('#/', { ...view, colorScheme })
        await page.locator('[data-testid=device-card][data-device=porch]').getByTestId('next-report').waitFor({ timeout: 10_000 })
        await page.locator('[data-testid=device-card]').nth(6).waitFor({ timeout: 10_000 })
        // the sparkline of every card on screen drawn (cards off screen wait until scrolled to)
        await page
          .waitForFunction(() =>
            [...document.querySelectorAll('[data-testid=device-card]')]
              .filter((card) => card.getBoundingClientRect().top < window.innerHeight)
              .every((card) => card.querySelector('svg.spark path') !== null),
          undefined, { timeout: 10_000 })
          .catch(async (err: Error) => {
            const drawn = await page.locator('[data-testid=device-card]').evaluateAll((cards) => cards.map((c) => `${c.getAttribute('data-device')}: ${c.querySelector('svg.spark path') ? 'drawn' : 'not drawn'}`))
            throw new Error(`sparklines of the cards on screen: ${drawn.join(', ')}: ${err.message}`)
          })
        await page.screenshot({ path: `${screenshotDir}overview-asleep-${suffix}.png` })

        await page.goto(`${stack.httpUrl}/#/devices/greenhouse`)
        await waitForPoints(page, 'temperature', 50)
        await page.screenshot({ path: `${screenshotDir}device-history-5m-${suffix}.png` })
        await page.getByRole('radio', { name: '24 h' }).check({ force: true })
        await expect.poll(async () => {
          const chart = await chartState(page)
          return chart.x[1] - chart.x[0] > 23 * 3_600_000 && chart.bands['temperature'] !== undefined && (chart.counts['temperature'] ?? 0) > 100
        }, { timeout: 10_000 }).toBe(true)
        await page.screenshot({ path: `${screenshotDir}device-history-24h-${suffix}.png` })
        await page.getByRole('radio', { name: 'Custom' }).check({ force: true })
        await page.getByTestId('custom-range').waitFor({ timeout: 5000 })
        await waitForPoints(page, 'temperature', 10)
        await page.screenshot({ path: `${screenshotDir}device-history-custom-${suffix}.png`, fullPage: view.name === 'mobile' })

        await page.goto(`${stack.httpUrl}/#/devices/porch`)
        await page.getByTestId('device-status').filter({ hasText: 'Asleep' }).waitFor({ timeout: 10_000 })
        await page.screenshot({ path: `${screenshotDir}device-asleep-${suffix}.png` })

        await page.goto(`${stack.httpUrl}/#/broker`)
        await page.getByTestId('store-db-bytes').waitFor({ timeout: 10_000 })
        await waitForPoints(page, 'in', 3)
        await page.screenshot({ path: `${screenshotDir}broker-store-${suffix}.png`, fullPage: true })

        await page.goto(`${stack.httpUrl}/#/messages`)
        await page.getByTestId('message-row').nth(3).waitFor({ timeout: 10_000 })
        await page.getByTestId('load-older').click()
        await page.getByTestId('older-count').waitFor({ timeout: 10_000 })
        const list = page.getByTestId('message-log').locator('[role=region]')
        await list.evaluate((el) => (el.scrollTop = el.scrollHeight))
        await page.screenshot({ path: `${screenshotDir}messages-older-${suffix}.png` })
      }
    }
  }, 120_000)
})
