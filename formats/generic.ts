/**
 * Pulseboard's own convention:
 *   devices/<id>/telemetry  JSON object of numbers (nested objects flatten as `a.b`), or one number (metric `value`);
 *                           optional `ts` (epoch ms or ISO time) and `units` ({"temperature": "°C"})
 *   devices/<id>/status     `online` / `offline`
 *   devices/<id>/<metric>   one number or ON/OFF (same device as telemetry, so it is not split off by the fallback)
 *   devices/<id>/commands   where commands go; never a reading
 */
import type { ParseResult } from './types.ts'
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

export const GENERIC_ROOT = 'devices'
const SKIP_TOP = new Set(['ts', 'units'])
const MAX_UNIT_LENGTH = 32

// Null when the topic is not in the generic namespace.
export function parseGeneric(msg: Message, limits: Limits): ParseResult | null {
  const { levels } = msg
  if (levels[0] !== GENERIC_ROOT) return null
  if (levels.length !== 3) return null
  const id = levels[1]!
  const kind = levels[2]!
  if (id.length === 0 || kind.length === 0) return empty()
  const commandBase = `${GENERIC_ROOT}/${id}`
  const out = new Collector(limits.maxReadings)

  if (kind === 'commands') return empty()
  if (kind === 'status') {
    const online = parseOnline(msg.payload)
    if (online !== undefined) out.fact(makeFact(id, 'generic', { online, commandBase }))
    return out.result()
  }

  const binary: string[] = []
  if (kind === 'telemetry') {
    const obj = parseJsonObject(msg.payload)
    if (obj) {
      const ts = payloadTime(obj['ts'], msg.ts) ?? msg.ts
      const units = obj['units']
      const unitOf = (metric: string): string | undefined => {
        if (typeof units !== 'object' || units === null || !Object.hasOwn(units, metric)) return undefined
        const unit: unknown = (units as Record<string, unknown>)[metric]
        return typeof unit === 'string' && unit.length > 0 && unit.length <= MAX_UNIT_LENGTH ? unit : undefined
      }
      // "ON"/"OFF" as in devices/<id>/<metric>, so both ways of sending a state agree
      for (const v of flatten(obj, { max: limits.maxReadings, skipTop: SKIP_TOP, onOffStrings: true })) {
        const metric = v.path.join('.')
        if (out.reading(id, metric, v.value, ts, unitOf(metric)) && v.binary) binary.push(metric)
      }
    } else {
      scalar(out, id, 'value', msg, binary)
    }
  } else {
    scalar(out, id, kind, msg, binary)
  }
  if (out.readings.length > 0) out.fact(makeFact(id, 'generic', { commandBase, binary }))
  return out.result()
}

function scalar(out: Collector, id: string, metric: string, msg: Message, binary: string[]): void {
  const n = parseNumber(msg.payload)
  if (n !== undefined) {
    out.reading(id, metric, n, msg.ts)
    return
  }
  const s = parseSwitch(msg.payload)
  if (s !== undefined && out.reading(id, metric, s, msg.ts)) binary.push(metric)
}
