import { execFileSync } from 'node:child_process'
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { freePort } from '../../bench/mosquitto.ts'
import { BrokerConnectError } from '../../bridge/external.ts'
import { cleanUp, client, external, healthBroker, mosquitto, received, stack, subacks, subscribed, watch } from '../helpers/external.ts'
import { pulseboard } from '../helpers/process.ts'
import { envelopes, within } from '../helpers/stack.ts'

// External mode (`--broker`) on Debian's mosquitto 2.0, one broker per test: a broker restart,
// the one-line errors of a refused or unreachable broker, TLS with a private CA, and commands to
// MQTT 5 devices as requests.

afterEach(cleanUp)

describe('a broker restart', () => {
  it('shows the outage on /live and in /api/health, then reconnects and resubscribes', async () => {
    const broker = await mosquitto()
    const s = await external(broker)
    const { live, statuses } = await watch(s)
    const seen = envelopes(live)
    await statuses.until('the status on connect', (v) => v.length >= 1)
    expect(statuses.values[0]).toMatchObject({ mode: 'external', url: broker.url, connected: true, protocolVersion: 5 })
    const before = subacks(broker, 'pulseboard-')

    const stoppedAt = Date.now()
    await broker.stop()
    await statuses.until('connected: false on /live', (v) => v.some((st) => !st.connected))
    const down = await healthBroker(s)
    expect(down).toMatchObject({ mode: 'external', connected: false })
    expect(down.error).toEqual(expect.any(String))
    // what a socket client publishes meanwhile is refused, not lost quietly
    const refused = await within(5000, 'the ack', live.emitWithAck('message', { topic: 'ext/during', payload: 'x' }))
    expect(refused).toMatchObject({ ok: false, error: { code: 'E_BROKER_UNAVAILABLE' } })

    await broker.start()
    // the first retry comes after about 1 s, the next 2 s later
    await statuses.until('connected: true again on /live', (v) => v.at(-1)?.connected === true && v.some((st) => !st.connected), 8000)
    await subscribed(broker, 'pulseboard-', before + 1)
    expect(Date.now() - stoppedAt).toBeLessThan(8000)
    // each change once, in order: up, down, up
    expect(statuses.values.map((st) => st.connected).filter((c, i, all) => i === 0 || c !== all[i - 1])).toEqual([true, false, true])

    const device = await client(broker.url, { protocolVersion: 5, clientId: 'after-restart' })
    await device.publishAsync('devices/r/telemetry', '{"temperature":22}', { qos: 1 })
    await seen.until('the publish after the restart on /live', (v) => v.some((e) => e.topic === 'devices/r/telemetry'))
    const up = await healthBroker(s)
    expect(up).toMatchObject({ mode: 'external', connected: true, protocolVersion: 5 })
    expect(up).not.toHaveProperty('error')
    expect(up.since).toBeGreaterThan(stoppedAt)
  })
})

describe('a broker that refuses or is not there', () => {
  /** `pulseboard start` as a user runs it, until it exits; what it printed, if it does not. */
  async function startFails(args: string[]): Promise<string[]> {
    const child = pulseboard(['start', ...args, '--no-store', '-p', '0', '--host', '127.0.0.1'])
    const code = await within(25_000, 'pulseboard start to exit', child.exited).catch((err: Error) => {
      throw new Error(`${err.message}; it printed: ${[...child.stdout.values, ...child.stderr.values].join('\n')}`)
    })
    expect(code, child.stderr.values.join('\n')).toBe(1)
    return child.stderr.values
  }

  it('wrong credentials, or nobody listening: `pulseboard start` exits 1 with one line naming --broker and why', async () => {
    const broker = await mosquitto({ users: { u: 'right-password' } })
    const nobody = await freePort()
    // both at once: each start is a few seconds of loading
    const [refused, unreachable] = await Promise.all([
      startFails(['--broker', broker.url, '--broker-username', 'u', '--broker-password', 'wrong']),
      startFails(['--broker', `mqtt://127.0.0.1:${nobody}`]),
    ])

    expect(refused).toHaveLength(1)
    expect(refused[0]).toMatch(/^pulseboard start: --broker: /)
    expect(refused[0]).toContain(`${broker.url} refused the login: bad user name or password`)
    expect(refused[0]).not.toContain('wrong')
    // mosquitto refuses a wrong password with "not authorized" (0x87), which the line explains as a bad user name or password
    expect(broker.log()).toMatch(/Sending CONNACK to 127\.0\.0\.1 \(0, 135\)\n.*Client <unknown> disconnected, not authorised\./)

    expect(unreachable).toEqual([
      `pulseboard start: --broker: cannot reach mqtt://127.0.0.1:${nobody}: connection refused; is the broker running, and is --broker right?`,
    ])
  }, 30_000)
})

