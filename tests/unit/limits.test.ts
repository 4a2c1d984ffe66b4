import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { describe, expect, it } from 'vitest'
import type { AedesPublishPacket } from 'aedes'
import { LIMIT_FLAGS, formatLimit, memoryBudget } from '../../cli/limits.ts'
import { parseBytes } from '../../cli/args.ts'
import { FlappingDetector } from '../../broker/flapping.ts'
import { BoundedPersistence, PACKET_OVERHEAD, type AsyncPersistence } from '../../broker/persistence.ts'
import { brokerDefaults } from '../../broker/broker.ts'
import { MemoryStore, Series } from '../../store/memory.ts'
import { TopicIndex, pageOf } from '../../devices/topic-index.ts'
import { LIMITS, type LimitName } from '../../protocol/limits.ts'

const doc = readFileSync(new URL('../../docs/limits.md', import.meta.url), 'utf8')
const MemoryPersistence = createRequire(import.meta.url)('aedes-persistence/asyncPersistence.js') as new () => AsyncPersistence

describe('docs/limits.md', () => {
  it('lists every flag with its default', () => {
    for (const l of LIMIT_FLAGS) {
      const row = doc.split('\n').find((line) => line.startsWith('|') && line.includes(`\`--${l.flag}\``))
      expect(row, `a table row for --${l.flag}`).toBeDefined()
      expect(row, `--${l.flag}'s default`).toContain(formatLimit(l.unit, l.default))
    }
  })

  it('names every counted limit', () => {
    for (const name of Object.keys(LIMITS)) expect(doc).toContain(`\`${name}\``)
  })

  it('states the sum of the bounds of the defaults as the code computes it', () => {
    const { total, parts } = memoryBudget({ broker: {}, registry: {}, store: {}, sqlite: {}, fanout: {}, app: {} })
    expect(doc).toContain(`**${Math.round(total / 2 ** 20)} MiB**`)
    for (const part of parts) expect(doc).toContain(`| ${Math.round(part.bytes / 2 ** 20)} MiB |`)
  })
})

describe('parseBytes', () => {
  it.each([
    ['262144', 262144],
    ['256KiB', 262144],
    ['256k', 262144],
    ['64M', 64 * 2 ** 20],
    ['1.5 GiB', 1.5 * 2 ** 30],
  ])('%s is %d bytes', (text, bytes) => expect(parseBytes(text)).toBe(bytes))

  it.each(['', 'ten', '-1', '5 parsecs', '1e9'])('refuses %j', (text) => expect(parseBytes(text)).toBeNull())
})

describe('FlappingDetector', () => {
  const detector = () => new FlappingDetector({ maxConnects: 3, windowMs: 1000, banMs: 5000, maxTracked: 2 })

  it('refuses an id that connects more often than allowed, for the ban, then lets it back', () => {
    const d = detector()
    expect([0, 1, 2].map((t) => d.connect('x', t))).toEqual([0, 0, 0])
    expect(d.connect('x', 3)).toBe(5000)
    expect(d.connect('x', 4000)).toBe(1003)
    expect(d.connect('x', 5003)).toBe(0)
  })

  it('starts a new window once the old one is over', () => {
    const d = detector()
    for (const t of [0, 1, 2, 1500, 1501, 1502]) expect(d.connect('x', t)).toBe(0)
  })

  it('tracks a bounded number of ids, forgetting the least recently seen', () => {
    const d = detector()
    for (let t = 0; t < 3; t++) d.connect('a', t)
    d.connect('b', 10)
    d.connect('c', 11)
    // `a` was forgotten, so its count starts again
    expect(d.connect('a', 12)).toBe(0)
  })
})

describe('BoundedPersistence', () => {
  const packet = (topic: string, bytes: number): AedesPublishPacket =>
    ({ cmd: 'publish', topic, payload: Buffer.alloc(bytes), qos: 1, retain: true, dup: false, brokerId: 'b', brokerCounter: 1 }) as AedesPublishPacket
  const create = async (limits: Partial<typeof brokerDefaults>) => {
    const hits: LimitName[] = []
    const p = new BoundedPersistence(new MemoryPersistence(), { ...brokerDefaults, ...limits }, (limit) => hits.push(limit))
    await p.setup({ id: 'b' })
    return { p, hits }
  }

  it('keeps retained messages within the byte bound, replacing and deleting in place', async () => {
    const size = PACKET_OVERHEAD + 1 + 1000
    const { p, hits } = await create({ maxRetainedBytes: 3 * size })
    for (const t of ['a', 'b', 'c', 'd']) await p.storeRetained(packet(t, 1000))
    expect(p.usage).toMatchObject({ retained: 3, retainedBytes: 3 * size })
    expect(hits).toEqual(['retained'])
    await p.storeRetained(packet('a', 1000)) // replacing costs nothing more
    await p.storeRetained(packet('b', 0)) // an empty payload deletes
    expect(p.usage).toMatchObject({ retained: 2, retainedBytes: 2 * size })
    await p.storeRetained(packet('d', 1000))
    expect(p.usage.retained).toBe(3)
  })

  it('drops queued messages over one session’s count and frees them as they are acknowledged', async () => {
    const { p, hits } = await create({ maxQueued: 2 })
    for (let i = 0; i < 3; i++) await p.outgoingEnqueueCombi([{ clientId: 's' }, { clientId: 't' }], { ...packet('q', 10), messageId: i })
    expect(hits).toEqual(['session_queue', 'session_queue'])
    const queued = async (id: string) => (await p.outgoingStream({ id }).toArray()).length
    expect([await queued('s'), await queued('t')]).toEqual([2, 2])
    const [first] = (await p.outgoingStream({ id: 's' }).toArray()) as AedesPublishPacket[]
    await p.outgoingClearMessageId({ id: 's' }, first!)
    await p.outgoingEnqueue({ clientId: 's' }, packet('q', 10))
    expect(await queued('s')).toBe(3 - 1)
  })

  it('forgets the least recently seen offline session beyond the session bound', async () => {
    const { p, hits } = await create({ maxSessions: 2 })
    for (const id of ['a', 'b', 'c']) await p.addSubscriptions({ id }, [{ topic: 'x', qos: 1 }])
    await new Promise((resolve) => setTimeout(resolve, 10))
    expect(hits).toEqual(['sessions'])
    expect(await p.subscriptionsByClient({ id: 'a' })).toEqual([])
    expect(await p.subscriptionsByClient({ id: 'c' })).toHaveLength(1)
  })
})

