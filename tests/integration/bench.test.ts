import { afterEach, describe, expect, it } from 'vitest'
import { killAll, pulseboard } from '../helpers/process.ts'
import { runScenario } from '../../bench/run.ts'
import { runScale } from '../../bench/scale.ts'
import { mosquittoInstalled } from '../../bench/mosquitto.ts'
import { runClusterBench } from '../../bench/cluster.ts'
import { redisInstalled } from '../../bench/redis.ts'
import { probePayload, readProbe } from '../../bench/probe.ts'
import { publishPacket } from '../../bench/mqtt-wire.ts'
import mqttPacket from 'mqtt-packet'

describe('bench probes', () => {
  it('pads a probe to the payload size and reads it back', () => {
    const payload = probePayload(7, 42, true, 60)
    expect(payload).toHaveLength(60)
    expect(JSON.parse(payload)).toMatchObject({ d: 7, s: 42, m: 1 })
    expect(readProbe(payload)).toMatchObject({ device: 7, seq: 42, measured: true })
    expect(readProbe('{"temperature":1}')).toBeNull()
  })

  it('encodes PUBLISH packets that an MQTT parser accepts', () => {
    const parser = mqttPacket.parser()
    const packets: mqttPacket.Packet[] = []
    parser.on('packet', (p) => packets.push(p))
    parser.parse(publishPacket('a/b', 'x'.repeat(200), 1, 513))
    parser.parse(publishPacket('c', 'y', 0, 0))
    expect(packets).toMatchObject([
      { cmd: 'publish', topic: 'a/b', qos: 1, messageId: 513, payload: Buffer.from('x'.repeat(200)) },
      { cmd: 'publish', topic: 'c', qos: 0, payload: Buffer.from('y') },
    ])
  })
})

// Real runs, small and short: these check that the bench measures, not how fast anything is.
describe('bench runs', () => {
  const small = { devices: 5, rate: 200, clients: 2, qos: 0 as const, payloadSize: 60, warmupMs: 300, durationMs: 1000 }

  it.each([
    ['pulseboard', 'live'],
    ['pulseboard', 'chat'],
    ['naive', 'live'],
    ['broker', 'mqtt'],
  ] as const)('measures %s with %s receivers: every message delivered once, with latencies', async (target, receiver) => {
    const result = await runScenario({ ...small, target, receiver })
    expect(result.sentPerSecond).toBeGreaterThan(100)
    expect(result.lost).toBe(0)
    expect(result.duplicates).toBe(0)
    expect(result.deliveredPerSecond).toBeCloseTo(result.sentPerSecond * small.clients, -1)
    expect(result.latency.p50).toBeGreaterThan(0)
    expect(result.latency.max).toBeGreaterThanOrEqual(result.latency.p99)
    expect(result.cpuPercent).toBeGreaterThan(0)
    expect(result.rssMb).toBeGreaterThan(10)
  })

  // devices publish to mosquitto, /live receivers connect to Pulseboard on it (externalBroker)
  it.skipIf(!mosquittoInstalled())('measures Pulseboard on mosquitto: both processes, each and together', async () => {
    const result = await runScenario({ ...small, target: 'pulseboard-mosquitto', receiver: 'live' })
    expect(result.sentPerSecond).toBeGreaterThan(100)
    expect(result.lost).toBe(0)
    expect(result.duplicates).toBe(0)
    expect(result.deliveredPerSecond).toBeCloseTo(result.sentPerSecond * small.clients, -1)
    expect(result.processes?.map((p) => p.name)).toEqual(['pulseboard', 'mosquitto'])
    const [pulseboard, mosquitto] = result.processes!
    expect(pulseboard!.cpuPercent).toBeGreaterThan(0)
    expect(pulseboard!.rssMb).toBeGreaterThan(10)
    expect(mosquitto!.rssMb).toBeGreaterThan(1)
    expect(result.cpuPercent).toBeCloseTo(pulseboard!.cpuPercent + mosquitto!.cpuPercent, 6)
    expect(result.rssMb).toBeCloseTo(pulseboard!.rssMb + mosquitto!.rssMb, 6)
    expect(result.pauses).not.toBeNull()
  })

  it('floods with QoS 1 and counts every delivery', async () => {
    const result = await runScenario({ ...small, rate: 0, qos: 1, target: 'pulseboard', receiver: 'live' })
    expect(result.sentPerSecond).toBeGreaterThan(500)
    expect(result.lost).toBe(0)
  })

  it.each([
    ['pulseboard', 'mqtt'],
    ['socketio', 'socket'],
  ] as const)('measures memory per idle connection: %s, %s', async (target, kind) => {
    const result = await runScale(target, kind, 100)
    expect(result).toMatchObject({ target, kind, connections: 100 })
    expect(result.connectMs).toBeGreaterThan(0)
  })
})

