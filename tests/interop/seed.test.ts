import { fileURLToPath } from 'node:url'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { startStack, within, type Stack } from '../helpers/stack.ts'
import { killAll, run } from '../helpers/process.ts'

const PYTHON = '/usr/bin/python3' // Debian's, which sees python3-socketio
const seed = (script: string) => fileURLToPath(new URL(`./seed/${script}`, import.meta.url))

let stack: Stack
beforeEach(async () => {
  stack = await startStack()
})
afterEach(async () => {
  await killAll()
  await stack.close()
})

/** Starts one of the seed's scripts against the test server, once it has connected to `/`. */
async function startSeed(script: 'sender.py' | 'receiver.py') {
  const connected = new Promise((resolve) => stack.app.bridge.chat.once('connection', resolve))
  const child = run(PYTHON, ['-u', seed('with_url.py'), stack.httpUrl, seed(script)])
  const failed = child.exited.then((code) => {
    throw new Error(`${script} exited with ${code} before connecting: ${child.stderr.values.join('\n')}`)
  })
  await within(15_000, `the seed's ${script} to connect`, Promise.race([connected, failed]))
  return child
}

describe("the seed's Python clients, unchanged, with Debian's python3-socketio", () => {
  it('receiver.py prints MQTT publishes and chat from other clients', async () => {
    const receiver = await startSeed('receiver.py')
    const device = await stack.mqtt()

    await device.publishAsync('devices/x/telemetry', '21.5')
    await receiver.stdout.until('receive message : 21.5', (l) => l.includes('receive message : 21.5'))

    const chat = await stack.chat()
    await chat.emitWithAck('message', 'from socket.io-client')
    await receiver.stdout.until('the chat line', (l) => l.includes('receive message : from socket.io-client'))
    expect(receiver.stdout.values).toEqual(['receive message : 21.5', 'receive message : from socket.io-client'])
  })

  it('sender.py reaches MQTT subscribers, socket clients and receiver.py', async () => {
    const receiver = await startSeed('receiver.py')
    const subscriber = await stack.mqtt()
    await subscriber.subscribeAsync('messages')
    const mqttText = new Promise<string>((resolve) => subscriber.on('message', (_t, p) => resolve(p.toString())))
    const sender = await startSeed('sender.py')

    sender.process.stdin.write('typed into the seed sender\n')

    expect(await within(10_000, 'the MQTT subscriber to get the typed text', mqttText)).toBe('typed into the seed sender')
    await receiver.stdout.until('receiver.py to print it', (l) => l.includes('receive message : typed into the seed sender'))
  })
})
