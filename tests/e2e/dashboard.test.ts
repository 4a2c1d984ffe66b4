import { execFileSync } from 'node:child_process'
import { existsSync, mkdirSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import type { Browser, BrowserContext, Page } from 'playwright-core'
import { launchChromium } from '../../bench/browser.ts'
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { createFleet, type Fleet } from '../../simulators/fleet.ts'
import { mqttMessages, startStack, type Stack } from '../helpers/stack.ts'
import { waitForPoints, type View } from './page.ts'

const repoRoot = fileURLToPath(new URL('../..', import.meta.url))
const dashboardDir = fileURLToPath(new URL('../../dist/dashboard', import.meta.url))
const screenshotDir = fileURLToPath(new URL('../screenshots/', import.meta.url))

/** Device text that would run script if it were ever rendered as HTML. */
const EVIL = '<img src=x onerror=alert(1)>'

let browser: Browser
let stack: Stack
let fleet: Fleet | null = null
/** Run after each test, before the stack closes. */
const cleanups: (() => void)[] = []
let context: BrowserContext | null = null
/** Uncaught errors and dialogs (alert, confirm) of the page under test: both must stay empty. */
let pageErrors: string[] = []
let dialogs: string[] = []
/** What the Content-Security-Policy blocked: the dashboard must pass its own policy. */
let cspViolations: string[] = []

beforeAll(async () => {
  // `npm test` builds first; a lone `vitest run tests/e2e` builds here once.
  if (!existsSync(`${dashboardDir}/index.html`)) {
    execFileSync('npm', ['run', 'build'], { cwd: repoRoot, stdio: 'inherit' })
  }
  mkdirSync(screenshotDir, { recursive: true })
  browser = await launchChromium()
}, 120_000)

afterAll(async () => {
  await browser?.close()
})

beforeEach(async () => {
  stack = await startStack({ dashboardDir })
  pageErrors = []
  dialogs = []
  cspViolations = []
})

afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) cleanup()
  await context?.close()
  context = null
  await fleet?.close()
  fleet = null
  await stack.close()
  expect(pageErrors, 'uncaught errors in the page').toEqual([])
  expect(cspViolations, 'what the Content-Security-Policy blocked').toEqual([])
})

/** A new browser context (fresh storage) on the dashboard, at `hash`. */
async function open(hash = '#/', view: View = {}): Promise<Page> {
  await context?.close()
  context = await browser.newContext({
    viewport: { width: view.width ?? 1280, height: view.height ?? 800 },
    colorScheme: view.colorScheme ?? 'light',
    locale: 'en-US',
  })
  await context.exposeFunction('reportCspViolation', (what: string) => cspViolations.push(what))
  await context.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      const report = (window as unknown as { reportCspViolation: (what: string) => void }).reportCspViolation
      report(`${e.violatedDirective} blocked ${e.blockedURI || 'inline'} at ${e.sourceFile}:${e.lineNumber}`)
    })
  })
  const page = await context.newPage()
  page.on('pageerror', (err) => pageErrors.push(err.message))
  page.on('dialog', (dialog) => {
    dialogs.push(`${dialog.type()}: ${dialog.message()}`)
    void dialog.dismiss()
  })
  await page.goto(`${stack.httpUrl}/${hash}`)
  await page.getByText('Live', { exact: true }).waitFor({ timeout: 10_000 })
  return page
}

/** The last (up to 50) values of each line of the first chart on the page (`data-points`, written at each redraw). */
async function chartPoints(page: Page): Promise<Record<string, number[]>> {
  const json = await page.locator('canvas[data-testid=time-chart]').first().getAttribute('data-points')
  return JSON.parse(json ?? '{}') as Record<string, number[]>
}

const card = (page: Page, id: string) => page.locator(`[data-testid=device-card][data-device=${JSON.stringify(id)}]`)