describe('TLS with a private CA', () => {
  let dir: string
  const file = (name: string) => path.join(dir, name)
  beforeAll(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'pulseboard-external-tls-'))
    const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' })
    const p256 = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes']
    openssl('req', '-x509', ...p256, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=Pulseboard test CA',
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign')
    openssl('req', ...p256, '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=localhost')
    writeFileSync(file('server.ext'), 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n')
    openssl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.pem', '-days', '2', '-extfile', 'server.ext')
    // mosquitto, started as root, reads them as the `mosquitto` user
    chmodSync(dir, 0o755)
    for (const name of readdirSync(dir)) chmodSync(file(name), 0o644)
  })
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  it('connects over mqtts:// with the CA, and messages flow', async () => {
    const broker = await mosquitto({ tls: { certFile: file('server.pem'), keyFile: file('server.key') } })
    const url = `mqtts://localhost:${broker.tlsPort}`
    const s = await stack({ externalBroker: { url, ca: readFileSync(file('ca.pem')) } })
    await subscribed(broker, 'pulseboard-')
    // it came in on the TLS listener
    expect(broker.log()).toMatch(new RegExp(`New connection from 127\\.0\\.0\\.1:\\d+ on port ${broker.tlsPort}\\.`))
    expect(await healthBroker(s)).toMatchObject({ url, connected: true, protocolVersion: 5 })

    const live = await s.live()
    const seen = envelopes(live)
    // a device on the plain listener, Pulseboard on the TLS one
    const device = await client(broker.url, { protocolVersion: 5, clientId: 'tls-device' })
    await device.publishAsync('devices/tls/telemetry', '{"temperature":18}', { qos: 1, properties: { contentType: 'application/json' } })
    const found = await seen.until('the publish on /live', (v) => v.length >= 1)
    expect(found[0]).toMatchObject({ topic: 'devices/tls/telemetry', payload: '{"temperature":18}', properties: { contentType: 'application/json' } })

    // and back: a socket publish reaches a subscriber through the TLS connection
    const watcher = await client(broker.url, { clientId: 'tls-watch' })
    const heard = received(watcher)
    await watcher.subscribeAsync('ext/tls')
    expect(await within(5000, 'the ack', live.emitWithAck('message', { topic: 'ext/tls', payload: 'over tls' }))).toEqual({ ok: true })
    await heard.until('the socket publish at the subscriber', (v) => v.some((m) => m.payload === 'over tls'))
  })

  it('without the CA, start fails saying the certificate is not trusted and to give --broker-ca', async () => {
    const broker = await mosquitto({ tls: { certFile: file('server.pem'), keyFile: file('server.key') } })
    const started = stack({ externalBroker: { url: `mqtts://localhost:${broker.tlsPort}` } })
    await expect(started).rejects.toBeInstanceOf(BrokerConnectError)
    await expect(started).rejects.toThrow(/^mqtts:\/\/localhost:\d+: its TLS certificate is not trusted \(.+\); give its CA with --broker-ca$/)
  })
})

describe('commands to MQTT 5 devices go as requests', () => {
  it('to `pulseboard simulate --mqtt 5`: the ack carries the device\'s reply', async () => {
    const broker = await mosquitto()
    const s = await external(broker)
    const { live, devices } = await watch(s)
    pulseboard(['simulate', '--mqtt', '5', '--url', broker.url, '--devices', '1', '--interval', '200ms'])
    await devices.until('sim-generic-1 with mqtt5', (v) => v.some((d) => d.id === 'sim-generic-1' && d.mqtt5 === true), 20_000)

    const watcher = await client(broker.url, { protocolVersion: 5, clientId: 'cmd-watch' })
    const requests = received(watcher)
    await watcher.subscribeAsync('devices/sim-generic-1/commands', { qos: 1 })

    const ack = await within(5000, 'the command ack', live.emitWithAck('command', { device: 'sim-generic-1', name: 'relay', value: true }))
    expect(ack).toMatchObject({ ok: true, topic: 'devices/sim-generic-1/commands', payload: '{"name":"relay","value":true}' })
    if (!ack.ok) return
    expect(ack.reply).toBeDefined()
    expect(ack.reply!.topic).toMatch(/^pulseboard\/replies\/pulseboard-/)
    expect(JSON.parse(ack.reply!.payload)).toEqual({ ok: true, name: 'relay', value: true })
    // it went as an MQTT 5 request, and the answer carries its correlation data back
    const request = (await requests.until('the request on the command topic', (v) => v.length >= 1))[0]!
    expect(request.properties?.responseTopic).toBe(ack.reply!.topic)
    expect(ack.reply!.properties?.correlationData).toBe(request.properties!.correlationData!.toString('base64'))
    expect(ack.reply!.properties).toMatchObject({ contentType: 'application/json' })
  }, 30_000)

  it('to an MQTT 5 device that never answers: E_DEVICE_TIMEOUT', async () => {
    const broker = await mosquitto()
    const s = await external(broker, { commandTimeoutMs: 500 })
    const { live, devices } = await watch(s)

    // a device that publishes with a property, and ignores what it is sent
    const quiet = await client(broker.url, { protocolVersion: 5, clientId: 'quiet' })
    const requests = received(quiet)
    await quiet.subscribeAsync('devices/quiet/commands', { qos: 1 })
    await quiet.publishAsync('devices/quiet/telemetry', '{"temperature":20}', { qos: 1, properties: { userProperties: { model: 'mute' } } })
    await devices.until('quiet with mqtt5', (v) => v.some((d) => d.id === 'quiet' && d.mqtt5 === true))

    const started = Date.now()
    const ack = await within(5000, 'the command ack', live.emitWithAck('command', { device: 'quiet', name: 'relay', value: true }))
    const took = Date.now() - started
    expect(ack).toMatchObject({ ok: false, error: { code: 'E_DEVICE_TIMEOUT' } })
    expect(took).toBeGreaterThanOrEqual(450)
    expect(took).toBeLessThan(3000)
    // the device got the request, with where to answer; it just did not
    const got = await requests.until('the request at the device', (v) => v.length >= 1)
    expect(got[0]).toMatchObject({ topic: 'devices/quiet/commands', payload: '{"name":"relay","value":true}' })
    expect(got[0]!.properties?.responseTopic).toMatch(/^pulseboard\/replies\//)
    expect(got[0]!.properties?.correlationData).toBeDefined()
  })
})
