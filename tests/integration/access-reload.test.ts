import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import mqtt, { type IClientOptions } from 'mqtt'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { emptyConfig, saveConfig } from '../../auth/config.ts'
import { hashSecret } from '../../auth/secrets.ts'
import { within } from '../helpers/stack.ts'
import { killAll, pulseboard, run, type Child } from '../helpers/process.ts'

/** A running `pulseboard start --config F` picks up what `pulseboard users|devices` write, and keeps its rules through a broken edit. */

let dir: string
let file: string
beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'pulseboard-access-reload-'))
  file = path.join(dir, 'pulseboard.json')
})
afterEach(async () => {
  await killAll()
  rmSync(dir, { recursive: true, force: true })
})

async function cli(args: string[], stdin?: string): Promise<Child> {
  const child = pulseboard([...args, '--config', file])
  if (stdin !== undefined) child.process.stdin.end(stdin)
  const code = await within(15_000, `pulseboard ${args.join(' ')}`, child.exited)
  if (code !== 0) throw new Error(`pulseboard ${args.join(' ')} exited with ${code}: ${child.stderr.values.join('\n')}`)
  return child
}

/** `pulseboard start` on free ports; its banner gives them. */
async function start(): Promise<{ server: Child; mqttPort: number; httpUrl: string }> {
  const server = pulseboard(['start', '--host', '127.0.0.1', '--port', '0', '--mqtt-port', '0', '--no-store', '--config', file])
  const banner = (await server.stdout.until('the banner', (l) => l.some((line) => line.includes('Press Ctrl-C to stop.')), 30_000)).join('\n')
  const port = (label: string, scheme: string) => Number(new RegExp(`${label}\\s+${scheme}://127\\.0\\.0\\.1:(\\d+)`).exec(banner)![1])
  return { server, mqttPort: port('MQTT', 'mqtt'), httpUrl: `http://127.0.0.1:${port('Dashboard', 'http')}` }
}

/** The CONNACK return code of one connect: 0 when it was accepted. */
async function connack(mqttPort: number, opts: IClientOptions): Promise<number> {
  const client = mqtt.connect(`mqtt://127.0.0.1:${mqttPort}`, { reconnectPeriod: 0, connectTimeout: 5000, ...opts })
  try {
    return await within(5000, 'a CONNACK', new Promise<number>((resolve) => {
      client.once('connect', () => resolve(0))
      client.once('error', (err) => resolve((err as Error & { code?: number }).code ?? -1))
    }))
  } finally {
    await client.endAsync(true)
  }
}

/** Polls until `check` holds; the config is polled once a second, so within a few seconds. */
async function eventually(what: string, check: () => Promise<boolean>, ms = 8000): Promise<void> {
  await within(ms, what, (async () => {
    while (!(await check())) await new Promise((resolve) => setTimeout(resolve, 200))
  })())
}

/** `mosquitto_pub -h … -P 'secret' …` as `pulseboard devices add` prints it, as argv. */
function argvOf(line: string): string[] {
  return [...line.trim().matchAll(/'([^']*)'|(\S+)/g)].map((m) => m[1] ?? m[2]!)
}

