/**
 * Shared, pure helpers for turning device payloads into numbers and names.
 * Nothing here throws on device input.
 */
import type { DeviceFormat, Reading } from '../protocol/readings.ts'
import type { DeviceFact, ParseResult } from './types.ts'

/** Limits every format module works within; filled from the parser options. */
export interface Limits {
  maxRemembered: number
  maxPayloadLength: number
  maxReadings: number
  discoveryPrefix: string
}

/** The message being parsed, split once. */
export interface Message {
  topic: string
  levels: string[]
  payload: string
  ts: number
}

export function empty(): ParseResult {
  return { readings: [], facts: [] }
}

// Longest metric name kept; longer keys are almost certainly garbage, not a sensor.
export const MAX_METRIC_LENGTH = 256
// JSON nesting followed when flattening; real firmware stays under 5.
export const MAX_DEPTH = 12

// A name segment that would become a prototype key if a consumer stored readings in a plain object.
const UNSAFE_SEGMENTS = new Set(['__proto__', 'constructor', 'prototype'])

export function isSafeKey(key: string): boolean {
  return key.length > 0 && !UNSAFE_SEGMENTS.has(key)
}

// A device id or metric name we are willing to hand on: non-empty, bounded, no prototype segments.
export function isSafeName(name: string): boolean {
  if (name.length === 0 || name.length > MAX_METRIC_LENGTH * 4) return false
  for (const part of name.split(/[./]/)) if (UNSAFE_SEGMENTS.has(part)) return false
  return true
}

function isSafeMetric(metric: string): boolean {
  return metric.length <= MAX_METRIC_LENGTH && isSafeName(metric)
}

// Plain decimal or exponent notation, nothing else: no hex, no "Infinity", no units, no spaces inside.
const NUMERIC = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/

// A finite number from text, or undefined. `1e999` overflows to Infinity and is dropped.
export function parseNumber(text: string): number | undefined {
  if (text.length > 64) return undefined
  const t = text.trim()
  if (!NUMERIC.test(t)) return undefined
  const n = Number(t)
  return Number.isFinite(n) ? n : undefined
}

// `ON`/`OFF`/`true`/`false` in any case, as 1/0; undefined for anything else.
export function parseSwitch(text: string): 0 | 1 | undefined {
  if (text.length > 8) return undefined
  switch (text.trim().toLowerCase()) {
    case 'on':
    case 'true':
      return 1
    case 'off':
    case 'false':
      return 0
    default:
      return undefined
  }
}

// `online`/`offline` in any case; undefined for anything else.
export function parseOnline(text: string): boolean | undefined {
  if (text.length > 16) return undefined
  const t = text.trim().toLowerCase()
  if (t === 'online') return true
  if (t === 'offline') return false
  return undefined
}

// JSON.parse that returns undefined instead of throwing (truncated text, or nesting deep enough to overflow the stack).
export function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown
  } catch {
    return undefined
  }
}

