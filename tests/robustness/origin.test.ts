import http from 'node:http'
import os from 'node:os'
import { afterEach, describe, expect, it } from 'vitest'
import mqtt from 'mqtt'
import { io } from 'socket.io-client'
import { WebSocket } from 'ws'
import { LIVE_NAMESPACE } from '../../protocol/index.ts'
import { collect, within } from '../helpers/stack.ts'
import { canary, startTarget, type Target } from './server.ts'

let target: Target
afterEach(async () => {
  await target?.close()
})

/** What a socket.io handshake from a page with these headers gets: 'connected' or the refusal. */
function handshake(url: string, headers: Record<string, string>): Promise<string> {
  // extraHeaders reach the server on the WebSocket upgrade; a browser sets Origin and Host itself
  const socket = io(url, { transports: ['websocket'], reconnection: false, extraHeaders: headers })
  return within(5000, 'the handshake to finish', new Promise((resolve) => {
    socket.once('connect', () => (socket.disconnect(), resolve('connected')))
    socket.once('connect_error', (err) => (socket.disconnect(), resolve(`refused: ${err.message}`)))
  }))
}

/** What an MQTT-over-WebSocket upgrade with these headers gets: 'open' or the HTTP status. */
function mqttUpgrade(port: number, headers: Record<string, string>): Promise<string> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/mqtt`, 'mqtt', { headers })
  return within(5000, 'the /mqtt upgrade to finish', new Promise((resolve) => {
    ws.once('open', () => (ws.terminate(), resolve('open')))
    ws.once('unexpected-response', (_req, res) => resolve(`HTTP ${res.statusCode}`))
    ws.once('error', () => {})
  }))
}

/** A GET with any Host header (fetch does not let one set it). */
function get(port: number, path: string, headers: Record<string, string>): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path, headers }, (res) => {
        let body = ''
        res.on('data', (chunk: Buffer) => (body += chunk))
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
      })
      .on('error', reject)
  })
}

describe('no other web page can drive the devices', () => {
  it('refuses a foreign Origin on /, /live and /mqtt, and takes clients that send none', async () => {
    target = await startTarget()
    const evil = { origin: 'http://evil.example' }
    expect(await handshake(target.httpUrl, evil)).toMatch(/^refused/)
    expect(await handshake(target.httpUrl + LIVE_NAMESPACE, evil)).toMatch(/^refused/)
    expect(await mqttUpgrade(target.port, evil)).toBe('HTTP 403')

    const own = { origin: target.httpUrl }
    expect(await handshake(target.httpUrl + LIVE_NAMESPACE, own)).toBe('connected')
    expect(await mqttUpgrade(target.port, own)).toBe('open')
    expect(await handshake(target.httpUrl + LIVE_NAMESPACE, {})).toBe('connected')
    expect(await mqttUpgrade(target.port, {})).toBe('open')
    await canary(target)
  })

  it('takes the origins given with --allow-origin and --public-url', async () => {
    target = await startTarget(['--allow-origin', 'http://dash.example:8080', '--public-url', 'https://pulse.example.org'])
    expect(await handshake(target.httpUrl + LIVE_NAMESPACE, { origin: 'http://dash.example:8080' })).toBe('connected')
    expect(await handshake(target.httpUrl + LIVE_NAMESPACE, { origin: 'https://pulse.example.org' })).toBe('connected')
    expect(await handshake(target.httpUrl + LIVE_NAMESPACE, { origin: 'http://dash.example:9090' })).toMatch(/^refused/)
    await canary(target)
  })

  it('refuses a Host that is not a name of this server (DNS rebinding)', async () => {
    target = await startTarget()
    // the page's own origin, so only Host gives it away
    const rebound = { host: `evil.example:${target.port}`, origin: `http://evil.example:${target.port}` }
    expect(await handshake(target.httpUrl + LIVE_NAMESPACE, rebound)).toMatch(/^refused/)
    expect(await mqttUpgrade(target.port, rebound)).toBe('HTTP 421')
    const res = await get(target.port, '/api/devices', { host: `evil.example:${target.port}` })
    expect(res.status).toBe(421)
    expect(res.body).toContain('--public-url')
    for (const host of [`localhost:${target.port}`, `127.0.0.1:${target.port}`, `[::1]:${target.port}`, `${os.hostname()}:${target.port}`]) {
      expect((await get(target.port, '/api/health', { host })).status).toBe(200)
    }
    await canary(target)
  })

  it('keeps what a foreign page tried from happening: relay, reboot, fake LWT, MQTT over WebSocket', async () => {
    target = await startTarget()
    const watcher = await target.mqtt()
    await watcher.subscribeAsync('#')
    const seen = collect<string>((push) => watcher.on('message', (topic) => push(topic)))
    const page = io(target.httpUrl + LIVE_NAMESPACE, { transports: ['websocket'], reconnection: false, extraHeaders: { origin: 'http://evil.example' } })
    const refused = await within(5000, 'the refusal', new Promise<boolean>((resolve) => {
      page.once('connect', () => resolve(false))
      page.once('connect_error', () => resolve(true))
    }))
    expect(refused).toBe(true)
    page.emit('message', { topic: 'cmnd/plug/POWER', payload: 'ON' })
    page.emit('command', { device: 'plug', name: 'REBOOT', value: 1 })
    page.emit('message', { topic: 'tele/plug/LWT', payload: 'Offline', retain: true })
    page.disconnect()
    const ws = mqtt.connect(`ws://127.0.0.1:${target.port}/mqtt`, { reconnectPeriod: 0, wsOptions: { headers: { origin: 'http://evil.example' } } })
    const wsRefused = await within(5000, 'the /mqtt refusal', new Promise<boolean>((resolve) => {
      ws.once('connect', () => resolve(false))
      ws.once('error', () => resolve(true))
      ws.once('close', () => resolve(true))
    }))
    ws.end(true)
    expect(wsRefused).toBe(true)
    await watcher.publishAsync('marker', 'x', { qos: 1 })
    await seen.until('the marker', (v) => v.includes('marker'))
    expect(seen.values).toEqual(['marker'])
    await canary(target)
  })

  it('sends security headers with the dashboard and the API', async () => {
    target = await startTarget()
    for (const path of ['/', '/api/health']) {
      const res = await fetch(target.httpUrl + path)
      const csp = res.headers.get('content-security-policy') ?? ''
      expect(csp).toContain("default-src 'self'")
      expect(csp).toContain("script-src 'self'")
      expect(csp).toContain("frame-ancestors 'none'")
      expect(res.headers.get('x-content-type-options')).toBe('nosniff')
      expect(res.headers.get('referrer-policy')).toBe('no-referrer')
      expect(res.headers.get('x-frame-options')).toBe('SAMEORIGIN')
    }
    await canary(target)
  })
})
