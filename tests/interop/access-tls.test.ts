import { X509Certificate } from 'node:crypto'
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import https from 'node:https'
import { tmpdir } from 'node:os'
import path from 'node:path'
import tls from 'node:tls'
import mqtt, { type MqttClient } from 'mqtt'
import { chromium, type Browser } from 'playwright-core'
import { io as connectSocket } from 'socket.io-client'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { emptyConfig, saveConfig, type AccessConfig } from '../../auth/config.ts'
import { LIVE_NAMESPACE } from '../../protocol/index.ts'
import { createPulseboard, type Pulseboard } from '../../server/pulseboard.ts'
import { mqttMessages, within } from '../helpers/stack.ts'
import { killAll, pulseboard, run } from '../helpers/process.ts'
import { quickHash } from '../helpers/secrets.ts'

/** TLS: `pulseboard cert`, MQTT over TLS with mosquitto_pub, HTTPS with Node and Chromium, and SIGHUP reloading the certificate. */

const ALICE = 'alice-pass-1'
const TOKEN = 'pbt_ops.ops-secret-1'
const config = (change: Partial<AccessConfig> = {}): AccessConfig => ({
  ...emptyConfig(),
  users: { alice: { role: 'admin', password: quickHash(ALICE) } },
  tokens: { ops: { role: 'operator', secret: quickHash('ops-secret-1') } },
  ...change,
})

let dir: string
/** Two pairs from `pulseboard cert`: the server starts with `first`, SIGHUP moves it to `second`. */
const pair = (name: 'first' | 'second') => ({ certFile: path.join(dir, name, 'cert.pem'), keyFile: path.join(dir, name, 'key.pem') })
const fingerprint = (certFile: string) => new X509Certificate(readFileSync(certFile)).fingerprint256

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'pulseboard-access-tls-'))
  const made = ['first', 'second'].map((name) => pulseboard(['cert', '--out', path.join(dir, name)]))
  for (const child of made) expect(await child.exited).toBe(0)
  expect(made[0]!.stdout.values[0]).toMatch(/^wrote .*cert\.pem and .*key\.pem, valid 365 days for localhost, 127\.0\.0\.1, ::1/)
  expect(fingerprint(pair('first').certFile)).not.toBe(fingerprint(pair('second').certFile))
}, 60_000)
afterAll(() => rmSync(dir, { recursive: true, force: true }))

let app: Pulseboard | undefined
const clients: MqttClient[] = []
afterEach(async () => {
  await killAll()
  await Promise.all(clients.splice(0).map((c) => c.endAsync(true)))
  await app?.close()
  app = undefined
})

/** The whole server with TLS, on free ports of 127.0.0.1. */
async function startTls(access: AccessConfig = config()) {
  app = await createPulseboard({ mqttPort: 0, port: 0, mqttsPort: 0, host: '127.0.0.1', tls: pair('first'), access })
  const ports = await app.listen()
  return { ...ports, mqttsPort: ports.mqttsPort!, httpsUrl: `https://127.0.0.1:${ports.port}` }
}

async function connectMqtt(url: string, opts: mqtt.IClientOptions): Promise<MqttClient> {
  const client = mqtt.connect(url, { reconnectPeriod: 0, connectTimeout: 5000, ...opts })
  clients.push(client)
  await within(5000, `MQTT client to connect to ${url}`, new Promise((resolve, reject) => {
    client.once('connect', resolve)
    client.once('error', reject)
  }))
  return client
}

/** GET over HTTPS, trusting `ca`: Node 20's fetch takes no CA of its own (undici's Agent is not exposed), https.request does. */
function httpsGet(url: string, ca: Buffer, headers: Record<string, string> = {}): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  return within(5000, `GET ${url}`, new Promise((resolve, reject) => {
    https
      .get(url, { ca, headers }, (res) => {
        let body = ''
        res.setEncoding('utf8')
        res.on('data', (chunk: string) => (body += chunk))
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }))
      })
      .on('error', reject)
  }))
}

