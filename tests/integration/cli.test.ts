import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { afterEach, beforeEach, describe, expect, it, onTestFinished } from 'vitest'
import { envelopes, mqttMessages, startStack, within, type Stack } from '../helpers/stack.ts'
import { killAll, pulseboard } from '../helpers/process.ts'
import type { Envelope } from '../../protocol/index.ts'

let stack: Stack
beforeEach(async () => {
  stack = await startStack()
})
afterEach(async () => {
  await killAll()
  await stack.close()
})

/** Starts `pulseboard receive` and waits until the server has its connection. */
async function receiver(args: string[] = []) {
  const connected = new Promise((resolve) => stack.app.bridge.live.once('connection', resolve))
  const child = pulseboard(['receive', '--url', stack.httpUrl, ...args])
  await within(10_000, 'pulseboard receive to connect', connected)
  return child
}

describe('pulseboard receive', () => {
  it('prints each message as the seed receiver does', async () => {
    const child = await receiver()
    const device = await stack.mqtt()
    await device.publishAsync('devices/x/telemetry', '21.5')
    const chat = await stack.chat()
    await chat.emitWithAck('message', 'chat text')

    await child.stdout.until('both lines', (l) => l.length === 2)
    expect(child.stdout.values).toEqual(['receive message : 21.5', 'receive message : chat text'])
    expect(await child.kill()).toBe(0)
  })

  it('prints NDJSON envelopes for the topics asked for', async () => {
    const child = await receiver(['--json', '--topic', 'devices/+/telemetry', '-t', 'alarm'])
    const device = await stack.mqtt({ clientId: 'dev-1' })
    for (const topic of ['other', 'devices/a/telemetry', 'devices/a/status', 'alarm']) await device.publishAsync(topic, '1')

    await child.stdout.until('two JSON lines', (l) => l.length === 2)
    const lines = child.stdout.values.map((l) => JSON.parse(l) as Envelope)
    expect(lines.map((e) => e.topic)).toEqual(['devices/a/telemetry', 'alarm'])
    expect(lines[0]).toMatchObject({ payload: '1', source: 'mqtt', clientId: 'dev-1', qos: 0, retain: false })
  })

  it('rejects a bad filter before connecting', async () => {
    const child = pulseboard(['receive', '--url', stack.httpUrl, '--topic', 'a/#/b'])
    expect(await child.exited).toBe(2)
    expect(child.stderr.values[0]).toBe('pulseboard receive: --topic "a/#/b": # must be the whole last level of a filter')
  })
})

describe('pulseboard send', () => {
  it('sends its arguments once and exits', async () => {
    const subscriber = await stack.mqtt()
    await subscriber.subscribeAsync('messages')
    const received = mqttMessages(subscriber)
    const child = pulseboard(['send', '--url', stack.httpUrl, 'hello', 'world'])
    expect(await child.exited).toBe(0)
    await received.until('the chat text over MQTT', (v) => v.length > 0)
    expect(received.values[0]).toMatchObject({ topic: 'messages', payload: 'hello world' })
  })

  it('publishes to a topic with --topic, --qos and --retain', async () => {
    const subscriber = await stack.mqtt()
    await subscriber.subscribeAsync('cmnd/plug/POWER', { qos: 1 })
    const received = mqttMessages(subscriber)
    const child = pulseboard(['send', '--url', stack.httpUrl, '--topic', 'cmnd/plug/POWER', '--qos', '1', '--retain', 'ON'])
    expect(await child.exited).toBe(0)
    await received.until('the command', (v) => v.length > 0)
    expect(received.values[0]).toEqual({ topic: 'cmnd/plug/POWER', payload: 'ON', qos: 1, retain: false })
    const late = await stack.mqtt()
    const retained = mqttMessages(late)
    await late.subscribeAsync('cmnd/plug/POWER')
    await retained.until('the retained command', (v) => v.length > 0)
    expect(retained.values[0]).toMatchObject({ payload: 'ON', retain: true })
  })

  it('prompts like the seed sender and sends each typed line', async () => {
    const subscriber = await stack.mqtt()
    await subscriber.subscribeAsync('messages')
    const received = mqttMessages(subscriber)
    const live = await stack.live()
    const seen = envelopes(live)
    const child = pulseboard(['send', '--url', stack.httpUrl])

    child.process.stdin.write('first line\n')
    await received.until('the first line', (v) => v.length === 1)
    child.process.stdin.end('second line\n')

    expect(await within(10_000, 'send to exit at end of input', child.exited)).toBe(0)
    await received.until('the second line', (v) => v.length === 2)
    expect(received.values.map((m) => m.payload)).toEqual(['first line', 'second line'])
    await seen.until('both lines on /live', (v) => v.length === 2)
    expect(child.stdout.values.join('')).toContain('message to send : ')
  })

  it('says in one line when the server cannot be reached', async () => {
    const { port } = stack
    await stack.close()
    const child = pulseboard(['send', '--url', `http://127.0.0.1:${port}`, 'x'])
    expect(await child.exited).toBe(1)
    expect(child.stderr.values).toEqual([
      `pulseboard send: cannot reach http://127.0.0.1:${port} (connect ECONNREFUSED 127.0.0.1:${port}); is "pulseboard start" running there? Use --url to point elsewhere`,
    ])
    stack = await startStack() // afterEach closes it
  })
})

