/**
 * Homie convention, root topic `homie`:
 *   v3/v4: homie/<device>/$state, $name; homie/<device>/<node>/<property>[/$unit|$name|$datatype|$settable]
 *   v5:    homie/5/<device>/$state, $description (JSON with nodes, properties, units, datatypes)
 *          homie/5/<device>/<node>/<property>
 *   commands: .../<node>/<property>/set  (never a reading)
 * Attributes arrive on their own topics, before or after the values they describe, so they are
 * remembered per property. A v3 device whose id is literally `5` is read as v5; ids like that
 * are rare and the v5 layout is the one in use today.
 */
import type { ParseResult } from './types.ts'
import {
  BoundedMap,
  Collector,
  empty,
  isRecord,
  isSafeName,
  makeFact,
  ownString,
  parseJsonObject,
  parseNumber,
  parseSwitch,
  type Limits,
  type Message,
} from './values.ts'

export const HOMIE_ROOT = 'homie'

export interface PropertyAttributes {
  unit?: string
  name?: string
  datatype?: string
  settable?: boolean
}

// Property attributes by `<base>/<node>/<property>`, bounded.
export class HomieState {
  readonly properties: BoundedMap<string, PropertyAttributes>
  constructor(max: number) {
    this.properties = new BoundedMap(max)
  }
}

// Homie's lifecycle: init/ready/alert are connected; disconnected/sleeping/lost are not.
const ONLINE_STATES: Record<string, boolean> = {
  init: true,
  ready: true,
  alert: true,
  disconnected: false,
  sleeping: false,
  lost: false,
}
const NON_NUMERIC_DATATYPES = new Set(['string', 'enum', 'color', 'datetime', 'duration', 'json'])
const MAX_DESCRIBED_PROPERTIES = 1024
// Remembered strings are bounded too, or a bounded number of entries could still hold gigabytes.
const MAX_UNIT_LENGTH = 32
const MAX_LABEL_LENGTH = 256

// Null when the topic is outside `homie/`.
export function parseHomie(msg: Message, limits: Limits, state: HomieState): ParseResult | null {
  const { levels } = msg
  if (levels[0] !== HOMIE_ROOT) return null
  const v5 = levels[1] === '5' && levels.length >= 4
  const baseLen = v5 ? 3 : 2
  const device = levels[baseLen - 1]
  if (device === undefined || device.length === 0 || device.startsWith('$') || !isSafeName(device)) return empty()
  const base = levels.slice(0, baseLen).join('/')
  const rest = levels.slice(baseLen)
  const out = new Collector(limits.maxReadings)
  const attr = rest[0]
  if (attr === undefined) return empty()

  if (attr.startsWith('$')) {
    if (rest.length !== 1) return empty()
    const text = msg.payload.trim()
    if (attr === '$state') {
      const online = Object.hasOwn(ONLINE_STATES, text) ? ONLINE_STATES[text] : undefined
      if (online !== undefined) out.fact(makeFact(device, 'homie', { online, commandBase: base }))
    } else if (attr === '$online') {
      // Homie 2 announced connectivity as a boolean.
      const s = parseSwitch(text)
      if (s !== undefined) out.fact(makeFact(device, 'homie', { online: s === 1, commandBase: base }))
    } else if (attr === '$name') {
      out.fact(makeFact(device, 'homie', { name: msg.payload, commandBase: base }))
    } else if (attr === '$homie') {
      out.fact(makeFact(device, 'homie', { commandBase: base }))
    } else if (attr === '$description') {
      describe(out, device, base, msg.payload, state)
    }
    return out.result()
  }

  const node = attr
  const property = rest[1]
  if (property === undefined || node.length === 0 || property.length === 0) return empty()
  if (property.startsWith('$')) return empty() // node attributes: $name, $type, $properties
  const metric = `${node}.${property}`
  if (!isSafeName(metric)) return empty()
  const key = `${base}/${node}/${property}`

  if (rest.length === 3) {
    const sub = rest[2]!
    if (!sub.startsWith('$')) return empty() // `set` and anything else below a property
    const attrs: PropertyAttributes = { ...state.properties.get(key) }
    const text = msg.payload.trim()
    if (sub === '$unit') attrs.unit = msg.payload.slice(0, MAX_UNIT_LENGTH)
    else if (sub === '$name') attrs.name = msg.payload.slice(0, MAX_LABEL_LENGTH)
    else if (sub === '$datatype') attrs.datatype = text.slice(0, 16)
    else if (sub === '$settable') attrs.settable = text === 'true'
    else return empty()
    state.properties.set(key, attrs)
    out.fact(propertyFact(device, base, metric, key, attrs))
    return out.result()
  }
  if (rest.length !== 2) return empty()

  const attrs = state.properties.get(key) ?? {}
  const fact = propertyFact(device, base, metric, key, attrs)
  if (attrs.datatype === undefined || !NON_NUMERIC_DATATYPES.has(attrs.datatype)) {
    const n = attrs.datatype === 'boolean' ? undefined : parseNumber(msg.payload)
    if (n !== undefined) out.reading(device, metric, n, msg.ts, attrs.unit)
    else if (attrs.datatype === undefined || attrs.datatype === 'boolean') {
      const t = msg.payload.trim()
      const b = t === 'true' ? 1 : t === 'false' ? 0 : undefined
      if (b !== undefined && out.reading(device, metric, b, msg.ts)) {
        fact.binary = [metric]
      }
    }
  }
  out.fact(fact)
  return out.result()
}

