/**
 * MQTT topic rules (MQTT 3.1.1 section 4.7), shared by the bridge and every client.
 * Pure functions: they never throw on input from the wire.
 */

/** Longest topic MQTT can carry: a UTF-8 string with a 16-bit length [MQTT-1.5.3]. */
export const MAX_TOPIC_LENGTH = 65535

/**
 * Answers to commands sent as MQTT 5 requests come to `pulseboard/replies/<Pulseboard's client id>`:
 * they are shown as messages, but are no device's readings.
 */
export const REPLY_TOPIC_PREFIX = 'pulseboard/replies/'

/** A topic a client may publish to: no wildcards, no NUL, not `$`-reserved. Returns why not, or null. */
export function topicError(topic: string): string | null {
  if (topic.length === 0) return 'topic is empty'
  if (topic.length > MAX_TOPIC_LENGTH) return `topic is longer than ${MAX_TOPIC_LENGTH} characters`
  // [MQTT-3.3.2-2] the topic name in a PUBLISH must not contain wildcards
  if (topic.includes('+') || topic.includes('#')) return 'topic must not contain + or #'
  // [MQTT-1.5.3-2] a UTF-8 string must not contain U+0000
  if (topic.includes('\u0000')) return 'topic must not contain NUL'
  // [MQTT-4.7.2-1] `$` topics belong to the broker
  if (topic.startsWith('$')) return 'topics starting with $ are reserved for the broker'
  return null
}

/** A valid subscription filter per [MQTT-4.7.1]. Returns why not, or null. */
export function filterError(filter: string): string | null {
  if (filter.length === 0) return 'filter is empty'
  if (filter.length > MAX_TOPIC_LENGTH) return `filter is longer than ${MAX_TOPIC_LENGTH} characters`
  if (filter.includes('\u0000')) return 'filter must not contain NUL'
  const levels = filter.split('/')
  for (let i = 0; i < levels.length; i++) {
    const level = levels[i]!
    // [MQTT-4.7.1-2] `#` stands alone and last
    if (level.includes('#') && (level !== '#' || i !== levels.length - 1)) {
      return '# must be the whole last level of a filter'
    }
    // [MQTT-4.7.1-3] `+` occupies a whole level
    if (level.includes('+') && level !== '+') return '+ must be a whole level of a filter'
  }
  return null
}

/**
 * Whether `topic` matches `filter`. Wildcards at the first level do not match
 * `$` topics [MQTT-4.7.2-1], so `#` means "everything but $SYS".
 */
export function topicMatches(filter: string, topic: string): boolean {
  // the default filter of every `/live` client, checked for each message
  if (filter === '#') return !topic.startsWith('$')
  if (topic.startsWith('$') && (filter.startsWith('#') || filter.startsWith('+'))) return false
  const f = filter.split('/')
  const t = topic.split('/')
  for (let i = 0; i < f.length; i++) {
    const level = f[i]
    // `a/#` also matches `a` [MQTT-4.7.1-2]
    if (level === '#') return true
    if (i >= t.length) return false
    if (level !== '+' && level !== t[i]) return false
  }
  return f.length === t.length
}
