import { describe, expect, it } from 'vitest'
import type { Envelope } from '../../protocol/index.ts'
import { MAX_LOGGED_PAYLOAD_BYTES, type LoggedEnvelope } from '../../store/history.ts'
import { MemoryStore, csvField, cutPayload } from '../../store/memory.ts'

const envelope = (topic: string, ts: number, payload = 'p'): Envelope => ({ topic, payload, ts, source: 'mqtt', qos: 0, retain: false })

async function collect(iterable: AsyncIterable<string>): Promise<string[]> {
  const chunks: string[] = []
  for await (const chunk of iterable) chunks.push(chunk)
  return chunks
}

describe('MemoryStore message log', () => {
  it('keeps the newest logSize messages, newest first', async () => {
    const store = new MemoryStore({ logSize: 5 })
    store.log(Array.from({ length: 12 }, (_, i) => envelope(`t/${i}`, i)))
    expect(store.usage.logMessages).toBe(5)
    expect((await store.messages({ limit: 10 })).map((m) => m.topic)).toEqual(['t/11', 't/10', 't/9', 't/8', 't/7'])
  })

  it('pages with a filter and before/beforeId without repeats or skips, ties of one millisecond included', async () => {
    const store = new MemoryStore({ logSize: 1000 })
    const topics = ['a/x/t', 'a/y/t', 'b/x/t', 'a/x/u']
    store.log(Array.from({ length: 400 }, (_, i) => envelope(topics[i % 4]!, Math.floor(i / 7))))
    const seen: LoggedEnvelope[] = []
    let cursor: { before?: number; beforeId?: number } = {}
    for (;;) {
      const page = await store.messages({ filter: 'a/+/t', limit: 13, ...cursor })
      seen.push(...page)
      if (page.length < 13) break
      const last = page[page.length - 1]!
      cursor = { before: last.ts, beforeId: last.id }
    }
    expect(seen).toHaveLength(200)
    expect(new Set(seen.map((m) => m.id)).size).toBe(200)
    expect(seen.every((m) => m.topic === 'a/x/t' || m.topic === 'a/y/t')).toBe(true)
    for (let i = 1; i < seen.length; i++) expect(seen[i - 1]!.ts > seen[i]!.ts || (seen[i - 1]!.ts === seen[i]!.ts && seen[i - 1]!.id > seen[i]!.id)).toBe(true)
    // `before` alone is strictly older
    expect((await store.messages({ before: 10, limit: 1000 })).every((m) => m.ts < 10)).toBe(true)
  })

  it('cuts payloads to the same bound as the SQLite store, at a character boundary', async () => {
    const store = new MemoryStore()
    const text = 'é'.repeat(5000) // 2 bytes each
    store.log([envelope('t', 1, text), { ...envelope('b', 2, 'QUJD'.repeat(2000)), encoding: 'base64' }])
    const [b, t] = await store.messages({ limit: 2 })
    expect(Buffer.byteLength(t!.payload)).toBeLessThanOrEqual(MAX_LOGGED_PAYLOAD_BYTES)
    expect(t!.payload).toBe('é'.repeat(MAX_LOGGED_PAYLOAD_BYTES / 2))
    expect(b).toMatchObject({ encoding: 'base64', payload: 'QUJD'.repeat(MAX_LOGGED_PAYLOAD_BYTES / 4) })
    expect(cutPayload('a€'.repeat(2000), undefined)).toMatch(/^(a€)+a?$/)
  })
})

describe('MemoryStore export and saved state', () => {
  it('exports CSV ordered by time across metrics, quoting names that need it', async () => {
    const store = new MemoryStore()
    store.append(Array.from({ length: 10 }, (_, i) => ({ device: 'd', metric: i % 2 ? 'temp, "inner"' : 'hum', ts: 91 + i, value: i })))
    const csv = (await collect(store.exportCsv({ device: 'd', from: 92 }))).join('')
    expect(csv).toBe(['ts,metric,value', ...[92, 93, 94, 95, 96, 97, 98, 99, 100].map((ts) => `${ts},${(ts - 91) % 2 ? '"temp, ""inner"""' : 'hum'},${ts - 91}`)].join('\r\n') + '\r\n')
    expect(csvField('plain')).toBe('plain')
    expect((await collect(store.exportCsv({ device: 'nobody' }))).join('')).toBe('ts,metric,value\r\n')
  })

  it('keeps saved devices (newest wins) and formats within the process, and forget drops the record', async () => {
    const store = new MemoryStore()
    const snapshot = { name: 'one', seen: 1 }
    store.saveDevices([{ id: 'd1', snapshot }, { id: 'd2', snapshot: { name: 'two' } }])
    snapshot.seen = 2 // what was saved is a copy
    store.saveDevices([{ id: 'd1', snapshot: { name: 'one', seen: 3 } }])
    store.saveFormats({ tasmota: ['x'] })
    await store.flush()
    expect(await store.loadDevices()).toEqual([{ id: 'd1', snapshot: { name: 'one', seen: 3 } }, { id: 'd2', snapshot: { name: 'two' } }])
    expect(await store.loadFormats()).toEqual({ tasmota: ['x'] })
    store.forget('d2')
    expect((await store.loadDevices()).map((d) => d.id)).toEqual(['d1'])
    expect(Object.values(store.usage).every((v) => typeof v === 'number')).toBe(true)
  })
})