describe('bench --scenario history options', () => {
  afterEach(killAll)

  it('is listed in --help', async () => {
    const child = pulseboard(['bench', '--help'])
    expect(await child.exited).toBe(0)
    expect(child.stdout.values.join('\n')).toMatch(/history \(10,000 readings\/s/)
  })

  it.each([
    [['--metrics', '0'], '--metrics must be a whole number from 1 to 64, got "0"'],
    [['--only', 'export'], '--only must be ingest or queries, got "export"'],
    [['--duration', '500ms'], '--duration must be at least 1s, got "500ms"'],
    [['--rate', '0'], '--rate must be a whole number from 1 to 100000, got "0"'],
  ])('%j: one line, exit 2, before starting anything', async (flags, message) => {
    const child = pulseboard(['bench', '--scenario', 'history', ...flags])
    expect(await child.exited).toBe(2)
    expect(child.stderr.values[0]).toBe(`pulseboard bench: ${message}`)
  })
})

describe('bench --scenario cluster', () => {
  /** Two nodes on a redis-server of its own, history in memory, one round of a second. */
  const twoNodes = { nodes: [2], standalone: false, payloadSize: 60, warmupMs: 500, durationMs: 1000, runs: 1, history: 'memory' as const }
  // two nodes on a redis-server of its own, a second of load: this checks that it measures, not how fast
  it.skipIf(!redisInstalled())('runs 2 nodes on Redis: each message to each client once, and each node, Redis and the machine measured', async () => {
    const result = await runClusterBench({ ...twoNodes, devices: 6, devicesOn: 'all', rate: 200, clients: 4 })
    const [run] = result.runs
    expect(run).toMatchObject({ config: '2 nodes', nodes: 2, clustered: true, lost: 0, duplicates: 0 })
    expect(run!.sentPerSec).toBeGreaterThan(100)
    expect(run!.deliveriesPerSec).toBeCloseTo(run!.sentPerSec * 4, -2)
    expect(run!.perNode.map((n) => [n.node, n.devices, n.clients])).toEqual([
      ['a', 3, 2],
      ['b', 3, 2],
    ])
    for (const node of run!.perNode) {
      // devices round robin: each node takes half of what is published, and its clients get all of it
      expect(node.messagesInPerSec).toBeCloseTo(run!.sentPerSec / 2, -2)
      expect(node.deliveriesPerSec).toBeCloseTo(run!.sentPerSec * 2, -2)
      expect(node.cpuPercent).toBeGreaterThan(0)
      expect(node.latency.p50).toBeGreaterThan(0)
    }
    expect(run!.redis!.rssMb).toBeGreaterThan(1)
    expect(run!.systemCpuPercent).toBeCloseTo(run!.nodesCpuPercent + run!.redis!.cpuPercent, 0)
    expect(result.medians).toHaveLength(1)
  }, 45_000)

  it.skipIf(!redisInstalled())('puts every device on node a with --devices-on first: node b takes in nothing, and its clients still get everything', async () => {
    const result = await runClusterBench({ ...twoNodes, devices: 4, devicesOn: 'first', rate: 100, clients: 2 })
    const [run] = result.runs
    expect(run).toMatchObject({ lost: 0, duplicates: 0 })
    const [a, b] = run!.perNode
    expect([a!.devices, b!.devices]).toEqual([4, 0])
    expect(a!.messagesInPerSec).toBeCloseTo(run!.sentPerSec, -1)
    expect(b!.messagesInPerSec).toBe(0)
    expect(b!.deliveriesPerSec).toBeCloseTo(run!.sentPerSec, -1)
    expect(result.fit).toBeNull()
  }, 45_000)
})
