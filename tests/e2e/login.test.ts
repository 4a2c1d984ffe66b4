import { execFileSync } from 'node:child_process'
import { existsSync, mkdirSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import mqtt from 'mqtt'
import type { Browser, BrowserContext } from 'playwright-core'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { launchChromium } from '../../bench/browser.ts'
import { emptyConfig, type AccessConfig } from '../../auth/config.ts'
import { hashSecret } from '../../auth/secrets.ts'
import { startStack, type Stack } from '../helpers/stack.ts'

/**
 * The dashboard of a server with users: the login page, a refused password, a viewer who sees
 * devices but no controls, logging out; with screenshots of the login page, light and dark.
 */

const repoRoot = fileURLToPath(new URL('../..', import.meta.url))
const dashboardDir = fileURLToPath(new URL('../../dist/dashboard', import.meta.url))
const screenshotDir = fileURLToPath(new URL('../screenshots/', import.meta.url))

let browser: Browser
let stack: Stack
const contexts: BrowserContext[] = []

beforeAll(async () => {
  if (!existsSync(`${dashboardDir}/index.html`)) execFileSync('npm', ['run', 'build'], { cwd: repoRoot, stdio: 'inherit' })
  mkdirSync(screenshotDir, { recursive: true })
  const access: AccessConfig = {
    ...emptyConfig(),
    users: {
      alice: { role: 'operator', password: await hashSecret('alice-password') },
      bob: { role: 'viewer', password: await hashSecret('bob-password') },
    },
  }
  stack = await startStack({ dashboardDir, access })
  browser = await launchChromium()
  // a device, through MQTT with the operator's password, so there is something to see
  const device = await mqtt.connectAsync(stack.mqttUrl, { username: 'alice', password: 'alice-password', reconnectPeriod: 0 })
  await device.publishAsync('devices/porch/telemetry', JSON.stringify({ temperature: 18.5 }), { qos: 1 })
  await device.endAsync()
}, 120_000)

afterEach(async () => {
  for (const c of contexts.splice(0)) await c.close()
})

afterAll(async () => {
  await browser?.close()
  await stack?.close()
})

async function open(width: number, colorScheme: 'light' | 'dark', hash = '') {
  const context = await browser.newContext({ viewport: { width, height: 800 }, colorScheme, locale: 'en-US' })
  contexts.push(context)
  const page = await context.newPage()
  const errors: string[] = []
  page.on('pageerror', (err) => errors.push(err.message))
  await page.goto(`${stack.httpUrl}/${hash}`)
  await page.getByTestId('login-form').waitFor({ timeout: 10_000 })
  return { page, errors }
}

describe('the dashboard of a server with users', () => {
  it('shows the login page, light and dark, on a desktop and a phone, and nothing of the devices', async () => {
    for (const colorScheme of ['light', 'dark'] as const) {
      for (const width of [1280, 390]) {
        const { page, errors } = await open(width, colorScheme, '#/devices/porch')
        expect(await page.title()).toBe('Log in · Pulseboard')
        expect(await page.getByText('porch').count()).toBe(0)
        await page.screenshot({ path: `${screenshotDir}login-${colorScheme}-${width}.png` })
        expect(errors).toEqual([])
      }
    }
  })

  it('refuses a wrong password with the reason and keeps the form', async () => {
    const { page } = await open(1280, 'light')
    await page.fill('input[name=user]', 'bob')
    await page.fill('input[name=password]', 'not-it')
    await page.click('button[type=submit]')
    await expect.poll(() => page.getByRole('alert').textContent(), { timeout: 10_000 }).toContain('wrong user name or password')
    expect(await page.inputValue('input[name=password]')).toBe('')
    await page.screenshot({ path: `${screenshotDir}login-refused-light-1280.png` })
  })

  it('lets a viewer in to see the devices, without controls, sets an HttpOnly cookie, and logs out', async () => {
    const { page, errors } = await open(1280, 'dark')
    await page.fill('input[name=user]', 'bob')
    await page.fill('input[name=password]', 'bob-password')
    await page.click('button[type=submit]')
    await page.getByText('Live', { exact: true }).waitFor({ timeout: 10_000 })
    await page.getByText('porch').first().waitFor({ timeout: 10_000 })
    const cookies = await page.context().cookies()
    expect(cookies.find((c) => c.name === 'pulseboard_session')).toMatchObject({ httpOnly: true, sameSite: 'Strict' })
    // scripts cannot read it
    expect(await page.evaluate(() => document.cookie)).not.toContain('pulseboard_session')

    await page.goto(`${stack.httpUrl}/#/messages`)
    await page.getByText('Live', { exact: true }).waitFor({ timeout: 10_000 })
    expect(await page.getByTestId('publish-form').count()).toBe(0)
    await page.goto(`${stack.httpUrl}/#/devices/porch`)
    await page.getByTestId('device-name').waitFor({ timeout: 10_000 })
    expect(await page.getByTestId('rename').count()).toBe(0)
    await page.screenshot({ path: `${screenshotDir}viewer-device-dark-1280.png` })

    await page.getByTestId('logout').click()
    await page.getByTestId('login-form').waitFor({ timeout: 10_000 })
    const after = await page.evaluate(async () => (await fetch('/api/devices')).status)
    expect(after).toBe(401)
    expect(errors).toEqual([])
  })

  it('gives an operator the controls', async () => {
    const { page } = await open(1280, 'light', '#/messages')
    await page.fill('input[name=user]', 'alice')
    await page.fill('input[name=password]', 'alice-password')
    await page.click('button[type=submit]')
    await page.getByTestId('publish-form').waitFor({ timeout: 10_000 })
  })
})