describe('devices', () => {
  it('shows a device published over MQTT as a card with its values', async () => {
    const device = await stack.mqtt({ clientId: 'e2e-1' })
    await device.publishAsync('devices/e2e-1/telemetry', JSON.stringify({ temperature: 21.5, humidity: 40 }))

    const page = await open('#/')
    const found = card(page, 'e2e-1')
    await found.waitFor({ timeout: 10_000 })
    await expect.poll(() => found.locator('[data-metric=temperature]').textContent(), { timeout: 5000 }).toContain('21.5')
    expect(await found.locator('[data-metric=humidity]').textContent()).toContain('40')
    expect(await found.textContent()).toContain('Online')

    // a second device arrives live, and the search box narrows the grid to it
    await device.publishAsync('devices/kitchen/telemetry', JSON.stringify({ temperature: 19 }))
    await card(page, 'kitchen').waitFor({ timeout: 5000 })
    await page.getByLabel('Search devices').fill('kitch')
    await card(page, 'e2e-1').waitFor({ state: 'detached', timeout: 5000 })
    expect(await page.locator('[data-testid=device-card]').count()).toBe(1)
  })

  it('teaches how to connect when there are no devices', async () => {
    const page = await open('#/')
    const empty = page.getByTestId('empty-devices')
    await empty.waitFor({ timeout: 5000 })
    // the server's real MQTT port (the stack's is not 1883) arrives from /api/health
    const broker = `mqtt://127.0.0.1:${stack.mqttPort}`
    await empty.getByText(broker, { exact: true }).waitFor({ timeout: 5000 })
    const text = await empty.textContent()
    expect(text).toContain(`mosquitto_pub -h 127.0.0.1 -p ${stack.mqttPort} -t devices/demo/telemetry -m '{"temperature":21.5}'`)
    expect(text).toContain(`npx pulseboard simulate --devices 5 --url ${broker}`)
  })

  it('charts the published points on the device page, and again after a reload', async () => {
    const device = await stack.mqtt({ clientId: 'e2e-1' })
    const values = [21.5, 22.25, 23, 22.75]
    for (const temperature of values) {
      await device.publishAsync('devices/e2e-1/telemetry', JSON.stringify({ temperature, humidity: 40 }))
    }

    const page = await open('#/devices/e2e-1')
    await page.getByTestId('device-name').filter({ hasText: 'e2e-1' }).waitFor({ timeout: 10_000 })
    await waitForPoints(page, 'temperature', values.length)
    expect((await chartPoints(page))['temperature']).toEqual(values)
    expect((await chartPoints(page))['humidity']).toEqual([40, 40, 40, 40])

    // live: a new reading joins the chart without a reload
    await device.publishAsync('devices/e2e-1/telemetry', JSON.stringify({ temperature: 24, humidity: 41 }))
    await waitForPoints(page, 'temperature', values.length + 1)
    expect((await chartPoints(page))['temperature']).toEqual([...values, 24])

    // the stored history brings the same points back after a reload
    await page.reload()
    await waitForPoints(page, 'temperature', values.length + 1)
    expect((await chartPoints(page))['temperature']).toEqual([...values, 24])
  })

  it('sends commands from the device page to an MQTT subscriber', async () => {
    const device = await stack.mqtt({ clientId: 'e2e-1' })
    await device.subscribeAsync('devices/e2e-1/commands')
    const received = mqttMessages(device)
    await device.publishAsync('devices/e2e-1/telemetry', JSON.stringify({ temperature: 21.5, relay: false }))

    const page = await open('#/devices/e2e-1')
    // a binary metric the firmware takes commands for is a switch
    const relay = page.locator('[data-testid=command-switch][data-command=relay]')
    await relay.waitFor({ timeout: 10_000 })
    expect(await relay.getAttribute('aria-checked')).toBe('false')
    await relay.click()
    await received.until('the relay command on devices/e2e-1/commands', (all) =>
      all.some((m) => m.payload === JSON.stringify({ name: 'relay', value: true })),
    )

    // a free command with a JSON value; the ack names where it went
    const form = page.getByTestId('command-form')
    await form.getByLabel('Command').fill('config')
    await form.getByRole('radio', { name: 'JSON' }).check()
    await form.getByLabel('Value', { exact: true }).fill('{"interval": 5}')
    await form.getByRole('button', { name: 'Send' }).click()
    await received.until('the config command', (all) =>
      all.some((m) => m.topic === 'devices/e2e-1/commands' && m.payload === JSON.stringify({ name: 'config', value: { interval: 5 } })),
    )
    const result = page.getByTestId('command-result')
    await result.getByText('devices/e2e-1/commands').waitFor({ timeout: 5000 })

    // an error from the server is shown, not swallowed
    await form.getByRole('radio', { name: 'Text' }).check()
    await form.getByLabel('Command').fill('x'.repeat(300))
    await form.getByLabel('Value', { exact: true }).fill('x')
    await form.getByRole('button', { name: 'Send' }).click()
    await expect.poll(() => result.textContent(), { timeout: 5000 }).toMatch(/E_[A-Z_]+/)
  })
})

