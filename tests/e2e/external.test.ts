import { execFileSync } from 'node:child_process'
import { existsSync, mkdirSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import type { MqttClient } from 'mqtt'
import type { Browser, BrowserContext, Page } from 'playwright-core'
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { launchChromium } from '../../bench/browser.ts'
import { startMosquitto, type Mosquitto } from '../helpers/mosquitto.ts'
import { mqttMessages, startStack, type Stack } from '../helpers/stack.ts'
import { openDashboard, type PageTrouble, type View } from './page.ts'

/**
 * The dashboard on an external broker (`--broker`): Debian's mosquitto, one per test, spoken to
 * over MQTT 5. Its properties on the Messages page, the broker's outage shown and cleared, where
 * devices connect, commands answered by an MQTT 5 device; and screenshots of it.
 */

const repoRoot = fileURLToPath(new URL('../..', import.meta.url))
const dashboardDir = fileURLToPath(new URL('../../dist/dashboard', import.meta.url))
const screenshotDir = fileURLToPath(new URL('../screenshots/', import.meta.url))

let browser: Browser
let mosq: Mosquitto
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
  mosq = await startMosquitto()
  stack = await startStack({ dashboardDir, externalBroker: { url: mosq.url } })
  trouble = { errors: [], csp: [] }
})

afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) cleanup()
  await context?.close()
  context = null
  await stack.close()
  await mosq.close()
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

/** An MQTT 5 client of the external broker; closed with the stack. */
const mqtt5 = (clientId?: string) => stack.mqtt({ protocolVersion: 5, ...(clientId !== undefined && { clientId }) })

const row = (page: Page, topic: string) => page.locator(`[data-testid=message-row][data-topic=${JSON.stringify(topic)}]`)

describe('messages', () => {
  it('shows the MQTT 5 properties of a message, compactly in its row and in full in its details', async () => {
    const page = await open('#/messages')
    const device = await mqtt5('lab-1')
    await device.publishAsync('devices/lab-1/telemetry', JSON.stringify({ temperature: 21.5 }), {
      qos: 1,
      properties: {
        userProperties: { site: 'lab', firmware: '1.4.2' },
        contentType: 'application/json',
        responseTopic: 'replies/lab-1',
        correlationData: Buffer.from('req-42'),
        messageExpiryInterval: 300,
      },
    })
    // and one without any, which shows none
    await device.publishAsync('notes/plain', 'no properties')

    const withProps = row(page, 'devices/lab-1/telemetry')
    await withProps.waitFor({ timeout: 10_000 })
    const chips = withProps.getByTestId('message-props')
    expect(await chips.locator('.prop').allTextContents()).toEqual(['site=lab', 'firmware=1.4.2', '+4'])
    await row(page, 'notes/plain').waitFor({ timeout: 5000 })
    expect(await row(page, 'notes/plain').getByTestId('message-props').count()).toBe(0)

    await withProps.click()
    const details = page.getByTestId('message-properties')
    await details.waitFor({ timeout: 5000 })
    const text = await details.textContent()
    for (const part of ['application/json', 'replies/lab-1', 'req-42', '5m', 'site=lab', 'firmware=1.4.2']) expect(text).toContain(part)
  })

  it('keeps rows within a 390 px screen however many properties a message has', async () => {
    const page = await open('#/messages', { width: 390, height: 844 })
    const device = await mqtt5()
    const userProperties = Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`property-with-a-long-name-${i}`, 'x'.repeat(80)]))
    await device.publishAsync('devices/wide/telemetry', JSON.stringify({ temperature: 1 }), { properties: { userProperties, contentType: 'application/json' } })
    const wide = row(page, 'devices/wide/telemetry')
    await wide.waitFor({ timeout: 10_000 })
    // one chip on a phone, and the count of the rest
    expect(await wide.locator('.prop').count()).toBe(2)
    expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(390)
    const box = await wide.boundingBox()
    expect(box?.width).toBeLessThanOrEqual(390)
  })
})

