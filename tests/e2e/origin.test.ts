import http from 'node:http'
import net from 'node:net'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import type { Browser } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { launchChromium } from '../../bench/browser.ts'
import { startStack, type Stack } from '../helpers/stack.ts'

// the browser build; the package's exports map does not name it
const socketIoClient = readFileSync(fileURLToPath(new URL('../../node_modules/socket.io-client/dist/socket.io.min.js', import.meta.url)))

/**
 * A page on another origin that tries what a malicious site would: socket.io on `/` and
 * `/live` over WebSocket and long-polling, and MQTT over WebSocket. It reports each outcome.
 */
const probePage = (target: string) => `<!doctype html><meta charset="utf-8"><script src="/socket.io.min.js"></script>
<script>
  const attempt = (name, connect) => new Promise((resolve) => connect(resolve)).then((outcome) => [name, outcome])
  const socketIo = (nsp, transport) => (resolve) => {
    const s = io('${target}' + nsp, { transports: [transport], reconnection: false, timeout: 3000 })
    s.on('connect', () => (s.disconnect(), resolve('connected')))
    s.on('connect_error', () => (s.disconnect(), resolve('refused')))
  }
  window.results = Promise.all([
    attempt('/ websocket', socketIo('/', 'websocket')),
    attempt('/live websocket', socketIo('/live', 'websocket')),
    attempt('/live polling', socketIo('/live', 'polling')),
    attempt('/mqtt', (resolve) => {
      const ws = new WebSocket('${target.replace('http', 'ws')}/mqtt', 'mqtt')
      ws.onopen = () => (ws.close(), resolve('connected'))
      ws.onerror = () => resolve('refused')
    }),
  ]).then(Object.fromEntries)
</script>`

let browser: Browser
let stack: Stack
let other: http.Server
let otherUrl: string

beforeAll(async () => {
  browser = await launchChromium()
  stack = await startStack()
  other = http.createServer((req, res) => {
    if (req.url === '/socket.io.min.js') return res.end(socketIoClient)
    res.setHeader('content-type', 'text/html; charset=utf-8')
    res.end(probePage(stack.httpUrl))
  })
  await new Promise<void>((resolve) => other.listen(0, '127.0.0.1', resolve))
  otherUrl = `http://127.0.0.1:${(other.address() as net.AddressInfo).port}/`
}, 60_000)

afterAll(async () => {
  await browser?.close()
  other?.close()
  await stack?.close()
})

describe('a page from another origin', () => {
  it('cannot open /, /live or /mqtt; the same page served by Pulseboard itself could', async () => {
    const page = await (await browser.newContext()).newPage()
    await page.goto(otherUrl)
    const results = await page.evaluate(() => (window as unknown as { results: Promise<Record<string, string>> }).results)
    expect(results).toEqual({ '/ websocket': 'refused', '/live websocket': 'refused', '/live polling': 'refused', '/mqtt': 'refused' })

    // the control: from the dashboard's own origin every one of them connects (the probe is
    // injected, so the page's CSP is bypassed for it: what is tested here is Origin alone)
    const own = await (await browser.newContext({ bypassCSP: true })).newPage()
    await own.goto(`${stack.httpUrl}/api/health`)
    await own.addScriptTag({ content: socketIoClient.toString() })
    const ownResults = await own.evaluate(async (html) => {
      const script = /<script>\n([\s\S]*)<\/script>$/.exec(html)![1]!
      new Function(script)()
      return (window as unknown as { results: Promise<Record<string, string>> }).results
    }, probePage(stack.httpUrl))
    expect(ownResults).toEqual({ '/ websocket': 'connected', '/live websocket': 'connected', '/live polling': 'connected', '/mqtt': 'connected' })
  })
})