/** The certificate a new TLS connection to `port` is shown. */
function presented(port: number): Promise<string> {
  return within(5000, `a TLS handshake on port ${port}`, new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => {
      resolve(socket.getPeerX509Certificate()!.fingerprint256)
      socket.end()
    })
    socket.on('error', reject)
  }))
}

describe('pulseboard cert', () => {
  it('writes a key only its owner may read, also when --force replaces one', { timeout: 60_000 }, async () => {
    const out = path.join(dir, 'forced')
    const first = pulseboard(['cert', '--out', out, '--name', 'pulseboard.test'])
    expect(await first.exited).toBe(0)
    expect(statSync(path.join(out, 'key.pem')).mode & 0o777).toBe(0o600)
    const again = pulseboard(['cert', '--out', out])
    expect(await again.exited).toBe(1)
    expect(again.stderr.values.join('\n')).toMatch(/already has cert\.pem or key\.pem; pass --force/)
    writeFileSync(path.join(out, 'key.pem'), 'old', { mode: 0o644 })
    const forced = pulseboard(['cert', '--out', out, '--force'])
    expect(await forced.exited).toBe(0)
    expect(statSync(path.join(out, 'key.pem')).mode & 0o777).toBe(0o600)
    expect(new X509Certificate(readFileSync(path.join(out, 'cert.pem'))).subjectAltName).toMatch(/DNS:localhost, IP Address:127\.0\.0\.1/)
  })
})