describe('the broker', () => {
  it('says which broker Pulseboard is on and where devices connect, without a client count it cannot know', async () => {
    const page = await open('#/broker')
    const source = page.getByTestId('broker-source')
    await source.waitFor({ timeout: 10_000 })
    expect(await source.getAttribute('data-mode')).toBe('external')
    expect((await source.textContent())?.replace(/\s+/g, ' ')).toMatch(new RegExp(`Connected to ${mosq.url.replace(/[.]/g, '\\.')} \\(MQTT 5\\) since`))
    expect(await page.getByTestId('mqtt-clients').textContent()).toBe('–')
    await page.getByTestId('mqtt-clients-unknown').waitFor({ timeout: 5000 })
    expect(await page.getByTestId('mqtt-url').textContent()).toBe(mosq.url)
    // Pulseboard serves no MQTT over WebSocket of its own on an external broker
    expect(await page.getByText('MQTT over WebSocket').count()).toBe(0)

    // the empty overview teaches the external broker's address, not a Pulseboard port
    await page.goto(`${stack.httpUrl}/#/`)
    const empty = page.getByTestId('empty-devices')
    await empty.locator('ol').getByText(mosq.url, { exact: true }).waitFor({ timeout: 5000 })
    const text = await empty.textContent()
    expect(text).toContain(`mosquitto_pub -h 127.0.0.1 -p ${mosq.port} -t devices/demo/telemetry`)
    expect(text).toContain(`npx pulseboard simulate --devices 5 --url ${mosq.url}`)
  })

  it('shows the broker banner while mosquitto is down, and clears it once Pulseboard is back on it', async () => {
    const page = await open('#/broker')
    const banner = page.getByTestId('broker-banner')
    await page.getByTestId('broker-source').waitFor({ timeout: 10_000 })
    expect(await banner.count()).toBe(0)

    await mosq.stop()
    await banner.waitFor({ state: 'visible', timeout: 10_000 })
    const text = (await banner.textContent())?.replace(/\s+/g, ' ') ?? ''
    expect(text).toContain(`The broker ${mosq.url} has been unreachable since`)
    expect(text).toContain('Pulseboard is reconnecting')
    // the socket to Pulseboard is fine: its banner stays away
    expect(await page.getByTestId('connection-banner').count()).toBe(0)
    expect(await page.getByTestId('broker-source').getAttribute('data-connected')).toBe('false')
    // a page opened during the outage hears of it on connect
    const second = await context!.newPage()
    await second.goto(`${stack.httpUrl}/#/`)
    await second.getByTestId('broker-banner').waitFor({ state: 'visible', timeout: 10_000 })

    await mosq.start()
    // back-off: 1 s, doubling
    await banner.waitFor({ state: 'detached', timeout: 30_000 })
    await second.getByTestId('broker-banner').waitFor({ state: 'detached', timeout: 5000 })
    expect(await page.getByTestId('broker-source').getAttribute('data-connected')).toBe('true')

    // and messages flow again
    const device = await mqtt5()
    await page.goto(`${stack.httpUrl}/#/messages`)
    await page.getByText('Live', { exact: true }).waitFor({ timeout: 10_000 })
    await device.publishAsync('after/outage', 'back')
    await row(page, 'after/outage').waitFor({ timeout: 10_000 })
  }, 60_000)
})

/**
 * A device that answers each command on its response topic with the correlation data, except
 * `slow`; with `history`, five minutes of readings come before its first live one.
 */
async function answeringDevice(id: string, history = false): Promise<MqttClient> {
  const device = await mqtt5(id)
  await device.subscribeAsync(`devices/${id}/commands`)
  device.on('message', (_topic, payload, packet) => {
    const command = JSON.parse(payload.toString()) as { name: string; value: unknown }
    const responseTopic = packet.properties?.responseTopic
    if (!responseTopic || command.name === 'slow') return
    void device
      .publishAsync(responseTopic, JSON.stringify({ ok: true, applied: command }), { properties: { correlationData: packet.properties?.correlationData } })
      .catch(() => {})
  })
  // properties: the registry learns it speaks MQTT 5
  const properties = { userProperties: { fw: '2.0' } }
  const now = Date.now()
  for (let t = now - 5 * 60_000; history && t < now - 2500; t += 5000) {
    const temperature = Number((21 + Math.sin(t / 40_000)).toFixed(2))
    await device.publishAsync(`devices/${id}/telemetry`, JSON.stringify({ ts: t, temperature, relay: false }), { properties })
  }
  await device.publishAsync(`devices/${id}/telemetry`, JSON.stringify({ temperature: 21.5, relay: false }), { properties })
  return device
}

