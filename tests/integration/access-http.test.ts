import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import mqtt from 'mqtt'
import { io as connectSocket, type Socket } from 'socket.io-client'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { loadConfig, saveConfig, type AccessConfig } from '../../auth/config.ts'
import { hashSecret } from '../../auth/secrets.ts'
import { LIVE_NAMESPACE, type LiveAuth } from '../../protocol/index.ts'
import { SESSION_COOKIE } from '../../server/access.ts'
import { mqttMessages, startStack, within, type LiveClient, type Stack } from '../helpers/stack.ts'
import { killAll, pulseboard } from '../helpers/process.ts'
import { quickHash } from '../helpers/secrets.ts'

/** The HTTP API and the socket.io handshakes with users: sessions, tokens, roles and login back-off. */

const PASSWORD = { alice: 'alice-pass-1', bob: 'bob-pass-1', vic: 'vic-pass-1', 'dev-a': 'dev-a-pass-1' }
let dir: string
let file: string
/** Made by `pulseboard tokens create --role viewer`. */
let viewerToken: string
let operatorToken: string

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'pulseboard-access-http-'))
  file = path.join(dir, 'pulseboard.json')
  // the first user and a token through the commands a person runs; a short password is refused, from a script too
  const add = pulseboard(['users', 'add', 'alice', '--password-stdin', '--config', file])
  add.process.stdin.end(`${PASSWORD.alice}\n`)
  const short = pulseboard(['users', 'add', 'shorty', '--password-stdin', '--config', path.join(dir, 'other.json')])
  short.process.stdin.end('1234567\n')
  expect(await add.exited).toBe(0)
  expect(await short.exited).toBe(1)
  expect(short.stderr.values.join('\n')).toMatch(/at least 8 characters; nothing was changed/)
  expect(existsSync(path.join(dir, 'other.json'))).toBe(false)
  expect(add.stdout.values[0]).toMatch(/^added user alice \(admin\) in /)
  const create = pulseboard(['tokens', 'create', '--role', 'viewer', '--name', 'script', '--config', file])
  expect(await create.exited).toBe(0)
  viewerToken = create.stdout.values.map((l) => l.trim()).find((l) => l.startsWith('pbt_script.'))!
  expect(viewerToken).toMatch(/^pbt_script\.[A-Za-z0-9_-]{32}$/)
  // the others in-process, which is quicker
  const config = loadConfig(file)
  config.users.bob = { role: 'operator', password: await hashSecret(PASSWORD.bob) }
  config.users.vic = { role: 'viewer', password: quickHash(PASSWORD.vic) }
  config.devices['dev-a'] = { password: quickHash(PASSWORD['dev-a']) }
  config.tokens.ops = { role: 'operator', secret: quickHash('ops-secret-1') }
  operatorToken = 'pbt_ops.ops-secret-1'
  saveConfig(file, config)
}, 60_000)
afterAll(() => rmSync(dir, { recursive: true, force: true }))

let stack: Stack | undefined
afterEach(async () => {
  await killAll()
  await stack?.close()
  stack = undefined
})

async function start(change: Partial<AccessConfig> = {}): Promise<Stack> {
  stack = await startStack({ access: { ...loadConfig(file), ...change } })
  return stack
}

const get = (s: Stack, url: string, headers: Record<string, string> = {}) => fetch(`${s.httpUrl}${url}`, { headers })
const bearer = (token: string) => ({ authorization: `Bearer ${token}` })
const cookie = (session: string) => ({ cookie: `${SESSION_COOKIE}=${session}` })

