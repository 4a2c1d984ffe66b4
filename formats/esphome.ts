/**
 * ESPHome's MQTT client (default topic_prefix = node name):
 *   <prefix>/status                          online | offline (birth message and last will)
 *   <prefix>/<component>/<object_id>/state   sensor: "21.5"; binary_sensor/switch/fan: ON | OFF;
 *                                            light: {"state":"ON","brightness":255}
 *   <prefix>/<component>/<object_id>/command where commandable components listen
 *   <prefix>/<component>/<object_id>/<attr>/state   climate, cover, fan, valve sub-states
 *                                            (current_temperature, position, ...)
 * The component level is what makes the topic ESPHome's, so a prefix may have several
 * levels: everything before the component is the prefix, and the prefix is the device id.
 */
import type { ParseResult } from './types.ts'
import {
  BoundedMap,
  Collector,
  empty,
  flatten,
  isSafeName,
  makeFact,
  parseJsonObject,
  parseNumber,
  parseSwitch,
  type Limits,
  type Message,
} from './values.ts'

export const ESPHOME_COMPONENTS: ReadonlySet<string> = new Set([
  'sensor',
  'binary_sensor',
  'switch',
  'number',
  'light',
  'fan',
  'cover',
  'climate',
  'text_sensor',
  'select',
  'button',
  'lock',
  'valve',
  'text',
  'event',
  'update',
  'datetime',
  'alarm_control_panel',
])
// Components that publish sub-states one level below the object id.
const SUB_STATE_COMPONENTS: ReadonlySet<string> = new Set(['climate', 'cover', 'fan', 'valve'])
const COMMANDABLE: ReadonlySet<string> = new Set([
  'switch',
  'number',
  'light',
  'fan',
  'cover',
  'lock',
  'valve',
  'select',
  'text',
  'climate',
  'button',
  'alarm_control_panel',
])

// Remembers which prefixes are ESPHome nodes, so `<prefix>/status` can be attributed to them.
export class EsphomeState {
  readonly prefixes: BoundedMap<string, true>
  constructor(max: number) {
    this.prefixes = new BoundedMap(max)
  }
}

interface Shape {
  prefix: string
  component: string
  object: string
  attr?: string
  kind: 'state' | 'command'
}

function shapeOf(levels: string[]): Shape | null {
  const n = levels.length
  const last = levels[n - 1]
  if (last !== 'state' && last !== 'command') return null
  // <prefix>/<component>/<object>/state is preferred: it is what every component publishes.
  if (n >= 4 && ESPHOME_COMPONENTS.has(levels[n - 3]!)) {
    return { prefix: levels.slice(0, n - 3).join('/'), component: levels[n - 3]!, object: levels[n - 2]!, kind: last }
  }
  if (n >= 5 && SUB_STATE_COMPONENTS.has(levels[n - 4]!)) {
    return {
      prefix: levels.slice(0, n - 4).join('/'),
      component: levels[n - 4]!,
      object: levels[n - 3]!,
      attr: levels[n - 2]!,
      kind: last,
    }
  }
  return null
}

// Null when the topic is not ESPHome-shaped.
export function parseEsphome(msg: Message, limits: Limits, state: EsphomeState): ParseResult | null {
  const shape = shapeOf(msg.levels)
  if (!shape) return null
  if (shape.kind === 'command') return empty()
  const { prefix, component, object, attr } = shape
  if (object.length === 0 || attr === '') return empty()
  const metric = attr === undefined ? object : `${object}.${attr}`
  if (!isSafeName(prefix) || !isSafeName(metric)) return empty()
  state.prefixes.set(prefix, true)

  const out = new Collector(limits.maxReadings)
  const binary: string[] = []
  const commands: Record<string, string> = {}
  const base = `${prefix}/${component}/${object}${attr === undefined ? '' : `/${attr}`}`
  // current_temperature, action, ... are reports; the other sub-states have a command topic.
  const readOnlyAttr = attr !== undefined && (attr.startsWith('current_') || attr === 'action')
  if (COMMANDABLE.has(component) && !readOnlyAttr) commands[metric] = `${base}/command`

  const obj = component === 'light' && attr === undefined ? parseJsonObject(msg.payload) : undefined
  if (obj) {
    for (const v of flatten(obj, { max: limits.maxReadings, onOffStrings: true })) {
      const m = v.path.length === 1 && v.path[0] === 'state' ? metric : `${metric}.${v.path.join('.')}`
      if (out.reading(prefix, m, v.value, msg.ts) && v.binary) binary.push(m)
    }
  } else {
    const n = parseNumber(msg.payload)
    if (n !== undefined) out.reading(prefix, metric, n, msg.ts)
    else {
      const s = parseSwitch(msg.payload)
      if (s !== undefined && out.reading(prefix, metric, s, msg.ts)) binary.push(metric)
    }
  }
  out.fact(makeFact(prefix, 'esphome', { commandBase: prefix, commands, binary }))
  return out.result()
}