describe('commands', () => {
  it('shows an MQTT 5 device’s answer to a command, and says when it does not answer', async () => {
    await answeringDevice('lamp-5')
    const page = await open('#/devices/lamp-5')
    await page.getByTestId('device-mqtt5').waitFor({ timeout: 10_000 })

    const form = page.getByTestId('command-form')
    await form.getByLabel('Command').fill('brightness')
    await form.getByLabel('Value', { exact: true }).fill('80')
    await form.getByRole('button', { name: 'Send' }).click()
    const reply = page.getByTestId('command-reply')
    await reply.waitFor({ timeout: 10_000 })
    const answer = await reply.locator('pre').textContent()
    expect(JSON.parse(answer ?? '')).toEqual({ ok: true, applied: { name: 'brightness', value: 80 } })

    await form.getByLabel('Command').fill('slow')
    await form.getByRole('button', { name: 'Send' }).click()
    await page.getByTestId('command-waiting').waitFor({ timeout: 5000 })
    const timeout = page.getByTestId('command-timeout')
    await timeout.waitFor({ timeout: 10_000 })
    expect((await timeout.textContent())?.replace(/\s+/g, ' ')).toContain('the device did not answer within 5 s')
  }, 30_000)
})

describe('screenshots', () => {
  /** Three MQTT 5 devices reporting every half second with properties, and a plain 3.1.1 one; a chart with five minutes behind it. */
  async function devices(): Promise<() => void> {
    const round = (n: number, digits: number) => Number(n.toFixed(digits))
    const greenhouse = await mqtt5('greenhouse')
    const reading = (t: number) =>
      JSON.stringify({
        ts: t,
        temperature: round(22 + 2.5 * Math.sin(t / 45_000) + 0.25 * Math.sin(t / 6_000), 2),
        humidity: round(56 - 5 * Math.sin(t / 45_000 + 0.9) + 0.8 * Math.sin(t / 9_000), 1),
        units: { temperature: '°C', humidity: '%' },
      })
    const props = { userProperties: { site: 'north-greenhouse', firmware: '2.3.1' }, contentType: 'application/json', messageExpiryInterval: 600 }
    const now = Date.now()
    for (let t = now - 5 * 60_000; t < now; t += 2000) await greenhouse.publishAsync('devices/greenhouse/telemetry', reading(t), { properties: props })
    const others = await Promise.all(['cellar', 'attic'].map(async (id) => ({ id, client: await mqtt5(id) })))
    const plain = await stack.mqtt({ clientId: 'porch' })
    let n = 0
    const timer = setInterval(() => {
      n++
      const t = Date.now()
      const quiet = () => {}
      greenhouse.publishAsync('devices/greenhouse/telemetry', reading(t), { properties: props }).catch(quiet)
      for (const { id, client } of others) {
        client
          .publishAsync(`devices/${id}/telemetry`, JSON.stringify({ temperature: round(18 + Math.sin(t / 20_000 + id.length), 2) }), {
            properties: {
              userProperties: { site: id, sensor: 'bme280' },
              contentType: 'application/json',
              responseTopic: `replies/${id}`,
              correlationData: Buffer.from(`req-${n}`),
              messageExpiryInterval: 60,
            },
          })
          .catch(quiet)
      }
      plain.publishAsync('devices/porch/telemetry', JSON.stringify({ temperature: round(12 + Math.sin(t / 30_000), 2), battery: 87 })).catch(quiet)
    }, 500)
    const stop = () => clearInterval(timer)
    cleanups.push(stop)
    return stop
  }

  /** Waits until the page's chart holds `n` points of the line `key`. */
  async function chartHolds(page: Page, key: string, n: number): Promise<void> {
    await page
      .waitForFunction(
        ([k, count]) => {
          const counts = JSON.parse(document.querySelector<HTMLCanvasElement>('canvas[data-testid=time-chart]')?.dataset['counts'] ?? '{}') as Record<string, number>
          return (counts[k as string] ?? 0) >= (count as number)
        },
        [key, n] as const,
        { timeout: 10_000 },
      )
      .catch((err: Error) => {
        throw new Error(`expected the chart to hold ${n} points of "${key}": ${err.message}`)
      })
  }

  const views = [
    { width: 1280, height: 800 },
    { width: 390, height: 844 },
  ]
  const schemes = ['light', 'dark'] as const

  it('of the Broker page and the Messages page with properties, on an external broker, light and dark, wide and narrow', async () => {
    await devices()
    for (const colorScheme of schemes) {
      for (const view of views) {
        const suffix = `${colorScheme}-${view.width}x${view.height}`
        const page = await open('#/broker', { ...view, colorScheme })
        await page.getByTestId('broker-source').waitFor({ timeout: 10_000 })
        // a few seconds of rates on the chart
        await chartHolds(page, 'in', 3)
        await page.screenshot({ path: `${screenshotDir}external-broker-${suffix}.png` })

        await page.goto(`${stack.httpUrl}/#/messages`)
        const first = page.locator('[data-testid=message-row][data-topic="devices/cellar/telemetry"]').first()
        await first.waitFor({ timeout: 10_000 })
        await page.getByTestId('message-row').nth(9).waitFor({ timeout: 10_000 })
        await page.getByTestId('pause-log').click()
        await first.click()
        await page.getByTestId('message-properties').waitFor({ timeout: 5000 })
        await page.screenshot({ path: `${screenshotDir}external-messages-properties-${suffix}.png`, fullPage: true })
      }
    }
  }, 120_000)

  it('of the broker outage banner on the overview and the Broker page, light and dark, wide and narrow', async () => {
    const stop = await devices()
    const pages: { page: Page; suffix: string }[] = []
    const contexts: BrowserContext[] = []
    // closed here, or after a failure at the latest with the browser
    cleanups.push(() => void Promise.all(contexts.map((c) => c.close())).catch(() => {}))
    for (const colorScheme of schemes) {
      for (const view of views) {
        const opened = await openDashboard(browser, stack.httpUrl, '#/', { ...view, colorScheme }, trouble)
        contexts.push(opened.context)
        await opened.page.locator('[data-testid=device-card]').nth(3).waitFor({ timeout: 10_000 })
        pages.push({ page: opened.page, suffix: `${colorScheme}-${view.width}x${view.height}` })
      }
    }
    stop()
    await mosq.stop()
    for (const { page, suffix } of pages) {
      await page.getByTestId('broker-banner').waitFor({ state: 'visible', timeout: 10_000 })
      await page.screenshot({ path: `${screenshotDir}external-outage-overview-${suffix}.png` })
      await page.goto(`${stack.httpUrl}/#/broker`)
      await page.getByText('Live', { exact: true }).waitFor({ timeout: 10_000 })
      await page.locator('[data-testid=broker-source][data-connected=false]').waitFor({ timeout: 10_000 })
      await chartHolds(page, 'in', 2)
      await page.getByTestId('broker-banner').waitFor({ state: 'visible', timeout: 10_000 })
      await page.screenshot({ path: `${screenshotDir}external-outage-broker-${suffix}.png` })
    }
    await mosq.start()
    for (const { page } of pages) await page.getByTestId('broker-banner').waitFor({ state: 'detached', timeout: 30_000 })
    await Promise.all(contexts.splice(0).map((c) => c.close()))
  }, 120_000)

  it('of an MQTT 5 device’s answer on its page, light and dark, wide and narrow', async () => {
    const device = await answeringDevice('lamp-5', true)
    const commands = mqttMessages(device)
    for (const colorScheme of schemes) {
      for (const view of views) {
        const page = await open('#/devices/lamp-5', { ...view, colorScheme })
        await page.getByTestId('device-mqtt5').waitFor({ timeout: 10_000 })
        const form = page.getByTestId('command-form')
        await form.getByLabel('Command').fill('scene')
        await form.getByRole('radio', { name: 'JSON' }).check()
        await form.getByLabel('Value', { exact: true }).fill('{"name": "evening", "brightness": 40}')
        await form.getByRole('button', { name: 'Send' }).click()
        await page.getByTestId('command-reply').waitFor({ timeout: 10_000 })
        // a full-page shot of a scrolled page draws the sticky header where it was scrolled to
        await page.evaluate(() => window.scrollTo(0, 0))
        await page.screenshot({ path: `${screenshotDir}external-device-reply-${colorScheme}-${view.width}x${view.height}.png`, fullPage: true })
      }
    }
    expect(commands.values.filter((m) => m.topic === 'devices/lamp-5/commands')).toHaveLength(4)
  }, 90_000)
})