describe('messages', () => {
  it('filters the live log with MQTT wildcards', async () => {
    const client = await stack.mqtt()
    const page = await open('#/messages')
    for (const topic of ['site/a/temp', 'site/b/temp', 'site/a/hum', 'other/a/temp']) {
      await client.publishAsync(topic, `value of ${topic}`)
    }
    const rows = page.getByTestId('message-row')
    const topics = () => rows.evaluateAll((els) => els.map((el) => el.getAttribute('data-topic')).sort())
    await expect.poll(topics, { timeout: 5000 }).toEqual(['other/a/temp', 'site/a/hum', 'site/a/temp', 'site/b/temp'])

    const filter = page.getByTestId('message-filter')
    await filter.fill('site/+/temp')
    await expect.poll(topics, { timeout: 5000 }).toEqual(['site/a/temp', 'site/b/temp'])

    // live messages go through the same filter
    await client.publishAsync('site/c/temp', '1')
    await client.publishAsync('site/c/hum', '2')
    await expect.poll(topics, { timeout: 5000 }).toEqual(['site/a/temp', 'site/b/temp', 'site/c/temp'])

    await filter.fill('site/#')
    await expect.poll(topics, { timeout: 5000 }).toEqual(['site/a/hum', 'site/a/temp', 'site/b/temp', 'site/c/hum', 'site/c/temp'])

    // an invalid filter says why
    await filter.fill('site/#/x')
    await page.getByText('Not a valid MQTT filter').waitFor({ timeout: 5000 })
    expect(await filter.getAttribute('aria-invalid')).toBe('true')

    // pause holds the view; resume shows what arrived meanwhile
    await filter.fill('')
    await page.getByTestId('pause-log').click()
    await client.publishAsync('late/one', 'x')
    await page.getByTestId('pause-log').filter({ hasText: '+1' }).waitFor({ timeout: 5000 })
    expect(await topics()).not.toContain('late/one')
    await page.getByTestId('pause-log').click()
    await expect.poll(topics, { timeout: 5000 }).toContain('late/one')
  })

  it('publishes from the publish box, and sends chat text when the topic is empty', async () => {
    const listener = await stack.mqtt()
    await listener.subscribeAsync(['ui/#', 'messages'])
    const received = mqttMessages(listener)
    const page = await open('#/messages')

    await page.getByTestId('publish-topic').fill('ui/lamp')
    await page.getByTestId('publish-payload').fill('{"on":true}')
    await page.getByRole('checkbox', { name: 'Retain' }).check()
    await page.getByTestId('publish-send').click()
    await received.until('ui/lamp from the publish box', (all) => all.some((m) => m.topic === 'ui/lamp' && m.payload === '{"on":true}'))
    // retained: a client that subscribes later still gets it, flagged retained [MQTT-3.3.1-8]
    const late = await stack.mqtt()
    const retained = mqttMessages(late)
    await late.subscribeAsync('ui/lamp')
    await retained.until('the retained ui/lamp', (all) => all.some((m) => m.payload === '{"on":true}' && m.retain))
    await page.getByText('Published to').waitFor({ timeout: 5000 })

    await page.getByTestId('publish-topic').fill('')
    await page.getByTestId('publish-payload').fill('hello from the dashboard')
    await page.getByTestId('publish-send').click()
    await received.until('chat text on the chat topic', (all) =>
      all.some((m) => m.topic === 'messages' && m.payload === 'hello from the dashboard'),
    )
  })
})

describe('broker', () => {
  it('says history is in memory only when the server has no store', async () => {
    const page = await open('#/broker')
    const memory = page.getByTestId('store-memory')
    await memory.waitFor({ timeout: 10_000 })
    expect(await memory.textContent()).toContain('History is in memory only')
    expect(await page.getByTestId('store-db-bytes').count()).toBe(0)
  })
})

describe('connection', () => {
  it('shows a banner while the server restarts, and clears it once reconnected', async () => {
    const page = await open('#/')
    const banner = page.getByTestId('connection-banner')
    expect(await banner.count()).toBe(0)

    const port = stack.port
    await stack.close()
    await banner.waitFor({ state: 'visible', timeout: 10_000 })
    expect(await banner.getAttribute('data-status')).toMatch(/reconnecting|offline/)

    // the same port, so the page finds it again without a reload
    stack = await startStack({ dashboardDir, port })
    await banner.waitFor({ state: 'detached', timeout: 20_000 })

    // and it is live again: a new device shows up
    const device = await stack.mqtt()
    await device.publishAsync('devices/after-restart/telemetry', JSON.stringify({ temperature: 20 }))
    await card(page, 'after-restart').waitFor({ timeout: 10_000 })
  }, 45_000)
})

