import { EventEmitter } from 'node:events'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { Fanout, type ChatNamespace, type ChatSocket, type LiveNamespace, type LiveSocket } from '../../bridge/fanout.ts'
import { ANONYMOUS, type AppliedView, type DeviceState, type Envelope, type Reading } from '../../protocol/index.ts'

/**
 * The part of socket.io the fan-out uses, in memory: rooms, `to().except().emit()`, and each
 * socket's engine.io connection as an event emitter. An emit reaches a socket's `received` at
 * once and creates a packet on its connection; `drain()` is its transport writing them out.
 */
class MemorySocket {
  readonly received: { event: string; data: unknown }[] = []
  readonly rooms = new Set<string>()
  readonly conn = Object.assign(new EventEmitter(), { closed: false, close: () => this.#disconnect() })
  readonly #events = new EventEmitter()
  data: { principal: typeof ANONYMOUS } & AppliedView = { principal: ANONYMOUS, filters: ['#'], devices: false, readings: false }
  constructor(
    readonly id: string,
    readonly ns: MemoryNamespace,
  ) {
    ns.sockets.add(this)
  }
  join(room: string) {
    this.rooms.add(room)
  }
  leave(room: string) {
    this.rooms.delete(room)
  }
  on(event: string, listener: () => void) {
    this.#events.on(event, listener)
  }
  deliver(event: string, data: unknown) {
    this.received.push({ event, data })
    this.conn.emit('packetCreate', { data: JSON.stringify(data) })
  }
  /** The transport wrote out everything that waited. */
  drain() {
    this.conn.emit('flush')
  }
  #disconnect() {
    this.conn.closed = true
    this.ns.sockets.delete(this)
    this.#events.emit('disconnect')
  }
}

class MemoryNamespace {
  readonly sockets = new Set<MemorySocket>()
  readonly adapter = {
    rooms: {
      get: (room: string) => ({ size: [...this.sockets].filter((s) => s.rooms.has(room)).length }),
    },
  }
  /** Frames encoded: one per emit, whatever the number of receivers (as socket.io's broadcasts). */
  encoded = 0
  to(room: string | string[] | null) {
    const rooms = room === null ? null : typeof room === 'string' ? [room] : room
    const emit = (except: string | null) => (event: string, data: unknown) => {
      this.encoded++
      for (const s of this.sockets) if ((rooms === null || rooms.some((r) => s.rooms.has(r))) && (except === null || !s.rooms.has(except))) s.deliver(event, data)
    }
    return { except: (except: string) => ({ emit: emit(except) }), emit: emit(null) }
  }
  get local() {
    return this
  }
  except(room: string) {
    return this.to(null).except(room)
  }
}

const envelope = (topic: string, payload = 'x'): Envelope => ({ topic, payload, ts: 0, source: 'mqtt', qos: 0, retain: false })
/** Topics a socket was sent, in order, from `message` and `messages` alike. */
const topics = (s: MemorySocket) =>
  s.received.flatMap(({ event, data }) => (event === 'message' ? [(data as Envelope).topic] : event === 'messages' ? (data as Envelope[]).map((e) => e.topic) : []))

let chat: MemoryNamespace
let live: MemoryNamespace
let fanout: Fanout
const liveSocket = (id: string, filters: string[]) => {
  const s = new MemorySocket(id, live)
  s.data.filters = filters
  fanout.addLiveClient(s as unknown as LiveSocket)
  return s
}

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setImmediate', 'clearImmediate', 'setInterval', 'clearInterval', 'performance', 'Date'] })
  chat = new MemoryNamespace()
  live = new MemoryNamespace()
  fanout = new Fanout(chat as unknown as ChatNamespace, live as unknown as LiveNamespace, { maxPendingPackets: 4, maxPendingBytes: 1000, maxLagMs: 3000 })
})
afterEach(() => {
  fanout.close()
  vi.useRealTimers()
})

describe('fan-out filters', () => {
  it('sends each client what its filters match, encoded once per group of the same filters', () => {
    const a = liveSocket('a', ['home/#'])
    const b = liveSocket('b', ['home/#'])
    const c = liveSocket('c', ['office/+'])
    for (const t of ['home/x', 'office/y', 'other', '$SYS/z']) fanout.send(envelope(t))
    vi.advanceTimersByTime(0)
    expect(topics(a)).toEqual(['home/x'])
    expect(topics(b)).toEqual(['home/x'])
    expect(topics(c)).toEqual(['office/y'])
    // one frame per group with a match, not one per client; with nobody on /, nothing is encoded for it
    expect(fanout.stats.broadcasts).toBe(2)
  })

  it('sends chat clients every payload as text, but never $SYS', () => {
    const s = new MemorySocket('chat', chat)
    fanout.addChatClient(s as unknown as ChatSocket)
    fanout.send(envelope('a', 'hello'))
    fanout.send(envelope('$SYS/x', 'no'))
    vi.advanceTimersByTime(0)
    expect(s.received).toEqual([{ event: 'message', data: 'hello' }])
  })

  it('moves a client to the group of its new filters', () => {
    const a = liveSocket('a', ['x'])
    expect(fanout.setFilters(a as unknown as LiveSocket, ['y', 'y', 'b'])).toEqual(['b', 'y'])
    fanout.send(envelope('x'))
    fanout.send(envelope('y'))
    vi.advanceTimersByTime(0)
    expect(topics(a)).toEqual(['y'])
  })
})