async function login(s: Stack, user: string, password: string): Promise<Response> {
  return fetch(`${s.httpUrl}/api/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ user, password }) })
}

/** Logs in and answers the session cookie's value. */
async function session(s: Stack, user: keyof typeof PASSWORD): Promise<string> {
  const res = await login(s, user, PASSWORD[user])
  expect(res.status).toBe(200)
  return /pulseboard_session=([^;]+)/.exec(res.headers.get('set-cookie') ?? '')![1]!
}

async function expectCode(res: Response, status: number, code: string): Promise<void> {
  const body = (await res.json()) as { error?: { code: string } }
  expect({ status: res.status, code: body.error?.code }).toEqual({ status, code })
}

type Opened = { socket: Socket } | { refused: { message: string; data?: { code: string } } }
/** A socket.io client on a namespace: connected, or the `connect_error` it got. */
async function open(s: Stack, namespace: string, auth: LiveAuth = {}, headers: Record<string, string> = {}): Promise<Opened> {
  const socket = connectSocket(s.httpUrl + namespace, { transports: ['websocket'], reconnection: false, auth, extraHeaders: headers })
  const opened = await within(5000, `the ${namespace} handshake`, new Promise<Opened>((resolve) => {
    socket.once('connect', () => resolve({ socket }))
    socket.once('connect_error', (err) => resolve({ refused: err as Error & { data?: { code: string } } }))
  }))
  if ('refused' in opened) socket.disconnect()
  else closers.push(() => void socket.disconnect())
  return opened
}
const closers: (() => void)[] = []
afterEach(() => {
  for (const close of closers.splice(0)) close()
})

/** After an attack: a client with a key is still served, over HTTP and /live. */
async function stillServes(s: Stack): Promise<void> {
  expect((await get(s, '/api/devices', bearer(operatorToken))).status).toBe(200)
  const live = await open(s, LIVE_NAMESPACE, { token: operatorToken })
  if (!('socket' in live)) throw new Error(`/live refused a good token: ${live.refused.message}`)
  expect(await (live.socket as LiveClient).emitWithAck('message', 'still here')).toMatchObject({ ok: true })
}

/** A device the registry knows, with a `relay` command, and its MQTT connection listening for commands. */
async function deviceWithRelay(s: Stack) {
  const device = await s.mqtt({ username: 'dev-a', password: PASSWORD['dev-a'], clientId: 'dev-a' })
  await device.subscribeAsync('devices/dev-a/commands', { qos: 1 })
  const known = new Promise((resolve) => s.app.registry.on('update', () => s.app.registry.get('dev-a') && resolve(null)))
  await device.publishAsync('devices/dev-a/telemetry', '{"relay":false,"temperature":21.5}', { qos: 1 })
  await within(5000, 'the registry to know dev-a', known)
  return { device, commands: mqttMessages(device) }
}

describe('the HTTP API with users', () => {
  it('answers 401 E_NOT_AUTHENTICATED without a session or token, to /api and /metrics', async () => {
    const s = await start()
    await expectCode(await get(s, '/api/devices'), 401, 'E_NOT_AUTHENTICATED')
    await expectCode(await get(s, '/api/messages'), 401, 'E_NOT_AUTHENTICATED')
    await expectCode(await get(s, '/metrics'), 401, 'E_NOT_AUTHENTICATED')
    // what the login page needs stays open
    expect(await (await get(s, '/api/session')).json()).toMatchObject({ required: true, user: null, role: null })
    expect((await get(s, '/')).status).toBe(200)
    await stillServes(s)
  })

  it('logs in with the right password: an HttpOnly SameSite=Strict cookie, then /api works; a wrong one gets 401', async () => {
    const s = await start()
    await expectCode(await login(s, 'alice', 'alice-pass-2'), 401, 'E_NOT_AUTHENTICATED')
    await expectCode(await login(s, 'nobody', 'alice-pass-1'), 401, 'E_NOT_AUTHENTICATED')
    // a device is MQTT only
    await expectCode(await login(s, 'dev-a', PASSWORD['dev-a']), 401, 'E_NOT_AUTHENTICATED')

    const res = await login(s, 'alice', PASSWORD.alice)
    expect(res.status).toBe(200)
    expect(await res.json()).toEqual({ user: 'alice', role: 'admin', rights: { read: true, send: true, manage: true } })
    const setCookie = res.headers.get('set-cookie')!
    expect(setCookie).toMatch(new RegExp(`^${SESSION_COOKIE}=[A-Za-z0-9_-]{43}; Path=/; HttpOnly; SameSite=Strict; Max-Age=(43200|4319[0-9])$`))
    expect(setCookie).not.toMatch(/Secure/) // plain HTTP: a Secure cookie would never come back
    const id = /=([^;]+)/.exec(setCookie)![1]!
    expect((await get(s, '/api/devices', cookie(id))).status).toBe(200)
    expect((await get(s, '/metrics', cookie(id))).status).toBe(200)
    expect(await (await get(s, '/api/session', cookie(id))).json()).toMatchObject({ user: 'alice', role: 'admin' })
    await stillServes(s)
  })

  it('refuses a forged cookie, and a session once it has expired', async () => {
    const s = await start({ sessionHours: 0.0005 }) // 1.8 s
    await expectCode(await get(s, '/api/devices', cookie('A'.repeat(43))), 401, 'E_NOT_AUTHENTICATED')
    await expectCode(await get(s, '/api/devices', { cookie: `other=1; ${SESSION_COOKIE}=forged; x=y` }), 401, 'E_NOT_AUTHENTICATED')

    const res = await login(s, 'vic', PASSWORD.vic)
    expect(res.headers.get('set-cookie')).toMatch(/Max-Age=1(;|$)/)
    const id = /=([^;]+)/.exec(res.headers.get('set-cookie')!)![1]!
    expect((await get(s, '/api/devices', cookie(id))).status).toBe(200)
    const expiredAt = await within(6000, 'the session to expire', (async () => {
      for (;;) {
        await new Promise((resolve) => setTimeout(resolve, 200))
        const r = await get(s, '/api/devices', cookie(id))
        if (r.status !== 200) return r
      }
    })())
    await expectCode(expiredAt, 401, 'E_NOT_AUTHENTICATED')
    // and the handshake does not take it either
    const live = await open(s, LIVE_NAMESPACE, {}, cookie(id))
    expect('refused' in live && live.refused.data?.code).toBe('E_NOT_AUTHENTICATED')
    await stillServes(s)
  })

  it('ends a session at logout', async () => {
    const s = await start()
    const id = await session(s, 'bob')
    expect((await get(s, '/api/devices', cookie(id))).status).toBe(200)
    const out = await fetch(`${s.httpUrl}/api/logout`, { method: 'POST', headers: cookie(id) })
    expect(out.status).toBe(204)
    expect(out.headers.get('set-cookie')).toMatch(new RegExp(`^${SESSION_COOKIE}=; .*Max-Age=0`))
    await expectCode(await get(s, '/api/devices', cookie(id)), 401, 'E_NOT_AUTHENTICATED')
    await stillServes(s)
  })

  it('takes a bearer token from `pulseboard tokens create`, and refuses a wrong one', async () => {
    const s = await start()
    expect((await get(s, '/api/devices', bearer(viewerToken))).status).toBe(200)
    expect(await (await get(s, '/api/session', bearer(viewerToken))).json()).toMatchObject({ user: 'script', role: 'viewer', rights: { read: true, send: false } })
    await expectCode(await get(s, '/api/devices', bearer(`${viewerToken.slice(0, -1)}x`)), 401, 'E_NOT_AUTHENTICATED')
    await expectCode(await get(s, '/api/devices', bearer('pbt_nobody.abc')), 401, 'E_NOT_AUTHENTICATED')
    await expectCode(await get(s, '/api/devices', bearer('not-a-token')), 401, 'E_NOT_AUTHENTICATED')
    // a revoked token stops working at the next reload
    const config = loadConfig(file)
    delete config.tokens.script
    s.app.reloadAccess(config)
    await expectCode(await get(s, '/api/devices', bearer(viewerToken)), 401, 'E_NOT_AUTHENTICATED')
    await stillServes(s)
  })

  it('lets a viewer read but not command, rename or forget: E_NOT_AUTHORIZED and 403', async () => {
    const s = await start()
    const { commands } = await deviceWithRelay(s)
    const vic = await session(s, 'vic')
    expect(((await (await get(s, '/api/devices', cookie(vic))).json()) as { id: string }[]).map((d) => d.id)).toEqual(['dev-a'])

    const live = await open(s, LIVE_NAMESPACE, {}, cookie(vic))
    if (!('socket' in live)) throw new Error(`/live refused the viewer's session: ${live.refused.message}`)
    const viewer = live.socket as LiveClient
    expect(await viewer.emitWithAck('command', { device: 'dev-a', name: 'relay', value: true })).toMatchObject({ ok: false, error: { code: 'E_NOT_AUTHORIZED' } })
    expect(await viewer.emitWithAck('message', { topic: 'devices/dev-a/commands', payload: 'x' })).toMatchObject({ ok: false, error: { code: 'E_NOT_AUTHORIZED' } })
    expect(await viewer.emitWithAck('message', 'chat from a viewer')).toMatchObject({ ok: false, error: { code: 'E_NOT_AUTHORIZED' } })

    const json = { ...cookie(vic), 'content-type': 'application/json' }
    await expectCode(await fetch(`${s.httpUrl}/api/devices/dev-a`, { method: 'PATCH', headers: json, body: JSON.stringify({ name: 'Renamed' }) }), 403, 'E_NOT_AUTHORIZED')
    await expectCode(await fetch(`${s.httpUrl}/api/devices/dev-a`, { method: 'DELETE', headers: cookie(vic) }), 403, 'E_NOT_AUTHORIZED')
    await expectCode(await fetch(`${s.httpUrl}/api/devices/dev-a`, { method: 'DELETE', headers: bearer(viewerToken) }), 403, 'E_NOT_AUTHORIZED')
    expect(s.app.registry.get('dev-a')?.name).toBe('dev-a')

    // an operator may, and the device gets the command
    const op = await open(s, LIVE_NAMESPACE, { token: operatorToken })
    if (!('socket' in op)) throw new Error('/live refused the operator')
    expect(await (op.socket as LiveClient).emitWithAck('command', { device: 'dev-a', name: 'relay', value: true })).toMatchObject({ ok: true })
    await commands.until('the command at the device', (v) => v.length > 0)
    expect(commands.values).toHaveLength(1)
    const bob = await session(s, 'bob')
    const renamed = await fetch(`${s.httpUrl}/api/devices/dev-a`, { method: 'PATCH', headers: { ...cookie(bob), 'content-type': 'application/json' }, body: JSON.stringify({ name: 'Kitchen' }) })
    expect(renamed.status).toBe(200)
    expect(s.app.registry.get('dev-a')?.name).toBe('Kitchen')
    await stillServes(s)
  })

  it('backs off after three failed logins: 429 with Retry-After, for MQTT connects too, then lets the right password in', async () => {
    const s = await start()
    // three failures are free, the fourth starts a wait of a second
    for (let i = 0; i < 4; i++) await expectCode(await login(s, 'bob', `guess-${i}`), 401, 'E_NOT_AUTHENTICATED')
    const limited = await login(s, 'bob', PASSWORD.bob)
    expect(limited.status).toBe(429)
    expect(limited.headers.get('retry-after')).toBe('1')
    expect(((await limited.json()) as { error: { code: string; message: string } }).error).toMatchObject({ code: 'E_LIMIT_REACHED', message: expect.stringMatching(/too many failed logins/) })
    // the same address, over MQTT, with the right password: CONNACK 5 while it lasts
    const client = mqtt.connect(s.mqttUrl, { reconnectPeriod: 0, username: 'alice', password: PASSWORD.alice })
    const code = await within(5000, 'the MQTT connect to be refused', new Promise<number>((resolve, reject) => {
      client.once('connect', () => reject(new Error('connected during the back-off')))
      client.once('error', (err) => resolve((err as Error & { code: number }).code))
    }))
    await client.endAsync(true)
    expect(code).toBe(5)
    // after Retry-After, the right password works
    await new Promise((resolve) => setTimeout(resolve, 1100))
    expect((await login(s, 'bob', PASSWORD.bob)).status).toBe(200)
    await stillServes(s)
  })
})

