import { z } from 'zod'
import type { DeviceFormat, Reading } from '../protocol/readings.ts'
import type { Entry as HomeAssistantEntry } from './homeassistant.ts'
import type { PropertyAttributes } from './homie.ts'

/** Something learned about a device from one message. Facts from many messages are merged by the caller. */
export interface DeviceFact {
  device: string
  format: DeviceFormat
  /** From a status / LWT / `$state` / availability topic. */
  online?: boolean
  /** Display name (`$name`, Home Assistant discovery device name, Tasmota DeviceName). */
  name?: string
  /** Where commands for this device go; enough for {@link commandFor} to build a topic. */
  commandBase?: string
  /** Metric name -> command topic, when the firmware announced one (HA command_topic, Homie settable property, ESPHome switch). */
  commands?: Record<string, string>
  /** Metric names that are binary (ON/OFF): relay-like, the dashboard shows a switch. */
  binary?: string[]
  /** Metric name -> display name, when the firmware announced one (Homie property `$name` or `$description`). */
  labels?: Record<string, string>
}

/** What one MQTT message yields. Both arrays are empty for anything unrecognised or malformed. */
export interface ParseResult {
  readings: Reading[]
  facts: DeviceFact[]
}

/** The device as the caller has accumulated it from {@link DeviceFact}s. */
export interface CommandTarget {
  id: string
  format: DeviceFormat
  commandBase?: string
  commands?: Record<string, string>
  /** Metrics known to be binary; lets `1`/`0` become `ON`/`OFF` (Homie: `true`/`false`). */
  binary?: string[]
}

/** A command ready to publish, or why it cannot be built. */
export type CommandResult =
  | { topic: string; payload: string }
  | {
      /** `E_UNKNOWN_COMMAND`: no such command for this device; `E_INVALID_MESSAGE`: the value cannot be sent. */
      error: 'E_UNKNOWN_COMMAND' | 'E_INVALID_MESSAGE'
      message: string
    }

export const ReadingsParserOptionsSchema = z
  .object({
    maxRememberedEntries: z.number().int().min(1).max(1_000_000).optional(),
    maxPayloadLength: z.number().int().min(1).optional(),
    maxReadingsPerMessage: z.number().int().min(1).max(100_000).optional(),
    discoveryPrefix: z
      .string()
      .min(1)
      .regex(/^[^/+#$]+$/, 'must be one topic level without wildcards or $')
      .optional(),
  })
  .strict()

/** Options for {@link createReadingsParser}. */
export interface ReadingsParserOptions {
  /**
   * Cap on each table of remembered announcements (Home Assistant discovery entries,
   * Homie property attributes, ESPHome prefixes). The oldest are forgotten first.
   * @default 10000
   */
  maxRememberedEntries?: number
  /**
   * Longer payloads yield nothing. Counted in UTF-16 code units.
   * @default 1048576
   */
  maxPayloadLength?: number
  /**
   * Readings kept from one message; the rest of a huge JSON document is ignored.
   * @default 512
   */
  maxReadingsPerMessage?: number
  /**
   * Home Assistant discovery prefix.
   * @default "homeassistant"
   */
  discoveryPrefix?: string
}

/** Stateful because discovery configs and Homie attributes arrive on one topic and apply to later ones. */
export interface ReadingsParser {
  /** Never throws. `ts` is the receive time in epoch milliseconds. */
  parse(topic: string, payload: string, ts: number): ParseResult
  /** The discovery state, to save; pass it back as `state` to a new parser to restore it. */
  snapshot(): FormatsState
}

/**
 * What the parsers learned from discovery and announcements (Home Assistant configs, Homie
 * property attributes, ESPHome prefixes), as plain JSON. A restart or another node restores it
 * with `createReadingsParser({ state })`, so devices announced long ago are still understood.
 */
export interface FormatsState {
  homeassistant: [configTopic: string, entries: HomeAssistantEntry[]][]
  homie: [propertyTopic: string, attributes: PropertyAttributes][]
  esphome: string[]
}