describe('device text', () => {
  it('is shown as text, never run as HTML', async () => {
    const device = await stack.mqtt()
    await device.publishAsync(`devices/${EVIL}/telemetry`, JSON.stringify({ temperature: 1 }))

    const page = await open('#/')
    // the log starts empty at page load: this one arrives live
    await device.publishAsync(`notes/${EVIL}`, EVIL)
    const evilCard = card(page, EVIL)
    await evilCard.waitFor({ timeout: 10_000 })
    expect(await evilCard.locator('.name').textContent()).toBe(EVIL)

    await page.goto(`${stack.httpUrl}/#/devices/${encodeURIComponent(EVIL)}`)
    await page.getByTestId('device-name').waitFor({ timeout: 5000 })
    expect(await page.getByTestId('device-name').textContent()).toBe(EVIL)
    expect(await page.getByText(`devices/${EVIL}/telemetry`).count()).toBeGreaterThan(0)

    await page.goto(`${stack.httpUrl}/#/messages`)
    const row = page.locator(`[data-testid=message-row][data-topic=${JSON.stringify(`notes/${EVIL}`)}]`)
    await row.waitFor({ timeout: 5000 })
    expect(await row.locator('.topic').textContent()).toBe(`notes/${EVIL}`)
    expect((await row.locator('.payload').textContent())?.trim()).toBe(EVIL)

    await page.goto(`${stack.httpUrl}/#/topics`)
    await page.getByRole('treeitem', { name: /notes/ }).click()
    await page.getByRole('treeitem', { name: EVIL }).waitFor({ timeout: 5000 })

    expect(await page.locator('img').count()).toBe(0)
    expect(dialogs).toEqual([])
  })
})

/**
 * A device with five minutes of readings behind it (sent with their own timestamps), then one
 * reading every half second: a chart with some history for the screenshots. Smooth, repeatable curves.
 */
async function greenhouse(): Promise<void> {
  const client = await stack.mqtt({ clientId: 'greenhouse' })
  const round = (n: number, digits: number) => Number(n.toFixed(digits))
  const reading = (t: number) =>
    JSON.stringify({
      ts: t,
      temperature: round(22 + 2.5 * Math.sin(t / 45_000) + 0.25 * Math.sin(t / 6_000), 2),
      humidity: round(56 - 5 * Math.sin(t / 45_000 + 0.9) + 0.8 * Math.sin(t / 9_000), 1),
      units: { temperature: '°C', humidity: '%' },
    })
  const now = Date.now()
  for (let t = now - 5 * 60_000; t < now; t += 2000) await client.publishAsync('devices/greenhouse/telemetry', reading(t))
  const timer = setInterval(() => void client.publishAsync('devices/greenhouse/telemetry', reading(Date.now())), 500)
  cleanups.push(() => clearInterval(timer))
}

describe('screenshots', () => {
  it('of the overview, a device page and the messages, light and dark, wide and narrow', async () => {
    await greenhouse()
    fleet = createFleet({ url: stack.mqttUrl, devices: 7, intervalMs: 250, format: 'mixed' })
    await fleet.start()
    const views = [
      { width: 1280, height: 800, name: 'desktop' },
      { width: 390, height: 844, name: 'mobile' },
    ]
    for (const colorScheme of ['light', 'dark'] as const) {
      for (const view of views) {
        const page = await open('#/', { ...view, colorScheme })
        const suffix = `${colorScheme}-${view.width}x${view.height}`
        await page.locator('[data-testid=device-card]').nth(7).waitFor({ timeout: 10_000 })
        await page.screenshot({ path: `${screenshotDir}overview-${suffix}.png` })

        await page.goto(`${stack.httpUrl}/#/devices/greenhouse`)
        await waitForPoints(page, 'temperature', 150)
        await page.screenshot({ path: `${screenshotDir}device-${suffix}.png` })

        await page.goto(`${stack.httpUrl}/#/messages`)
        await page.getByTestId('message-row').nth(6).waitFor({ timeout: 10_000 })
        await page.screenshot({ path: `${screenshotDir}messages-${suffix}.png` })
      }
    }
  }, 90_000)
})