describe('the socket.io handshakes with users', () => {
  it('refuses /live and / without a session or token, with connect_error data.code E_NOT_AUTHENTICATED', async () => {
    const s = await start()
    for (const namespace of [LIVE_NAMESPACE, '/']) {
      const opened = await open(s, namespace)
      if (!('refused' in opened)) throw new Error(`${namespace} let an anonymous socket in`)
      expect(opened.refused.data?.code).toBe('E_NOT_AUTHENTICATED')
    }
    const wrong = await open(s, LIVE_NAMESPACE, { token: 'pbt_script.wrong' })
    expect('refused' in wrong && wrong.refused.data?.code).toBe('E_NOT_AUTHENTICATED')
    // a token that is not even a string: refused as such, not an internal error
    for (const token of [42, { name: 'script' }, ['pbt_script.x']]) {
      const odd = await open(s, LIVE_NAMESPACE, { token } as unknown as LiveAuth)
      expect('refused' in odd && [odd.refused.data?.code, odd.refused.message]).toEqual(['E_NOT_AUTHENTICATED', expect.stringMatching(/^auth\.token must be a string/)])
    }
    expect(s.app.bridge.live.sockets.size + s.app.bridge.chat.sockets.size).toBe(0)
    await stillServes(s)
  })

  it('lets a token or a session in, and a viewer receives what devices publish', async () => {
    const s = await start()
    const byToken = await open(s, LIVE_NAMESPACE, { token: viewerToken })
    const bySession = await open(s, LIVE_NAMESPACE, {}, cookie(await session(s, 'vic')))
    if (!('socket' in byToken) || !('socket' in bySession)) throw new Error('a good key was refused')
    const got = new Promise((resolve) => (byToken.socket as LiveClient).on('message', resolve))
    const device = await s.mqtt({ username: 'dev-a', password: PASSWORD['dev-a'], clientId: 'dev-a' })
    await device.publishAsync('devices/dev-a/telemetry', '22', { qos: 1 })
    expect(await within(5000, 'the viewer to receive the reading', got)).toMatchObject({ topic: 'devices/dev-a/telemetry', payload: '22' })
    await stillServes(s)
  })

  it('refuses a /live view the principal may not read with E_NOT_AUTHORIZED', async () => {
    const s = await start({ roles: { viewer: [{ access: 'read', topic: 'devices/dev-a/#' }] } })
    const refused = await open(s, LIVE_NAMESPACE, { token: viewerToken, view: { filters: ['devices/#'] } })
    expect('refused' in refused && refused.refused.data?.code).toBe('E_NOT_AUTHORIZED')
    // the default view is everything: refused too
    const everything = await open(s, LIVE_NAMESPACE, { token: viewerToken })
    expect('refused' in everything && everything.refused.data?.code).toBe('E_NOT_AUTHORIZED')
    const allowed = await open(s, LIVE_NAMESPACE, { token: viewerToken, view: { filters: ['devices/dev-a/#'] } })
    if (!('socket' in allowed)) throw new Error(`a readable view was refused: ${allowed.refused.message}`)
    expect(await (allowed.socket as LiveClient).emitWithAck('subscribe', ['devices/+/telemetry'])).toMatchObject({ ok: false, error: { code: 'E_NOT_AUTHORIZED' } })
    await stillServes(s)
  })
})