describe('pulseboard start --config', () => {
  it('lets in a device added with `pulseboard devices add` within seconds, shuts it out when removed, and keeps its rules through a broken edit', { timeout: 60_000 }, async () => {
    // the first user in-process (the commands are tested below); the device through the command
    saveConfig(file, { ...emptyConfig(), users: { alice: { role: 'admin', password: await hashSecret('alice-pass-1') } } })
    const { server, mqttPort, httpUrl } = await start()
    expect(server.stdout.values.join('\n')).toMatch(/Access\s+1 user, 0 devices, 0 tokens \(/)
    expect(await connack(mqttPort, { username: 'kitchen', password: 'guess', clientId: 'kitchen' })).toBe(4)

    const added = await cli(['devices', 'add', 'kitchen', '--host', '127.0.0.1', '--port', String(mqttPort)])
    const line = added.stdout.values.find((l) => l.trim().startsWith('mosquitto_pub '))!
    const argv = argvOf(line)
    const password = argv[argv.indexOf('-P') + 1]!
    expect(argv.slice(0, 5)).toEqual(['mosquitto_pub', '-h', '127.0.0.1', '-p', String(mqttPort)])

    // the file is polled once a second: the device is in within a few seconds (8 s, for a loaded machine)
    await eventually('the new device to be let in', async () => (await connack(mqttPort, { username: 'kitchen', password, clientId: 'kitchen' })) === 0)
    await server.stdout.until('the reload log line', (l) => l.some((x) => x.includes('access config reloaded') && x.includes('1 device')))
    // the line the command printed works as printed
    const pub = run(argv[0]!, [...argv.slice(1), '-q', '1'])
    expect(await within(5000, 'the printed mosquitto_pub', pub.exited)).toBe(0)

    // a typo in a role, then a file that is not JSON: each logged with the file and the field, and the rules read before stay
    const good = readFileSync(file, 'utf8')
    writeFileSync(file, good.replace('"role": "admin"', '"role": "amdin"'))
    const typo = await server.stdout.until('the error for the typo', (l) => l.some((x) => x.includes('keeping the access config read before')), 5000)
    expect(typo.find((x) => x.includes('keeping the access config read before'))).toContain(`${file}: users.alice.role must be one of`)
    writeFileSync(file, '{ "users": ')
    await server.stdout.until('the error for the broken JSON', (l) => l.some((x) => x.includes(`${file}: not valid JSON`)), 5000)
    expect(await connack(mqttPort, { username: 'alice', password: 'alice-pass-1' })).toBe(0)
    expect(await connack(mqttPort, { username: 'kitchen', password, clientId: 'kitchen' })).toBe(0)
    expect(await connack(mqttPort, {})).toBe(5)
    expect((await fetch(`${httpUrl}/api/devices`)).status).toBe(401)

    // fixed, and the device removed with the command: it is shut out again
    writeFileSync(file, good)
    await cli(['devices', 'remove', 'kitchen'])
    await eventually('the removed device to be refused', async () => (await connack(mqttPort, { username: 'kitchen', password, clientId: 'kitchen' })) === 4)
    expect(await connack(mqttPort, { username: 'alice', password: 'alice-pass-1' })).toBe(0)
  })

  it('turns access control on when `pulseboard users add` writes the first user to a running open server, and re-reads the file on SIGHUP', { timeout: 60_000 }, async () => {
    writeFileSync(file, '{}\n')
    const { server, mqttPort, httpUrl } = await start()
    expect(server.stdout.values.join('\n')).toMatch(/Access\s+open: no users/)
    expect((await fetch(`${httpUrl}/api/devices`)).status).toBe(200)
    expect(await connack(mqttPort, {})).toBe(0)

    await cli(['users', 'add', 'alice', '--password-stdin'], 'alice-pass-1\n')
    await eventually('the API to need a key', async () => (await fetch(`${httpUrl}/api/devices`)).status === 401)
    expect(await connack(mqttPort, {})).toBe(5)
    const login = await fetch(`${httpUrl}/api/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ user: 'alice', password: 'alice-pass-1' }) })
    expect(login.status).toBe(200)

    // SIGHUP reads the file at once
    const config = JSON.parse(readFileSync(file, 'utf8')) as { anonymous: { role: string | null } }
    config.anonymous.role = 'operator'
    writeFileSync(file, JSON.stringify(config))
    server.process.kill('SIGHUP')
    await server.stdout.until('the SIGHUP reload', (l) => l.some((x) => x.includes('access config reloaded') && x.includes('SIGHUP')), 5000)
    expect(await connack(mqttPort, {})).toBe(0)
    expect((await fetch(`${httpUrl}/api/devices`)).status).toBe(200)
  })
})
