import { topicMatches } from '../protocol/topics.ts'
import type { Role } from '../protocol/access.ts'

/** One ACL rule: what may be done on the topics a pattern matches. */
export interface AclRule {
  access: 'read' | 'write' | 'readwrite'
  /** An MQTT filter (`+`, `#`), with mosquitto's `%u` (user name or device id) and `%c` (client id). */
  topic: string
}

/**
 * What each role may touch when the config names no rules of its own for it. A device may
 * read and write its own subtrees in the layouts the firmware formats use (docs/devices.md):
 * the generic `devices/<id>/…`, Tasmota's `tele|cmnd|stat/<id>/…`, ESPHome's `<id>/…`,
 * Homie's `homie/<id>/…`, and Home Assistant discovery under `homeassistant/<component>/<id>/…`.
 */
export const DEFAULT_RULES: Record<Role, readonly AclRule[]> = {
  admin: [{ access: 'readwrite', topic: '#' }, { access: 'read', topic: '$SYS/#' }],
  operator: [{ access: 'readwrite', topic: '#' }],
  viewer: [{ access: 'read', topic: '#' }],
  device: ['devices/%u/#', 'tele/%u/#', 'cmnd/%u/#', 'stat/%u/#', '%u/#', 'homie/%u/#', 'homeassistant/+/%u/#'].map((topic) => ({ access: 'readwrite' as const, topic })),
}

/**
 * The rule's filter for one client: `%u` and `%c` replaced, or null when the rule cannot apply.
 * User names are checked where they are made, but a client id is whatever the client sends: one
 * with `/`, `+` or `#` (or `$` first, or none at all) would widen the rule (`clients/%c/#` with id
 * `#`), so such a rule does not apply to it, as in Mosquitto.
 */
export function expand(pattern: string, user: string, clientId: string): string | null {
  if (pattern.includes('%u') && !fillsOneLevel(user)) return null
  if (pattern.includes('%c') && !fillsOneLevel(clientId)) return null
  return pattern.replaceAll('%u', user).replaceAll('%c', clientId)
}

const fillsOneLevel = (name: string) => name.length > 0 && !name.startsWith('$') && !/[/+#]/.test(name)

/**
 * Whether every topic `filter` can match is matched by `pattern`: a subscription to
 * `devices/a/+` is within `devices/a/#`, `#` is within nothing but `#`.
 */
export function filterWithin(pattern: string, filter: string): boolean {
  const p = pattern.split('/')
  const f = filter.split('/')
  // [MQTT-4.7.2-1] a wildcard first level never reaches `$` topics, so neither does a rule that starts with one
  if (f[0]!.startsWith('$') && (p[0] === '#' || p[0] === '+')) return false
  for (let i = 0; i < p.length; i++) {
    const level = p[i]!
    if (level === '#') return true
    if (i >= f.length) return false
    const asked = f[i]!
    if (asked === '#') return false
    if (level === '+') continue
    if (asked !== level) return false
  }
  return f.length === p.length
}

/** Whether `rules` allow `access` to `filterOrTopic` (a topic is a filter without wildcards). */
export function allows(rules: readonly AclRule[], access: 'read' | 'write', filterOrTopic: string, user: string, clientId: string): boolean {
  const wild = filterOrTopic.includes('+') || filterOrTopic.includes('#')
  return rules.some((rule) => {
    if (rule.access !== 'readwrite' && rule.access !== access) return false
    const pattern = expand(rule.topic, user, clientId)
    if (pattern === null) return false
    return wild ? filterWithin(pattern, filterOrTopic) : topicMatches(pattern, filterOrTopic)
  })
}