describe('without users', () => {
  it('stays open: /api, /metrics, the full health report and both namespaces, without a key', async () => {
    stack = await startStack()
    const s = stack
    expect((await get(s, '/api/devices')).status).toBe(200)
    expect((await get(s, '/metrics')).status).toBe(200)
    expect(await (await get(s, '/api/health')).json()).toMatchObject({ status: 'ok', mqtt: { deniedPublishes: 0 } })
    expect(await (await get(s, '/api/session')).json()).toMatchObject({ required: false, rights: { read: true, send: true, manage: true } })
    for (const namespace of [LIVE_NAMESPACE, '/']) {
      const opened = await open(s, namespace)
      if (!('socket' in opened)) throw new Error(`${namespace} refused a client on an open server: ${opened.refused.message}`)
    }
    await expectCode(await login(s, 'alice', PASSWORD.alice), 400, 'E_INVALID_REQUEST')
  })
})

describe('what the bridge sends whom', () => {
  it('refuses / to a principal that may not read every topic: it carries all of them, unfiltered', async () => {
    // a role that may read the chat topic, and nothing else
    const s = await start({ anonymous: { role: 'viewer' }, roles: { viewer: [{ access: 'read', topic: 'messages' }] } })
    const chat = await open(s, '/')
    if ('socket' in chat) throw new Error('/ let in a principal that may read only the chat topic')
    expect(chat.refused.data?.code).toBe('E_NOT_AUTHORIZED')
    const ops = await open(s, '/', { token: operatorToken })
    if (!('socket' in ops)) throw new Error('/ refused the operator')
    const texts: string[] = []
    ops.socket.on('message', (text: string) => texts.push(text))
    await (ops.socket as LiveClient).emitWithAck('message', 'chat for everyone')
    await within(5000, 'the chat line', (async () => {
      while (!texts.includes('chat for everyone')) await new Promise((resolve) => setTimeout(resolve, 20))
    })())
  })

  it('disconnects a /live socket whose token is revoked, and it stays out', async () => {
    const s = await start()
    const live = await open(s, LIVE_NAMESPACE, { token: viewerToken })
    if (!('socket' in live)) throw new Error('/live refused the viewer token')
    const payloads: string[] = []
    live.socket.on('message', (e: { payload: string }) => payloads.push(e.payload))
    const config = loadConfig(file)
    delete config.tokens.script
    s.app.reloadAccess(config)
    const ops = await open(s, LIVE_NAMESPACE, { token: operatorToken })
    if (!('socket' in ops)) throw new Error('/live refused the operator')
    const opsGot = new Promise((resolve) => ops.socket.once('message', resolve))
    await (ops.socket as LiveClient).emitWithAck('message', { topic: 'devices/dev-a/telemetry', payload: 'after the revocation', qos: 1 })
    await within(5000, 'the operator to receive it', opsGot)
    expect({ connected: live.socket.connected, payloads }).toEqual({ connected: false, payloads: [] })
  })
})
