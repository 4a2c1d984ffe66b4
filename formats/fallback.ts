/**
 * Any topic no firmware convention claimed:
 *   a/b/temp = "21.5"       device `a/b`, metric `temp`
 *   a/b/relay = "ON"        device `a/b`, metric `relay` = 1, binary (ON/OFF/true/false, any case)
 *   weather = "12"          one level: device `weather`, metric `value`
 *   a/b/status = "online"   device `a/b` online (also `/availability`)
 *   zigbee2mqtt/kitchen = {"temperature":21,"state":"ON"}
 *                           a JSON object names its own metrics, so the whole topic is the device:
 *                           device `zigbee2mqtt/kitchen`, metrics `temperature`, `state` (nested: `a.b`)
 * Topics ending in `set` or `command` are commands (this module's own command topic is
 * `<device>/<metric>/set`), so they never become readings.
 */
import type { ParseResult } from './types.ts'
import type { EsphomeState } from './esphome.ts'
import {
  Collector,
  empty,
  flatten,
  makeFact,
  parseJsonObject,
  parseNumber,
  parseOnline,
  parseSwitch,
  payloadTime,
  type Limits,
  type Message,
} from './values.ts'

const SKIP_TOP = new Set(['ts'])

export function parseFallback(msg: Message, limits: Limits, esphome: EsphomeState): ParseResult {
  const { levels } = msg
  const last = levels[levels.length - 1]!
  if (last === 'set' || last === 'command') return empty()
  const device = levels.length === 1 ? msg.topic : levels.slice(0, -1).join('/')
  const metric = levels.length === 1 ? 'value' : last
  if (device.length === 0 || metric.length === 0) return empty()
  const out = new Collector(limits.maxReadings)
  const binary: string[] = []

  if ((last === 'status' || last === 'availability') && levels.length > 1) {
    const online = parseOnline(msg.payload)
    if (online !== undefined) {
      // ESPHome's birth message and last will: attribute them once the prefix has shown itself as ESPHome.
      const format = last === 'status' && esphome.prefixes.has(device) ? 'esphome' : 'topic'
      out.fact(makeFact(device, format, { online, commandBase: device }))
      return out.result()
    }
  }

  const obj = parseJsonObject(msg.payload)
  if (obj) {
    const ts = payloadTime(obj['ts'], msg.ts) ?? msg.ts
    for (const v of flatten(obj, { max: limits.maxReadings, skipTop: SKIP_TOP, onOffStrings: true })) {
      const m = v.path.join('.')
      if (out.reading(msg.topic, m, v.value, ts) && v.binary) binary.push(m)
    }
    if (out.readings.length > 0) out.fact(makeFact(msg.topic, 'topic', { commandBase: msg.topic, binary }))
    return out.result()
  }

  const n = parseNumber(msg.payload)
  if (n !== undefined) out.reading(device, metric, n, msg.ts)
  else {
    const s = parseSwitch(msg.payload)
    if (s !== undefined && out.reading(device, metric, s, msg.ts)) binary.push(metric)
  }
  if (out.readings.length > 0) out.fact(makeFact(device, 'topic', { commandBase: device, binary }))
  return out.result()
}