describe('Series', () => {
  it('grows as points arrive, up to its capacity, then keeps the latest', () => {
    const s = new Series(20)
    for (let i = 0; i < 25; i++) s.push(i, i * 10)
    expect(s.length).toBe(20)
    expect(s.range().map(([t]) => t)).toEqual(Array.from({ length: 20 }, (_, i) => i + 5))
    expect(s.range(22)).toEqual([[22, 220], [23, 230], [24, 240]])
    expect(s.range(10, 11)).toEqual([[10, 100], [11, 110]])
    expect(s.last()).toEqual([24, 240])
  })
})

describe('MemoryStore', () => {
  const readings = (device: string, metric: string, n: number, from = 0) =>
    Array.from({ length: n }, (_, i) => ({ device, metric, ts: from + i, value: from + i }))

  it('keeps a total bound by dropping the least recently updated device', async () => {
    const hits: string[] = []
    const store = new MemoryStore({ historySize: 10, maxHistoryPoints: 25, onLimit: (l) => hits.push(l) })
    store.append(readings('d1', 'a', 10))
    store.append(readings('d2', 'b', 10))
    store.append(readings('d1', 'a', 1, 10)) // d1 is now the most recently updated
    store.append(readings('d3', 'c', 6))
    expect(store.usage.historyPoints).toBeLessThanOrEqual(25)
    expect(hits).toEqual(['history_points'])
    expect((await store.query({ device: 'd2' })).metrics).toEqual({})
    expect((await store.query({ device: 'd1' })).metrics.a).toMatchObject({ points: expect.arrayContaining([[10, 10]]) })
  })

  it('answers a range with the raw points when they fit, and with buckets that keep the peaks when not', async () => {
    const store = new MemoryStore()
    store.append(Array.from({ length: 1000 }, (_, i) => ({ device: 'd', metric: 'm', ts: i * 1000, value: i === 500 ? 99 : 1 })))
    const raw = await store.query({ device: 'd', from: 10_000, to: 19_000 })
    expect(raw.metrics.m).toEqual({ points: Array.from({ length: 10 }, (_, i) => [(10 + i) * 1000, 1]) })
    const coarse = await store.query({ device: 'd', maxPoints: 100 })
    if (!('buckets' in coarse.metrics.m!)) throw new Error('expected buckets')
    expect(coarse.metrics.m.buckets.length).toBeLessThanOrEqual(100)
    expect(Math.max(...coarse.metrics.m.buckets.map(([, , max]) => max))).toBe(99)
    expect(await store.latest('d')).toEqual({ m: { ts: 999_000, value: 1 } })
  })
})

describe('TopicIndex', () => {
  it('is bounded in count and characters, and pages in topic order', () => {
    const hits: string[] = []
    const index = new TopicIndex({ maxTopics: 3, maxBytes: 1000, onLimit: (l) => hits.push(l) })
    const e = (topic: string, payload = 'p') => ({ topic, payload, ts: 1, source: 'mqtt' as const, qos: 0 as const, retain: false })
    for (const t of ['c', 'a', 'b', 'd']) index.remember(e(t))
    expect(hits).toEqual(['topics'])
    expect(index.page(2).map((t) => t.topic)).toEqual(['a', 'b'])
    expect(index.page(2, 'b').map((t) => t.topic)).toEqual(['c'])
    index.remember(e('a', 'x'.repeat(995)))
    expect(index.bytes).toBeLessThanOrEqual(1000)
  })

  it('pageOf never repeats or skips across pages', () => {
    const items = Array.from({ length: 1001 }, (_, i) => `k${i}`)
    const seen: string[] = []
    let cursor: string | undefined
    for (;;) {
      const page = pageOf([...items], (k) => k, 100, cursor)
      if (page.length === 0) break
      seen.push(...page)
      cursor = page.at(-1)
    }
    expect(seen).toEqual([...items].sort())
  })
})
