import { describe, expect, it } from 'vitest'
import { DEFAULT_RULES, allows, expand, filterWithin, type AclRule } from '../../auth/acl.ts'
import { Backoff } from '../../auth/backoff.ts'

describe('filterWithin', () => {
  it.each([
    // a narrower filter is within a wider pattern
    ['devices/a/#', 'devices/a/+', true],
    ['devices/a/#', 'devices/a/#', true],
    ['devices/a/#', 'devices/a', true],
    ['devices/a/#', 'devices/a/x/y', true],
    ['devices/a/#', 'devices/a/+/y', true],
    ['devices/+/status', 'devices/a/status', true],
    ['devices/+/status', 'devices/+/status', true],
    ['a/+', 'a/b', true],
    // anything that could match a topic outside the pattern is not
    ['devices/a/#', 'devices/+/x', false],
    ['devices/a/#', 'devices/#', false],
    ['devices/a/#', 'devices/b/+', false],
    ['devices/+/status', 'devices/+/#', false],
    ['devices/+/status', 'devices/a/status/x', false],
    ['a/+', 'a/#', false],
    ['a/+', 'a/b/c', false],
    ['a/b', 'a/+', false],
    // `#` is within nothing but `#`
    ['#', '#', true],
    ['+/#', '#', false],
    ['a/#', '#', false],
    ['devices/#', '#', false],
    ['+', '#', false],
    // [MQTT-4.7.2-1] `$SYS` is not reached by a rule that starts with a wildcard
    ['#', '$SYS/#', false],
    ['#', '$SYS/broker/uptime', false],
    ['+/#', '$SYS/broker', false],
    ['+/broker', '$SYS/broker', false],
    ['$SYS/#', '$SYS/broker/+', true],
    ['$SYS/#', '#', false],
    ['$SYS/#', '+/broker', false],
  ])('%s contains %s: %s', (pattern, filter, expected) => {
    expect(filterWithin(pattern, filter)).toBe(expected)
  })
})

describe('expand', () => {
  it('replaces %u and %c with the user and the client id', () => {
    expect(expand('devices/%u/%c/#', 'alice', 'phone-1')).toBe('devices/alice/phone-1/#')
    expect(expand('x/%u-%u', 'b', 'c')).toBe('x/b-b')
  })

  it.each(['#', '+', 'a/b', 'a/#', '$SYS', ''])('does not let the client id %j fill a rule, which would widen it', (clientId) => {
    expect(expand('clients/%c/#', 'alice', clientId)).toBeNull()
    // a rule without %c is not affected by the client id
    expect(expand('clients/%u/#', 'alice', clientId)).toBe('clients/alice/#')
  })
})