describe('fan-out batching', () => {
  it('sends a message alone after a quiet spell, and what arrives together as one batch', () => {
    const a = liveSocket('a', ['#'])
    fanout.send(envelope('one'))
    vi.advanceTimersByTime(0)
    expect(a.received.map((r) => r.event)).toEqual(['message'])
    a.drain()
    // while messages keep coming, flushes are at least 1 ms apart
    for (const t of ['b1', 'b2', 'b3']) fanout.send(envelope(t))
    vi.advanceTimersByTime(0)
    expect(a.received).toHaveLength(1)
    vi.advanceTimersByTime(1)
    expect(a.received.map((r) => r.event)).toEqual(['message', 'messages'])
    expect(topics(a)).toEqual(['one', 'b1', 'b2', 'b3'])
  })

  it('waits longer between flushes while batches are large, and splits them at maxBatch', () => {
    const ns = new MemoryNamespace()
    const big = new Fanout(new MemoryNamespace() as unknown as ChatNamespace, ns as unknown as LiveNamespace, { maxBatch: 8, maxPendingPackets: 1000, maxPendingBytes: 1e9 })
    const a = new MemorySocket('a', ns)
    big.addLiveClient(a as unknown as LiveSocket)
    for (let i = 0; i < 20; i++) big.send(envelope(`t${i}`))
    vi.advanceTimersByTime(0)
    const frames = a.received.filter((r) => r.event === 'messages').map((r) => (r.data as Envelope[]).length)
    expect(frames).toEqual([8, 8, 4])
    big.send(envelope('next'))
    const before = a.received.length
    vi.advanceTimersByTime(1)
    // the interval doubled: 1 ms is not enough for the next flush
    expect(a.received.length).toBe(before)
    vi.advanceTimersByTime(1)
    expect(a.received.length).toBeGreaterThan(before)
    big.close()
  })
})

describe('fan-out backlog', () => {
  it('skips a client with too many packets waiting until they are written, and counts what it missed', () => {
    const slow = liveSocket('slow', ['#'])
    const fast = liveSocket('fast', ['#'])
    for (let i = 0; i < 8; i++) {
      fanout.send(envelope(`t${i}`))
      vi.advanceTimersByTime(10)
      fast.drain()
    }
    expect(topics(fast)).toHaveLength(8)
    expect(topics(slow)).toHaveLength(5) // skipped after its 5th packet waited
    expect(fanout.stats.slowClients).toBe(1)
    expect(fanout.stats.dropped).toBe(3)
    slow.drain()
    fanout.send(envelope('after'))
    vi.advanceTimersByTime(10)
    expect(topics(slow).at(-1)).toBe('after')
  })

  it('skips a client by bytes as well as by packets', () => {
    const slow = liveSocket('slow', ['#'])
    fanout.send(envelope('big', 'x'.repeat(1100)))
    vi.advanceTimersByTime(10)
    fanout.send(envelope('next'))
    vi.advanceTimersByTime(10)
    expect(topics(slow)).toEqual(['big'])
  })

  it('disconnects a client whose oldest packet waited longer than maxLagMs', () => {
    const stuck = liveSocket('stuck', ['#'])
    const fine = liveSocket('fine', ['#'])
    fanout.send(envelope('x'))
    vi.advanceTimersByTime(10)
    fine.drain()
    vi.advanceTimersByTime(5000)
    expect(stuck.conn.closed).toBe(true)
    expect(fine.conn.closed).toBe(false)
    expect(fanout.stats.laggedOut).toBe(1)
  })
})

const reading = (device: string, metric = 'm', value = 1): Reading => ({ device, metric, value, ts: 0 })
const state = (id: string): DeviceState => ({ id, name: id, format: 'generic', online: true, stale: false, asleep: false, lastSeen: 0, metrics: {}, commands: [], topics: [] })
const viewSocket = (id: string, view: Partial<AppliedView>) => {
  const s = new MemorySocket(id, live)
  Object.assign(s.data, { filters: [], devices: false, readings: false }, view)
  fanout.addLiveClient(s as unknown as LiveSocket)
  return s
}
const events = (s: MemorySocket, event: string) => s.received.filter((r) => r.event === event).map((r) => r.data)
const readingsOf = (s: MemorySocket) => (events(s, 'readings') as Reading[][]).flat().map((r) => r.device)