// Parse only when the payload looks like a JSON object, so plain numbers and text skip JSON.parse.
export function parseJsonObject(text: string): Record<string, unknown> | undefined {
  const first = text.trimStart()[0]
  if (first !== '{') return undefined
  const value = parseJson(text)
  return isRecord(value) ? value : undefined
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

export function ownString(obj: Record<string, unknown>, key: string): string | undefined {
  if (!Object.hasOwn(obj, key)) return undefined
  const v = obj[key]
  return typeof v === 'string' ? v : undefined
}

/** One numeric leaf of a JSON document. */
export interface FlatValue {
  /** Keys from the root; array positions are decimal strings. */
  path: string[]
  value: number
  binary: boolean
}

export interface FlattenOptions {
  max: number
  /** Top-level keys that are metadata, not metrics (`ts`, Tasmota `Time`). */
  skipTop?: ReadonlySet<string>
  /** Whether `"ON"`/`"OFF"` strings count as binary values (Tasmota relays, Zigbee2MQTT states). */
  onOffStrings?: boolean
}

// Numbers, booleans (1/0) and optionally ON/OFF strings from a JSON value, depth-first
// in document order. Stops at MAX_DEPTH and after `max` values, so a hostile document
// costs at most its parse.
export function flatten(root: unknown, opts: FlattenOptions): FlatValue[] {
  const out: FlatValue[] = []
  const path: string[] = []
  const visit = (node: unknown, depth: number): void => {
    if (out.length >= opts.max) return
    if (typeof node === 'number') {
      if (Number.isFinite(node) && path.length > 0) out.push({ path: [...path], value: node, binary: false })
      return
    }
    if (typeof node === 'boolean') {
      if (path.length > 0) out.push({ path: [...path], value: node ? 1 : 0, binary: true })
      return
    }
    if (typeof node === 'string') {
      if (!opts.onOffStrings || path.length === 0) return
      const t = node.length <= 3 ? node.toUpperCase() : ''
      if (t === 'ON' || t === 'OFF') out.push({ path: [...path], value: t === 'ON' ? 1 : 0, binary: true })
      return
    }
    if (typeof node !== 'object' || node === null || depth >= MAX_DEPTH) return
    if (Array.isArray(node)) {
      for (let i = 0; i < node.length && out.length < opts.max; i++) {
        path.push(String(i))
        visit(node[i], depth + 1)
        path.pop()
      }
      return
    }
    for (const key of Object.keys(node)) {
      if (out.length >= opts.max) return
      if (!isSafeKey(key) || key.length > MAX_METRIC_LENGTH) continue
      if (depth === 0 && opts.skipTop?.has(key)) continue
      path.push(key)
      visit((node as Record<string, unknown>)[key], depth + 1)
      path.pop()
    }
  }
  visit(root, 0)
  return out
}

// How far a device clock may disagree with ours before we trust our own.
const MAX_PAST_MS = 7 * 24 * 3600_000
const MAX_FUTURE_MS = 5 * 60_000
// A time without a zone is the device's local time with an unknown offset. Read as UTC it is
// only trusted when that lands within 10 minutes of receipt (every real zone offset is a
// multiple of 15 minutes, so a device in another zone always falls back to the receive time).
const LOCAL_WINDOW_MS = 10 * 60_000
const ISO = /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(Z|[+-]\d{2}:?\d{2})?$/

// A payload timestamp, if it is plausible next to the receive time: epoch milliseconds
// or an ISO 8601 string. Undefined means "use the receive time".
export function payloadTime(value: unknown, receivedAt: number): number | undefined {
  if (typeof value === 'number') return withinWindow(value, receivedAt, MAX_PAST_MS, MAX_FUTURE_MS)
  if (typeof value !== 'string' || value.length > 40) return undefined
  const m = ISO.exec(value.trim())
  if (!m) return undefined
  const zone = m[8]
  const iso = `${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6] ?? '00'}${m[7] ? `.${m[7].slice(0, 3)}` : ''}`
  if (zone === undefined) return withinWindow(Date.parse(`${iso}Z`), receivedAt, LOCAL_WINDOW_MS, LOCAL_WINDOW_MS)
  const offset = zone === 'Z' ? 'Z' : `${zone.slice(0, 3)}:${zone.slice(-2)}`
  return withinWindow(Date.parse(iso + offset), receivedAt, MAX_PAST_MS, MAX_FUTURE_MS)
}

function withinWindow(t: number, receivedAt: number, past: number, future: number): number | undefined {
  if (!Number.isFinite(t)) return undefined
  return t >= receivedAt - past && t <= receivedAt + future ? t : undefined
}

// Collects one message's readings and facts, enforcing finiteness, safe names and the per-message cap.
export class Collector {
  readonly readings: Reading[] = []
  readonly facts: DeviceFact[] = []
  constructor(private readonly max: number) {}

  reading(device: string, metric: string, value: number, ts: number, unit?: string): boolean {
    if (this.readings.length >= this.max) return false
    if (!Number.isFinite(value) || !isSafeName(device) || !isSafeMetric(metric)) return false
    const r: Reading = { device, metric, value, ts }
    if (unit !== undefined && unit.length > 0 && unit.length <= 32) r.unit = unit
    this.readings.push(r)
    return true
  }

  fact(f: DeviceFact): void {
    if (!isSafeName(f.device)) return
    this.facts.push(f)
  }

  result(): ParseResult {
    return { readings: this.readings, facts: this.facts }
  }
}

// A fact with only the fields that carry information (no empty arrays or maps).
export function makeFact(
  device: string,
  format: DeviceFormat,
  extra: {
    online?: boolean | undefined
    name?: string | undefined
    commandBase?: string | undefined
    commands?: Record<string, string> | undefined
    binary?: string[] | undefined
    labels?: Record<string, string> | undefined
  } = {},
): DeviceFact {
  const f: DeviceFact = { device, format }
  if (extra.online !== undefined) f.online = extra.online
  if (extra.name !== undefined && extra.name.length > 0) f.name = extra.name.slice(0, 256)
  if (extra.commandBase !== undefined) f.commandBase = extra.commandBase
  if (extra.commands !== undefined && Object.keys(extra.commands).length > 0) f.commands = extra.commands
  if (extra.binary !== undefined && extra.binary.length > 0) f.binary = [...new Set(extra.binary)]
  if (extra.labels !== undefined && Object.keys(extra.labels).length > 0) f.labels = extra.labels
  return f
}

// A Map that forgets its oldest entries beyond `max`. Announcements (discovery configs,
// Homie attributes) come from the network, so the memory they cost must be bounded.
export class BoundedMap<K, V> {
  private readonly map = new Map<K, V>()
  constructor(private readonly max: number) {}

  get(key: K): V | undefined {
    return this.map.get(key)
  }

  has(key: K): boolean {
    return this.map.has(key)
  }

  // Insert or refresh; returns the entries evicted to make room.
  set(key: K, value: V): Array<[K, V]> {
    this.map.delete(key)
    this.map.set(key, value)
    const evicted: Array<[K, V]> = []
    while (this.map.size > this.max) {
      const oldest = this.map.entries().next().value
      if (oldest === undefined) break
      this.map.delete(oldest[0])
      evicted.push(oldest)
    }
    return evicted
  }

  delete(key: K): boolean {
    return this.map.delete(key)
  }

  get size(): number {
    return this.map.size
  }

  /** Oldest first: loading them back with `set` in this order keeps the same eviction order. */
  entries(): [K, V][] {
    return [...this.map]
  }
}
