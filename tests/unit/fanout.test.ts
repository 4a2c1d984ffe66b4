import { EventEmitter } from 'node:events'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { Fanout, type ChatNamespace, type ChatSocket, type LiveNamespace, type LiveSocket } from '../../bridge/fanout.ts'
import { ANONYMOUS, type Envelope } from '../../protocol/index.ts'

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
  data: { principal: typeof ANONYMOUS; filters: string[]; devices: boolean } = { principal: ANONYMOUS, filters: ['#'], devices: false }
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
  to(room: string | null) {
    return {
      except: (except: string) => ({
        emit: (event: string, data: unknown) => {
          for (const s of this.sockets) if ((room === null || s.rooms.has(room)) && !s.rooms.has(except)) s.deliver(event, data)
        },
      }),
    }
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