function propertyFact(device: string, base: string, metric: string, key: string, attrs: PropertyAttributes) {
  return makeFact(device, 'homie', {
    commandBase: base,
    commands: attrs.settable ? { [metric]: `${key}/set` } : undefined,
    binary: attrs.datatype === 'boolean' ? [metric] : undefined,
    labels: attrs.name ? { [metric]: attrs.name } : undefined,
  })
}

// Homie 5 `$description`: nodes and properties as objects keyed by id (or, in drafts, arrays with `id`).
function describe(out: Collector, device: string, base: string, payload: string, state: HomieState): void {
  const doc = parseJsonObject(payload)
  if (!doc) return
  const commands: Record<string, string> = {}
  const binary: string[] = []
  const labels: Record<string, string> = {}
  let described = 0
  for (const [nodeId, node] of entriesOf(doc['nodes'])) {
    for (const [propId, prop] of entriesOf(node['properties'])) {
      if (++described > MAX_DESCRIBED_PROPERTIES) break
      const metric = `${nodeId}.${propId}`
      if (!isSafeName(metric)) continue
      const key = `${base}/${nodeId}/${propId}`
      const attrs: PropertyAttributes = {}
      const unit = ownString(prop, 'unit')
      const name = ownString(prop, 'name')
      const datatype = ownString(prop, 'datatype')
      if (unit !== undefined) attrs.unit = unit.slice(0, MAX_UNIT_LENGTH)
      if (name !== undefined) attrs.name = name.slice(0, MAX_LABEL_LENGTH)
      if (datatype !== undefined) attrs.datatype = datatype.slice(0, 16)
      attrs.settable = prop['settable'] === true
      state.properties.set(key, attrs)
      if (attrs.settable) commands[metric] = `${key}/set`
      if (datatype === 'boolean') binary.push(metric)
      if (attrs.name) labels[metric] = attrs.name
    }
  }
  out.fact(makeFact(device, 'homie', { name: ownString(doc, 'name'), commandBase: base, commands, binary, labels }))
}

function entriesOf(container: unknown): Array<[string, Record<string, unknown>]> {
  const out: Array<[string, Record<string, unknown>]> = []
  if (Array.isArray(container)) {
    for (const item of container.slice(0, MAX_DESCRIBED_PROPERTIES)) {
      if (!isRecord(item)) continue
      const id = ownString(item, 'id')
      if (id && isSafeName(id) && !id.includes('/')) out.push([id, item])
    }
  } else if (isRecord(container)) {
    for (const id of Object.keys(container).slice(0, MAX_DESCRIBED_PROPERTIES)) {
      const item = container[id]
      if (isRecord(item) && isSafeName(id) && !id.includes('/')) out.push([id, item])
    }
  }
  return out
}