describe('MQTT over TLS', () => {
  it('takes mosquitto_pub with --cafile; a client that does not trust the certificate fails its handshake, and the server keeps serving', async () => {
    const { mqttsPort, mqttPort } = await startTls()
    const ca = readFileSync(pair('first').certFile)
    const watcher = await connectMqtt(`mqtts://127.0.0.1:${mqttsPort}`, { ca, username: 'alice', password: ALICE })
    await watcher.subscribeAsync('devices/#', { qos: 1 })
    const seen = mqttMessages(watcher)
    const pub = (args: string[]) => run('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(mqttsPort), '-u', 'alice', '-P', ALICE, '-q', '1', ...args])

    const trusted = pub(['--cafile', pair('first').certFile, '-t', 'devices/tls/telemetry', '-m', 'over tls'])
    expect(await within(5000, 'mosquitto_pub to exit', trusted.exited)).toBe(0)
    await seen.until('the publish over TLS', (v) => v.some((m) => m.payload === 'over tls'))

    // the system's CAs do not include a self-signed certificate: the handshake fails
    // (libmosquitto reports it as MOSQ_ERR_TLS, 8, or, when it fails within connect(), as exit 1 "Unable to connect (A TLS error occurred.)")
    const tlsFailure = async (child: ReturnType<typeof pub>) => {
      const code = await within(5000, 'mosquitto_pub to exit', child.exited)
      return { failed: code === 8 || code === 1, tls: child.stderr.values.some((l) => l.includes('A TLS error occurred.')) }
    }
    expect(await tlsFailure(pub(['--capath', '/etc/ssl/certs', '-t', 'devices/tls/telemetry', '-m', 'untrusted']))).toEqual({ failed: true, tls: true })
    // another CA than the server's: refused too (the second pair's certificate)
    expect(await tlsFailure(pub(['--cafile', pair('second').certFile, '-t', 'devices/tls/telemetry', '-m', 'wrong ca']))).toEqual({ failed: true, tls: true })
    // without TLS at all, the TLS port answers nothing an MQTT client understands
    const plain = pub(['-t', 'devices/tls/telemetry', '-m', 'plain'])
    expect(await within(5000, 'mosquitto_pub to exit', plain.exited)).not.toBe(0)
    expect(plain.stderr.values.join('\n')).toMatch(/The connection was lost|Unable to connect/)

    // still serving: TLS, and plain MQTT on its own port
    const again = pub(['--cafile', pair('first').certFile, '-t', 'devices/tls/telemetry', '-m', 'still here'])
    expect(await within(5000, 'mosquitto_pub to exit', again.exited)).toBe(0)
    const onPlainPort = run('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(mqttPort), '-u', 'alice', '-P', ALICE, '-q', '1', '-t', 'devices/tls/telemetry', '-m', 'plain port'])
    expect(await within(5000, 'mosquitto_pub to exit', onPlainPort.exited)).toBe(0)
    await seen.until('the later publishes', (v) => v.some((m) => m.payload === 'plain port') && v.some((m) => m.payload === 'still here'))
    expect(seen.values.map((m) => m.payload).sort()).toEqual(['over tls', 'plain port', 'still here'])
  })
})

describe('HTTPS', () => {
  it('serves the API with the CA, with HSTS and a Secure session cookie; refuses a client without it', async () => {
    const { httpsUrl, port } = await startTls()
    const ca = readFileSync(pair('first').certFile)
    // Node's fetch does not trust a self-signed certificate
    const refused = await fetch(`${httpsUrl}/api/health`).then(
      () => null,
      (err: Error & { cause?: { code?: string } }) => err.cause?.code,
    )
    expect(refused).toBe('DEPTH_ZERO_SELF_SIGNED_CERT')

    const health = await httpsGet(`${httpsUrl}/api/health`, ca, { authorization: `Bearer ${TOKEN}` })
    expect(health.status).toBe(200)
    expect(JSON.parse(health.body)).toMatchObject({ status: 'ok', mqtt: { clients: 0 } })
    expect(health.headers['strict-transport-security']).toBe('max-age=15552000; includeSubDomains')

    const login = await within(5000, 'the login over HTTPS', new Promise<{ status: number; cookie: string }>((resolve, reject) => {
      const req = https.request(`${httpsUrl}/api/login`, { method: 'POST', ca, headers: { 'content-type': 'application/json' } }, (res) => {
        res.resume()
        resolve({ status: res.statusCode ?? 0, cookie: String(res.headers['set-cookie']) })
      })
      req.on('error', reject)
      req.end(JSON.stringify({ user: 'alice', password: ALICE }))
    }))
    expect(login.status).toBe(200)
    expect(login.cookie).toMatch(/; HttpOnly; SameSite=Strict; Max-Age=\d+; Secure$/)
    const session = /pulseboard_session=([^;]+)/.exec(login.cookie)![1]!
    expect((await httpsGet(`${httpsUrl}/api/devices`, ca, { cookie: `pulseboard_session=${session}` })).status).toBe(200)

    // socket.io over wss, with the CA and a token
    const socket = connectSocket(`${httpsUrl}${LIVE_NAMESPACE}`, { transports: ['websocket'], reconnection: false, ca: ca.toString(), auth: { token: TOKEN } })
    try {
      await within(5000, '/live over wss', new Promise((resolve, reject) => {
        socket.once('connect', () => resolve(null))
        socket.once('connect_error', reject)
      }))
      expect(await socket.emitWithAck('message', 'over wss')).toMatchObject({ ok: true })
    } finally {
      socket.disconnect()
    }
    expect(await presented(port)).toBe(fingerprint(pair('first').certFile))
  })

  it('loads the dashboard over HTTPS in headless Chromium, and logs in through its form', { timeout: 40_000 }, async () => {
    const { httpsUrl } = await startTls()
    let browser: Browser | undefined
    try {
      browser = await chromium.launch({
        executablePath: '/usr/bin/chromium',
        args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      })
      const context = await browser.newContext({ ignoreHTTPSErrors: true })
      const page = await context.newPage()
      const errors: string[] = []
      page.on('pageerror', (err) => errors.push(err.message))
      const response = await page.goto(`${httpsUrl}/`)
      expect(response?.status()).toBe(200)
      expect(response?.url()).toBe(`${httpsUrl}/`)
      // the server has users: the login form first
      const form = page.getByTestId('login-form')
      await form.waitFor({ timeout: 10_000 })
      await form.locator('input[name=user]').fill('alice')
      await form.locator('input[name=password]').fill('wrong-password')
      await form.locator('button[type=submit]').click()
      await form.getByRole('alert').waitFor({ timeout: 5000 })
      await form.locator('input[name=password]').fill(ALICE)
      await form.locator('button[type=submit]').click()
      // then the header says Live once /live is connected, over wss
      await page.getByText('Live', { exact: true }).waitFor({ timeout: 10_000 })
      const [cookie] = await context.cookies()
      expect(cookie).toMatchObject({ name: 'pulseboard_session', httpOnly: true, secure: true, sameSite: 'Strict' })
      // a script on the page cannot read it
      expect(await page.evaluate(() => document.cookie)).toBe('')
      expect(errors).toEqual([])
    } finally {
      await browser?.close()
    }
  })
})

describe('SIGHUP', () => {
  it('makes a running `pulseboard start` read the certificate again: new connections see the new one, open ones carry on', { timeout: 60_000 }, async () => {
    const live = path.join(dir, 'live')
    const files = { certFile: path.join(live, 'cert.pem'), keyFile: path.join(live, 'key.pem') }
    mkdirSync(live, { recursive: true })
    copyFileSync(pair('first').certFile, files.certFile)
    copyFileSync(pair('first').keyFile, files.keyFile)
    const configFile = path.join(live, 'pulseboard.json')
    saveConfig(configFile, config())

    const server = pulseboard([
      'start', '--host', '127.0.0.1', '--port', '0', '--mqtt-port', '0', '--mqtts-port', '0', '--no-store',
      '--tls-cert', files.certFile, '--tls-key', files.keyFile, '--config', configFile,
    ])
    const banner = await server.stdout.until('the banner', (l) => l.some((line) => line.includes('Press Ctrl-C to stop.')), 30_000)
    const portOf = (label: string, scheme: string) => Number(new RegExp(`${label}\\s+${scheme}://127\\.0\\.0\\.1:(\\d+)`).exec(banner.join('\n'))![1])
    const httpsPort = portOf('Dashboard', 'https')
    const mqttsPort = portOf('MQTT over TLS', 'mqtts')
    expect(await presented(mqttsPort)).toBe(fingerprint(pair('first').certFile))
    expect(await presented(httpsPort)).toBe(fingerprint(pair('first').certFile))
    const open = await connectMqtt(`mqtts://127.0.0.1:${mqttsPort}`, { ca: readFileSync(pair('first').certFile), username: 'alice', password: ALICE })

    // certbot's deploy hook: the files are replaced, then the server is told
    copyFileSync(pair('second').certFile, files.certFile)
    copyFileSync(pair('second').keyFile, files.keyFile)
    const reloaded = server.stdout.until('the reload log line', (l) => l.some((line) => line.includes('SIGHUP: certificate reloaded')), 5000)
    server.process.kill('SIGHUP')
    await reloaded

    expect(await presented(mqttsPort)).toBe(fingerprint(pair('second').certFile))
    expect(await presented(httpsPort)).toBe(fingerprint(pair('second').certFile))
    const health = await httpsGet(`https://127.0.0.1:${httpsPort}/api/health`, readFileSync(pair('second').certFile))
    expect(health.status).toBe(200)
    // the connection made before still works, with the old certificate
    await open.subscribeAsync('devices/sighup/#', { qos: 1 })
    const got = new Promise<string>((resolve) => open.on('message', (_t, p) => resolve(p.toString())))
    await open.publishAsync('devices/sighup/x', 'after reload', { qos: 1 })
    expect(await within(5000, 'the old connection to carry on', got)).toBe('after reload')

    // a broken pair is logged and the certificate stays
    writeFileSync(files.keyFile, 'not a key')
    const kept = server.stdout.until('the error line', (l) => l.some((line) => line.includes('keeping the certificate loaded before')), 5000)
    server.process.kill('SIGHUP')
    await kept
    expect(await presented(mqttsPort)).toBe(fingerprint(pair('second').certFile))

    await open.endAsync()
    expect(await within(10_000, 'pulseboard start to stop', server.kill())).toBe(0)
  })
})
