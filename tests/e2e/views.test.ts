import { execFileSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import type { MqttClient } from 'mqtt'
import type { Browser, BrowserContext, Page } from 'playwright-core'
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { launchChromium } from '../../bench/browser.ts'
import type { AppliedView, DeviceState, Envelope, Reading } from '../../protocol/index.ts'
import { startStack, type Stack } from '../helpers/stack.ts'
import { goto } from './page.ts'

/**
 * Each page is sent what it shows, counted on the page's own socket (Chrome's
 * Network.webSocketFrameReceived): the device page no readings of other devices.
 */

const repoRoot = fileURLToPath(new URL('../..', import.meta.url))
const dashboardDir = fileURLToPath(new URL('../../dist/dashboard', import.meta.url))
const DEVICES = ['alpha', 'beta', 'gamma']

let browser: Browser
let stack: Stack
let context: BrowserContext | null = null
let publisher: MqttClient
let timer: NodeJS.Timeout | undefined
let pageErrors: string[] = []

beforeAll(async () => {
  if (!existsSync(`${dashboardDir}/index.html`)) execFileSync('npm', ['run', 'build'], { cwd: repoRoot, stdio: 'inherit' })
  browser = await launchChromium()
}, 120_000)
afterAll(async () => {
  await browser?.close()
})

beforeEach(async () => {
  stack = await startStack({ dashboardDir })
  pageErrors = []
  publisher = await stack.mqtt({ clientId: 'views-fleet' })
  // three devices, each with two metrics, ten times a second
  let n = 0
  timer = setInterval(() => {
    n++
    for (const [i, id] of DEVICES.entries()) void publisher.publishAsync(`devices/${id}/telemetry`, JSON.stringify({ temperature: 20 + i + (n % 10) / 10, humidity: 40 + i }))
  }, 100)
})
afterEach(async () => {
  clearInterval(timer)
  await context?.close()
  context = null
  await stack.close()
  expect(pageErrors, 'uncaught errors in the page').toEqual([])
})

/** One socket.io event the page received, with its size on the wire. */
interface Frame {
  at: number
  event: string
  data: unknown
  bytes: number
}

/** The dashboard at `hash`, and every socket.io event its `/live` socket receives from the start. */
async function open(hash: string): Promise<{ page: Page; frames: Frame[] }> {
  context = await browser.newContext({ viewport: { width: 1280, height: 800 }, locale: 'en-US' })
  const page = await context.newPage()
  page.on('pageerror', (err) => pageErrors.push(err.message))
  const frames: Frame[] = []
  const cdp = await context.newCDPSession(page)
  await cdp.send('Network.enable')
  cdp.on('Network.webSocketFrameReceived', ({ response }) => {
    const text = response.payloadData
    // engine.io message (4), socket.io event (2) or ack (3) on /live; acks become the event "ack"
    const m = /^4([23])\/live,(\d*)(.*)$/s.exec(text)
    if (!m) return
    const body = JSON.parse(m[3]!) as unknown[]
    const [event, data] = m[1] === '2' ? [body[0] as string, body[1]] : ['ack', body[0]]
    frames.push({ at: frames.length, event, data, bytes: Buffer.byteLength(text) })
  })
  await goto(page, `${stack.httpUrl}/${hash}`)
  return { page, frames }
}

const readingsIn = (frames: Frame[]) => frames.filter((f) => f.event === 'readings').flatMap((f) => f.data as Reading[])
const statesIn = (frames: Frame[]) => frames.filter((f) => f.event === 'device' || f.event === 'devices').flatMap((f) => f.data as DeviceState[])
const messagesIn = (frames: Frame[]) => frames.filter((f) => f.event === 'message' || f.event === 'messages').flatMap((f) => (f.event === 'message' ? [f.data as Envelope] : (f.data as Envelope[])))

/** Waits until `ok` holds of what the socket received, or fails saying what was expected. */
async function until(frames: Frame[], what: string, ok: (frames: Frame[]) => boolean, timeout = 10_000): Promise<void> {
  const deadline = Date.now() + timeout
  while (!ok(frames)) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what}; the page received ${frames.length} events: ${[...new Set(frames.map((f) => f.event))].join(', ')}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

/** The frames after the server acknowledged a view whose devices are `devices`. */
function afterView(frames: Frame[], devices: AppliedView['devices']): Frame[] {
  const i = frames.findIndex((f) => f.event === 'ack' && JSON.stringify((f.data as { view?: AppliedView }).view?.devices) === JSON.stringify(devices))
  return i < 0 ? [] : frames.slice(i + 1)
}

describe('what each page is sent', () => {
  it('sends the device page its device\'s readings and state only: no other device, no messages', async () => {
    const { page, frames } = await open('#/devices/beta')
    await until(frames, '30 readings of beta', (f) => readingsIn(f).filter((r) => r.device === 'beta').length >= 30)
    // the tiles show beta's values as they come
    await page.locator('[data-testid=tile-value][data-ts]').first().waitFor()

    expect(new Set(readingsIn(frames).map((r) => r.device)), 'devices whose readings reached the page').toEqual(new Set(['beta']))
    expect(new Set(statesIn(frames).map((d) => d.id)), 'devices whose state reached the page').toEqual(new Set(['beta']))
    expect(messagesIn(frames), 'messages').toEqual([])
    // the readings were most of what came, and they were beta's
    const bytes = (event: string) => frames.filter((f) => f.event === event).reduce((sum, f) => sum + f.bytes, 0)
    expect(bytes('readings')).toBeGreaterThan(bytes('device') + bytes('devices'))
  })

  it('changes what the page is sent as the route changes, without reconnecting', async () => {
    const { page, frames } = await open('#/devices/beta')
    await until(frames, 'a reading of beta', (f) => readingsIn(f).length > 0)

    // the overview: every device's state (its values at most once a second), no readings, no messages
    await page.evaluate(() => (location.hash = '#/'))
    await page.getByTestId('device-card').nth(DEVICES.length - 1).waitFor()
    await until(frames, 'the state of every device after the overview\'s view', (f) => new Set(statesIn(afterView(f, true)).map((d) => d.id)).size === DEVICES.length)
    await until(frames, 'two seconds of the overview', (f) => afterView(f, true).filter((x) => x.event === 'device').length >= 4)
    const overview = afterView(frames, true)
    expect(readingsIn(overview), 'readings on the overview').toEqual([])
    expect(messagesIn(overview), 'messages on the overview').toEqual([])

    // another device page: that device alone
    await page.evaluate(() => (location.hash = '#/devices/gamma'))
    await until(frames, '20 readings of gamma', (f) => readingsIn(afterView(f, ['gamma'])).length >= 20)
    const gamma = afterView(frames, ['gamma'])
    expect(new Set(readingsIn(gamma).map((r) => r.device))).toEqual(new Set(['gamma']))
    expect(new Set(statesIn(gamma).map((d) => d.id))).toEqual(new Set(['gamma']))

    // the messages page: messages only
    await page.evaluate(() => (location.hash = '#/messages'))
    await until(frames, 'messages after the messages page\'s view', (f) => messagesIn(afterView(f, false)).length >= 10)
    const messages = afterView(frames, false)
    expect(readingsIn(messages)).toEqual([])
    expect(statesIn(messages)).toEqual([])
    // one socket all along
    expect(frames.filter((f) => f.event === 'broker')).toHaveLength(1)
  })
})