describe('fan-out views', () => {
  it('sends each client the readings of the devices it shows, filtered and encoded once per group', () => {
    const all = viewSocket('all', { readings: true })
    const a1 = viewSocket('a1', { readings: ['a'] })
    const a2 = viewSocket('a2', { readings: ['a', 'a'] })
    const ab = viewSocket('ab', { readings: ['b', 'a'] })
    const none = viewSocket('none', { devices: true })
    live.encoded = 0
    fanout.sendDeviceUpdate([], [reading('a'), reading('b'), reading('c'), reading('a', 'n')])
    expect(readingsOf(all)).toEqual(['a', 'b', 'c', 'a'])
    expect(readingsOf(a1)).toEqual(['a', 'a'])
    expect(readingsOf(a2)).toEqual(['a', 'a'])
    expect(readingsOf(ab)).toEqual(['a', 'b', 'a'])
    expect(readingsOf(none)).toEqual([])
    // one frame for every device, one for {a}, one for {a, b}: not one per client
    expect(live.encoded).toBe(3)
    // nothing for a group none of whose devices spoke
    live.encoded = 0
    fanout.sendDeviceUpdate([], [reading('c')])
    expect(live.encoded).toBe(1)
  })

  it('sends device state of every device, of some, or none; and forgets to those that showed the device', () => {
    const all = viewSocket('all', { devices: true })
    const one = viewSocket('one', { devices: ['a'] })
    const none = viewSocket('none', { filters: ['#'] })
    fanout.sendDeviceUpdate([state('a'), state('b')], [])
    expect((events(all, 'device') as DeviceState[][]).flat().map((d) => d.id)).toEqual(['a', 'b'])
    expect((events(one, 'device') as DeviceState[][]).flat().map((d) => d.id)).toEqual(['a'])
    expect(events(none, 'device')).toEqual([])
    fanout.sendForget('b')
    fanout.sendForget('a')
    expect(events(all, 'forget')).toEqual(['b', 'a'])
    expect(events(one, 'forget')).toEqual(['a'])
    expect(events(none, 'forget')).toEqual([])
  })

  it('sends a client with no filters no messages, and moves a client to the groups of its new view', () => {
    const s = viewSocket('s', { filters: [], devices: ['a'], readings: ['a'] })
    fanout.send(envelope('x'))
    vi.advanceTimersByTime(0)
    expect(topics(s)).toEqual([])
    expect(fanout.setView(s as unknown as LiveSocket, { filters: ['x'], devices: true, readings: ['b', 'b'] })).toEqual({ filters: ['x'], devices: true, readings: ['b'] })
    fanout.send(envelope('x'))
    vi.advanceTimersByTime(1)
    fanout.sendDeviceUpdate([state('a')], [reading('a'), reading('b')])
    expect(topics(s)).toEqual(['x'])
    expect(readingsOf(s)).toEqual(['b'])
    expect((events(s, 'device') as DeviceState[][]).flat().map((d) => d.id)).toEqual(['a'])
    // an empty selection is none
    expect(fanout.setView(s as unknown as LiveSocket, { filters: [], devices: [], readings: [] })).toEqual({ filters: [], devices: false, readings: false })
    const before = s.received.length
    fanout.sendDeviceUpdate([state('a')], [reading('b')])
    expect(s.received.length).toBe(before)
  })

  it('in a cluster, announces message and reading groups (not device state), and sends its readings to other nodes\' groups', () => {
    const announced: unknown[] = []
    const clustered = new Fanout(chat as unknown as ChatNamespace, live as unknown as LiveNamespace, { cluster: { announceGroup: (g) => announced.push(g) } })
    const s = new MemorySocket('s', live)
    Object.assign(s.data, { filters: ['b/#', 'a'], devices: ['x'], readings: ['y', 'x'] })
    clustered.addLiveClient(s as unknown as LiveSocket)
    expect(announced).toEqual([
      { kind: 'filters', keys: ['a', 'b/#'] },
      { kind: 'readings', keys: ['x', 'y'] },
    ])
    // a group of another node's clients: this node's readings of z go to its room
    clustered.addGroup({ kind: 'readings', keys: ['z'] })
    const remote = new MemorySocket('remote', live)
    remote.join('readings:z')
    clustered.sendDeviceUpdate([], [reading('z'), reading('x')])
    expect(readingsOf(remote)).toEqual(['z'])
    expect(readingsOf(s)).toEqual(['x'])
    clustered.close()
  })
})