describe('pulseboard usage', () => {
  it.each([['send'], ['receive'], ['start'], ['simulate'], ['bench']])('%s --help prints usage and exits 0', async (command) => {
    const child = pulseboard([command, '--help'])
    expect(await child.exited).toBe(0)
    expect(child.stdout.values[0]).toBe(`Usage: pulseboard ${command} [options]${command === 'send' ? ' [text...]' : ''}`)
  })

  it('an unknown flag prints the usage and exits 2', async () => {
    const child = pulseboard(['receive', '--nope'])
    expect(await child.exited).toBe(2)
    expect(child.stderr.values[0]).toBe("pulseboard receive: Unknown option '--nope'")
    expect(child.stderr.values).toContain('Usage: pulseboard receive [options]')
  })

  it('an unknown command prints the command list and exits 2', async () => {
    const child = pulseboard(['strat'])
    expect(await child.exited).toBe(2)
    expect(child.stderr.values[0]).toBe('pulseboard: unknown command "strat"')
  })
})

describe('pulseboard start', () => {
  it('prints where to connect and where it keeps its data, serves, and stops cleanly on SIGTERM', async () => {
    const dataDir = mkdtempSync(path.join(tmpdir(), 'pulseboard-cli-'))
    onTestFinished(() => rmSync(dataDir, { recursive: true, force: true }))
    const child = pulseboard(['start', '--port', '0', '--mqtt-port', '0', '--host', '127.0.0.1', '--data-dir', dataDir])
    await child.stdout.until('the banner', (l) => l.some((line) => line.startsWith('Press Ctrl-C')), 15_000)
    expect(child.stdout.values.find((l) => l.trim().startsWith('Data'))).toContain(path.join(dataDir, 'pulseboard.db'))
    const dashboard = child.stdout.values.find((l) => l.includes('Dashboard'))!
    const url = /http:\/\/127\.0\.0\.1:(\d+)\//.exec(dashboard)![0]
    const health = await (await fetch(`${url}api/health`)).json()
    expect(health.status).toBe('ok')
    expect(child.stdout.values.some((l) => /mqtt:\/\/127\.0\.0\.1:\d+/.test(l))).toBe(true)
    expect(await child.kill()).toBe(0)
  })

  it('names the taken port and the flag to change it', async () => {
    const child = pulseboard(['start', '--port', '0', '--mqtt-port', String(stack.mqttPort), '--no-store'])
    expect(await child.exited).toBe(1)
    expect(child.stderr.values).toEqual([
      `pulseboard start: port ${stack.mqttPort} is already in use; stop what uses it or choose another with --mqtt-port (or MQTT_PORT)`,
    ])
  })

  it('refuses a cluster on an external broker, and names the way that works', async () => {
    const child = pulseboard(['start', '--cluster', 'redis://127.0.0.1:1', '--broker', 'mqtt://127.0.0.1:1'])
    expect(await child.exited).toBe(2)
    expect(child.stderr.values[0]).toBe('pulseboard start: --cluster joins embedded brokers and does not go with --broker; for several nodes on one broker use --broker-share (docs/scale.md)')
  })

  it('rejects a bad value in the environment with one line', async () => {
    const child = pulseboard(['start'], { PORT: 'http' })
    expect(await child.exited).toBe(2)
    expect(child.stderr.values[0]).toBe('pulseboard start: --port (or PORT) must be a port number from 0 to 65535, got "http"')
  })
})