describe('allows', () => {
  const rules: AclRule[] = [
    { access: 'readwrite', topic: 'devices/%u/#' },
    { access: 'read', topic: 'clients/%c/inbox' },
    { access: 'write', topic: 'reports/%u' },
    { access: 'read', topic: 'public/+/status' },
  ]

  it('expands %u for the principal, and matches topics and filters', () => {
    expect(allows(rules, 'write', 'devices/kitchen/telemetry', 'kitchen', 'k1')).toBe(true)
    expect(allows(rules, 'read', 'devices/kitchen/+', 'kitchen', 'k1')).toBe(true)
    expect(allows(rules, 'read', 'devices/kitchen/#', 'kitchen', 'k1')).toBe(true)
    expect(allows(rules, 'write', 'devices/garage/telemetry', 'kitchen', 'k1')).toBe(false)
    expect(allows(rules, 'read', 'devices/+/telemetry', 'kitchen', 'k1')).toBe(false)
    expect(allows(rules, 'read', 'devices/#', 'kitchen', 'k1')).toBe(false)
    expect(allows(rules, 'read', '#', 'kitchen', 'k1')).toBe(false)
  })

  it('expands %c for the connection', () => {
    expect(allows(rules, 'read', 'clients/k1/inbox', 'kitchen', 'k1')).toBe(true)
    expect(allows(rules, 'read', 'clients/k2/inbox', 'kitchen', 'k1')).toBe(false)
    // a client id that is a wildcard does not become one
    expect(allows(rules, 'read', 'clients/k2/inbox', 'kitchen', '+')).toBe(false)
    expect(allows(rules, 'read', 'clients/+/inbox', 'kitchen', '+')).toBe(false)
  })

  it('keeps read and write apart', () => {
    expect(allows(rules, 'write', 'reports/kitchen', 'kitchen', 'k1')).toBe(true)
    expect(allows(rules, 'read', 'reports/kitchen', 'kitchen', 'k1')).toBe(false)
    expect(allows(rules, 'read', 'public/x/status', 'kitchen', 'k1')).toBe(true)
    expect(allows(rules, 'write', 'public/x/status', 'kitchen', 'k1')).toBe(false)
  })

  it('gives a device its own subtrees in every firmware layout, and nobody else’s', () => {
    const own = ['devices/kitchen/telemetry', 'tele/kitchen/SENSOR', 'cmnd/kitchen/POWER', 'stat/kitchen/RESULT', 'kitchen/sensor/t/state', 'homie/kitchen/$state', 'homeassistant/sensor/kitchen/t/config']
    for (const topic of own) {
      expect(allows(DEFAULT_RULES.device, 'write', topic, 'kitchen', 'kitchen'), topic).toBe(true)
      expect(allows(DEFAULT_RULES.device, 'read', topic, 'kitchen', 'kitchen'), topic).toBe(true)
      expect(allows(DEFAULT_RULES.device, 'write', topic.replace('kitchen', 'garage'), 'kitchen', 'kitchen'), topic).toBe(false)
    }
    expect(allows(DEFAULT_RULES.device, 'read', '#', 'kitchen', 'kitchen')).toBe(false)
    expect(allows(DEFAULT_RULES.device, 'read', 'tele/+/SENSOR', 'kitchen', 'kitchen')).toBe(false)
  })

  it('lets only the admin read $SYS, and the viewer write nothing', () => {
    expect(allows(DEFAULT_RULES.admin, 'read', '$SYS/#', 'root', 'c')).toBe(true)
    expect(allows(DEFAULT_RULES.admin, 'read', '$SYS/broker/uptime', 'root', 'c')).toBe(true)
    expect(allows(DEFAULT_RULES.operator, 'read', '$SYS/#', 'op', 'c')).toBe(false)
    expect(allows(DEFAULT_RULES.operator, 'read', '$SYS/broker/uptime', 'op', 'c')).toBe(false)
    expect(allows(DEFAULT_RULES.operator, 'read', '#', 'op', 'c')).toBe(true)
    expect(allows(DEFAULT_RULES.viewer, 'read', '#', 'v', 'c')).toBe(true)
    expect(allows(DEFAULT_RULES.viewer, 'write', 'devices/x', 'v', 'c')).toBe(false)
  })
})

describe('Backoff', () => {
  it('forgives three failures, then doubles the wait up to a minute', () => {
    const backoff = new Backoff()
    const t = 1_000_000
    for (let i = 0; i < 3; i++) {
      backoff.fail('ip', t)
      expect(backoff.wait('ip', t)).toBe(0)
    }
    const waits = []
    for (let i = 0; i < 9; i++) {
      backoff.fail('ip', t)
      waits.push(backoff.wait('ip', t))
    }
    expect(waits).toEqual([1000, 2000, 4000, 8000, 16_000, 32_000, 60_000, 60_000, 60_000])
    // the wait runs out
    expect(backoff.wait('ip', t + 59_999)).toBe(1)
    expect(backoff.wait('ip', t + 60_000)).toBe(0)
  })

  it('keeps keys apart, and a success forgets the failures', () => {
    const backoff = new Backoff()
    for (let i = 0; i < 5; i++) backoff.fail('a', 0)
    expect(backoff.wait('a', 0)).toBeGreaterThan(0)
    expect(backoff.wait('b', 0)).toBe(0)
    backoff.succeed('a')
    expect(backoff.wait('a', 0)).toBe(0)
    // and starts counting again from nothing
    for (let i = 0; i < 3; i++) backoff.fail('a', 0)
    expect(backoff.wait('a', 0)).toBe(0)
  })

  it('is bounded: a flood of names forgets the least recently failed first', () => {
    const backoff = new Backoff(3)
    for (let i = 0; i < 4; i++) backoff.fail('old', 0)
    for (let i = 0; i < 4; i++) backoff.fail('kept', 0)
    for (const name of ['n1', 'n2']) backoff.fail(name, 0)
    expect(backoff.wait('old', 0)).toBe(0)
    expect(backoff.wait('kept', 0)).toBe(1000)
    // a failure refreshes a key, so an attacker's own key is not the one pushed out
    backoff.fail('kept', 0)
    backoff.fail('n3', 0)
    expect(backoff.wait('kept', 0)).toBe(2000)
  })
})
