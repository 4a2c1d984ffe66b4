import { topicError } from '../protocol/topics.ts'
import { EsphomeState, parseEsphome } from './esphome.ts'
import { parseFallback } from './fallback.ts'
import { parseGeneric } from './generic.ts'
import { HomeAssistantState, parseDiscovery, parseMapped } from './homeassistant.ts'
import { HomieState, parseHomie } from './homie.ts'
import { parseTasmota } from './tasmota.ts'
import {
  ReadingsParserOptionsSchema,
  type FormatsState,
  type ParseResult,
  type ReadingsParser,
  type ReadingsParserOptions,
} from './types.ts'
import { empty, type Limits, type Message } from './values.ts'

const defaults: Required<ReadingsParserOptions> = {
  maxRememberedEntries: 10_000,
  maxPayloadLength: 1_048_576,
  maxReadingsPerMessage: 512,
  discoveryPrefix: 'homeassistant',
}

// Turns MQTT messages from real firmware into readings and device facts.
// Formats are tried in order; the first that claims a topic decides it:
// HA discovery configs, topics a discovery config mapped, Homie, generic (`devices/`),
// Tasmota, ESPHome, then the topic-named fallback. Throws only on invalid options.
// `state` is a snapshot of an earlier parser: what it learned from discovery is known at once.
export function createReadingsParser(options: ReadingsParserOptions = {}, state?: FormatsState): ReadingsParser {
  const checked = ReadingsParserOptionsSchema.safeParse(options)
  if (!checked.success) {
    const issue = checked.error.issues[0]
    throw new TypeError(`invalid readings parser option ${issue?.path.join('.') ?? ''}: ${issue?.message ?? ''}`)
  }
  const opts = { ...defaults, ...stripUndefined(checked.data) }
  const limits: Limits = {
    maxRemembered: opts.maxRememberedEntries,
    maxPayloadLength: opts.maxPayloadLength,
    maxReadings: opts.maxReadingsPerMessage,
    discoveryPrefix: opts.discoveryPrefix,
  }
  const homeassistant = new HomeAssistantState(limits.maxRemembered)
  const homie = new HomieState(limits.maxRemembered)
  const esphome = new EsphomeState(limits.maxRemembered)
  if (state) restore(state)

  /** A snapshot from disk may be from another version or damaged: what does not fit is skipped. */
  function restore(saved: FormatsState): void {
    const pairs = (value: unknown) => (Array.isArray(value) ? value.filter((p) => Array.isArray(p) && typeof p[0] === 'string') : [])
    for (const [topic, entries] of pairs(saved.homeassistant)) if (Array.isArray(entries)) homeassistant.put(topic, entries)
    for (const [topic, attributes] of pairs(saved.homie)) if (attributes && typeof attributes === 'object') homie.properties.set(topic, attributes)
    for (const prefix of Array.isArray(saved.esphome) ? saved.esphome : []) if (typeof prefix === 'string') esphome.prefixes.set(prefix, true)
  }

  function route(msg: Message): ParseResult {
    return (
      parseDiscovery(msg, limits, homeassistant) ??
      parseMapped(msg, limits, homeassistant) ??
      // The rest of the discovery prefix is HA's own traffic (e.g. `homeassistant/status`), not devices.
      (msg.levels[0] === limits.discoveryPrefix ? empty() : null) ??
      // Tasmota 9.2+ announces itself to Home Assistant here (retained, by default): configuration, not readings.
      (msg.levels[0] === 'tasmota' && msg.levels[1] === 'discovery' ? empty() : null) ??
      parseHomie(msg, limits, homie) ??
      parseGeneric(msg, limits) ??
      parseTasmota(msg, limits) ??
      parseEsphome(msg, limits, esphome) ??
      parseFallback(msg, limits, esphome)
    )
  }

  return {
    snapshot(): FormatsState {
      return {
        homeassistant: homeassistant.snapshot(),
        homie: homie.properties.entries(),
        esphome: esphome.prefixes.entries().map(([prefix]) => prefix),
      }
    },
    parse(topic: string, payload: string, ts: number): ParseResult {
      // Callers in plain JS (or a bad cast) may hand us anything; none of it may throw.
      if (typeof topic !== 'string' || typeof payload !== 'string') return empty()
      // `$SYS/...` and every other `$` topic belong to the broker; wildcards and NUL cannot be published
      if (topicError(topic) !== null) return empty()
      if (payload.length > limits.maxPayloadLength) return empty()
      const receivedAt = typeof ts === 'number' && Number.isFinite(ts) ? ts : Date.now()
      try {
        return route({ topic, levels: topic.split('/'), payload, ts: receivedAt })
      } catch {
        // Defence in depth: every module is written not to throw, but a device must never stop the stream.
        return empty()
      }
    },
  }
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>
}
