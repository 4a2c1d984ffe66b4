import { describe, expect, it } from 'vitest'
import { filterError, topicError, topicMatches } from '../../protocol/topics.ts'

describe('topicMatches', () => {
  it.each([
    ['#', 'a/b', true],
    ['#', '$SYS/x', false],
    ['+/b', '$SYS/b', false],
    ['$SYS/#', '$SYS/broker/uptime', true],
    ['a/#', 'a', true],
    ['a/#', 'a/b/c', true],
    ['a/+', 'a/b', true],
    ['a/+', 'a/b/c', false],
    ['a/+/c', 'a/x/c', true],
    ['a/b', 'a/b', true],
    ['a/b', 'a/b/c', false],
    ['a/b/c', 'a/b', false],
    ['+', '', true],
    ['a/+', 'a/', true],
  ])('%s matches %s: %s', (filter, topic, expected) => {
    expect(topicMatches(filter, topic)).toBe(expected)
  })
})

describe('filterError', () => {
  it.each(['#', 'a/#', '+/b/+', '$SYS/#', 'a'])('accepts %s', (f) => expect(filterError(f)).toBeNull())
  it.each(['', 'a/#/b', 'a#', 'a/b+', 'a\u0000b'])('rejects %j', (f) => expect(filterError(f)).toMatch(/./))
})

describe('topicError', () => {
  it.each(['a', 'devices/x/telemetry', 'a//b'])('accepts %s', (t) => expect(topicError(t)).toBeNull())
  it.each(['', 'a/+', 'a/#', '$SYS/x', 'a\u0000', 'x'.repeat(65536)])('rejects %j', (t) =>
    expect(topicError(t)).toMatch(/./),
  )
})
