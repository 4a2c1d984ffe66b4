import { afterEach, describe, expect, it } from 'vitest'
import { canary, closed, live, startTarget, type Target } from './server.ts'

let target: Target
afterEach(async () => {
  await target?.close()
})

/** A topic of about 64 KiB of U+0001: JSON writes each as `\u0001`, six times its length. */
const hugeTopic = (i: number) => `t${i}/${'\u0001'.repeat(64 * 1024 - 16)}`

describe('no input ends the process', () => {
  it('refuses 1,400 MQTT topics of 64 KiB of U+0001, and /api/topics still answers', async () => {
    target = await startTarget()
    for (let i = 0; i < 1400; i += 100) {
      await Promise.all(
        Array.from({ length: 100 }, async (_, j) => {
          const client = await target.mqtt()
          const gone = closed(client)
          client.publish(hugeTopic(i + j), 'x')
          await gone
        }),
      )
    }
    const res = await fetch(`${target.httpUrl}/api/topics`)
    expect(res.status).toBe(200)
    expect(await res.json()).toEqual([])
    expect((await target.health()).limits.topic_length).toBe(1400)
    await canary(target)
  })

  it('pages /api/topics when 1,400 topics of U+0001 fit the limit', async () => {
    target = await startTarget()
    const client = await target.mqtt()
    const topic = (i: number) => `t/${String(i).padStart(4, '0')}/${'\u0001'.repeat(1000)}`
    for (let i = 0; i < 1400; i++) client.publish(topic(i), 'x')
    await client.publishAsync('t/last', 'x', { qos: 1 })

    const seen: string[] = []
    let next: string | null = '/api/topics'
    while (next) {
      const res: Response = await fetch(target.httpUrl + next)
      expect(res.status).toBe(200)
      const page = (await res.json()) as { topic: string }[]
      expect(page.length).toBeLessThanOrEqual(500)
      seen.push(...page.map((t) => t.topic))
      next = /<([^>]+)>; rel="next"/.exec(res.headers.get('link') ?? '')?.[1] ?? null
    }
    expect(seen).toHaveLength(1401)
    expect(new Set(seen).size).toBe(1401)
    expect(seen).toEqual([...seen].sort())
    await canary(target)
  })

  it('refuses the same topics published from /live', async () => {
    target = await startTarget()
    // 1,400 topics over --max-topic-length, each refused with its code on one socket
    const socket = await live(target, { view: { devices: false } })
    const acks = await Promise.all(
      Array.from({ length: 1400 }, (_, i) => socket.emitWithAck('message', { topic: `t${i}/${'\u0001'.repeat(2000)}`, payload: 'x' })),
    )
    expect(acks.every((a) => !a.ok && a.error.code === 'E_INVALID_TOPIC' && a.error.message.includes('--max-topic-length'))).toBe(true)
    socket.disconnect()
    // whole 64 KiB ones escape to six times that: over the socket message bound, the server drops that connection
    for (let i = 0; i < 20; i++) {
      const big = await live(target, { view: { devices: false } })
      const outcome = await new Promise<string>((resolve) => {
        big.once('disconnect', () => resolve('disconnected'))
        big.emit('message', { topic: hugeTopic(i), payload: 'x' }, (ack) => resolve(ack.ok ? 'published' : ack.error.code))
      })
      big.disconnect()
      expect(outcome).toBe('disconnected')
    }
    const res = await fetch(`${target.httpUrl}/api/topics`)
    expect(res.status).toBe(200)
    expect(await res.json()).toEqual([])
    await canary(target)
  })

  it('answers a bad page request with a 400 that names the parameter', async () => {
    target = await startTarget()
    for (const query of ['limit=0', 'limit=100000', 'limit=ten']) {
      const res = await fetch(`${target.httpUrl}/api/devices?${query}`)
      expect(res.status).toBe(400)
      expect(await res.json()).toMatchObject({ error: { code: 'E_INVALID_REQUEST', message: expect.stringContaining('limit') } })
    }
    await canary(target)
  })
})
