import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { collect, envelopes, startStack, within, type Stack } from '../helpers/stack.ts'
import { killAll, run } from '../helpers/process.ts'

let stack: Stack
beforeEach(async () => {
  stack = await startStack()
})
afterEach(async () => {
  await killAll()
  await stack.close()
})

const hostPort = () => ['-h', '127.0.0.1', '-p', String(stack.mqttPort)]

describe("Debian's mosquitto-clients against the embedded broker", () => {
  it('mosquitto_pub reaches / and /live', async () => {
    const chat = await stack.chat()
    const texts = collect<string>((push) => chat.on('message', push))
    const live = await stack.live()
    const seen = envelopes(live)

    const pub = run('mosquitto_pub', [...hostPort(), '-i', 'mosq-pub', '-q', '1', '-t', 'devices/x/telemetry', '-m', '21.5'])
    expect(await pub.exited).toBe(0)

    await texts.until('21.5 on /', (v) => v.includes('21.5'))
    const found = await seen.until('the envelope', (v) => v.length > 0)
    expect(found[0]).toMatchObject({ topic: 'devices/x/telemetry', payload: '21.5', clientId: 'mosq-pub', qos: 1 })
  })

  it('mosquitto_sub receives chat from socket clients and retained state', async () => {
    const device = await stack.mqtt()
    await device.publishAsync('devices/x/status', 'online', { retain: true, qos: 1 })
    const sub = run('mosquitto_sub', [...hostPort(), '-v', '-q', '1', '-t', 'messages', '-t', 'devices/+/status'])
    await sub.stdout.until('the retained status', (l) => l.includes('devices/x/status online'))

    const chat = await stack.chat()
    await chat.emitWithAck('message', 'hello mosquitto')
    await sub.stdout.until('the chat text', (l) => l.includes('messages hello mosquitto'))
    expect(sub.stdout.values).toEqual(['devices/x/status online', 'messages hello mosquitto'])
  })

  it('QoS 2 round trip from mosquitto_pub to mosquitto_sub', async () => {
    const sub = run('mosquitto_sub', [...hostPort(), '-v', '-q', '2', '-t', 'q2/#', '-C', '1'])
    // mosquitto_sub prints nothing on connect; the broker tells us when it subscribed
    await within(5000, 'mosquitto_sub to subscribe', new Promise((resolve) => stack.app.broker!.aedes.once('subscribe', resolve)))
    const pub = run('mosquitto_pub', [...hostPort(), '-q', '2', '-t', 'q2/x', '-m', 'exactly once'])
    expect(await pub.exited).toBe(0)
    expect(await within(5000, 'mosquitto_sub to exit after one message', sub.exited)).toBe(0)
    expect(sub.stdout.values).toEqual(['q2/x exactly once'])
  })

  it("publishes mosquitto_sub's last will when it is killed", async () => {
    const live = await stack.live()
    const seen = envelopes(live)
    const sub = run('mosquitto_sub', [
      ...hostPort(),
      '-i', 'mosq-will',
      '-t', 'anything',
      '--will-topic', 'devices/mosq-will/status',
      '--will-payload', 'offline',
      '--will-qos', '1',
      '--will-retain',
    ])
    await within(5000, 'mosquitto_sub to subscribe', new Promise((resolve) => stack.app.broker!.aedes.once('subscribe', resolve)))
    sub.process.kill('SIGKILL')
    const found = await seen.until('the will on /live', (v) => v.some((e) => e.topic === 'devices/mosq-will/status'))
    expect(found.find((e) => e.topic === 'devices/mosq-will/status')).toMatchObject({ payload: 'offline', clientId: 'mosq-will', retain: true, qos: 1 })
  })
})
