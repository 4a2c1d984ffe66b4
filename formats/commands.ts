/**
 * The reverse mapping: a command for a metric of a known device, as the device's firmware expects it.
 *   generic        devices/<id>/commands             {"name":"<name>","value":<value>}
 *   tasmota        cmnd/<topic>/<name>               ON/OFF for POWER<n> and binary metrics, else text
 *   esphome        <prefix>/<component>/<object>/command (announced by a state topic) ON/OFF, number text;
 *                  lights take JSON {"state":"ON"}
 *   homie          <base>/<node>/<property>/set      true/false for booleans, else text
 *   homeassistant  the entity's command_topic        ON/OFF for binary entities, else text
 *   topic          <device>/<name>/set               ON/OFF for booleans, else text
 * Formats that announce their commands (ESPHome, Homie, Home Assistant) only accept announced names.
 */
import { topicError } from '../protocol/topics.ts'
import type { CommandResult, CommandTarget } from './types.ts'
import { parseSwitch } from './values.ts'

type SwitchStyle = 'ON/OFF' | 'true/false'
const POWER_LIKE = /^power\d*$/i
const MAX_NAME_LENGTH = 256

export function commandFor(device: CommandTarget, name: string, value: unknown): CommandResult {
  if (typeof name !== 'string' || name.length === 0 || name.length > MAX_NAME_LENGTH) {
    return unknown('a command name must be a non-empty string of at most 256 characters')
  }
  const id = device.id
  const binary = Array.isArray(device.binary) && device.binary.includes(name)

  let topic: string
  let payload: string | undefined
  switch (device.format) {
    case 'generic': {
      topic = `${device.commandBase ?? `devices/${id}`}/commands`
      payload = jsonCommand(name, value)
      break
    }
    case 'tasmota': {
      if (!isLevel(name)) return unknown(`"${name}" is not a Tasmota command name`)
      topic = `cmnd/${device.commandBase ?? id}/${name}`
      payload = toText(value, 'ON/OFF', binary || POWER_LIKE.test(name))
      break
    }
    case 'esphome': {
      const announced = announcedTopic(device, name)
      if (announced === undefined) return unknown(`${id} announced no command for "${name}"`)
      topic = announced
      const levels = announced.split('/')
      const component = levels[levels.length - 3]
      if (component === 'light') {
        // ESPHome lights use the JSON schema on their command topic.
        const state = toText(value, 'ON/OFF', true)
        payload = state === undefined ? undefined : JSON.stringify({ state })
      } else {
        const switchLike = component === 'switch' || component === 'fan'
        payload = toText(value, 'ON/OFF', binary || switchLike)
      }
      break
    }
    case 'homie': {
      const announced = announcedTopic(device, name)
      if (announced === undefined) return unknown(`${id} has no settable property "${name}"`)
      topic = announced
      payload = toText(value, 'true/false', binary)
      break
    }
    case 'homeassistant': {
      const announced = announcedTopic(device, name)
      if (announced === undefined) return unknown(`${id} announced no command_topic for "${name}"`)
      topic = announced
      payload = toText(value, 'ON/OFF', binary)
      break
    }
    case 'topic': {
      if (!isLevel(name)) return unknown(`"${name}" cannot be one topic level`)
      topic = `${device.commandBase ?? id}/${name}/set`
      payload = toText(value, 'ON/OFF', binary)
      break
    }
    default:
      return unknown(`no command mapping for format ${String(device.format)}`)
  }

  if (payload === undefined) {
    return { error: 'E_INVALID_MESSAGE', message: 'the value must be a string, a finite number, a boolean, null or JSON' }
  }
  const problem = topicError(topic)
  if (problem !== null) return unknown(`cannot build a command topic for ${id}: ${problem}`)
  return { topic, payload }
}

function unknown(message: string): CommandResult {
  return { error: 'E_UNKNOWN_COMMAND', message }
}

function announcedTopic(device: CommandTarget, name: string): string | undefined {
  const commands = device.commands
  if (commands === undefined || commands === null || !Object.hasOwn(commands, name)) return undefined
  const t = commands[name]
  return typeof t === 'string' && t.length > 0 ? t : undefined
}

function isLevel(name: string): boolean {
  return !/[/+#]/.test(name) && !name.includes('\u0000')
}

function jsonCommand(name: string, value: unknown): string | undefined {
  if (!isSendable(value)) return undefined
  try {
    return JSON.stringify({ name, value })
  } catch {
    // Cycles and BigInts deeper in the value.
    return undefined
  }
}

function isSendable(value: unknown): boolean {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return true
    case 'number':
      return Number.isFinite(value)
    case 'object':
      return true
    default:
      return false // undefined, bigint, function, symbol
  }
}

// The value as payload text; undefined when it cannot be sent.
function toText(value: unknown, style: SwitchStyle, binary: boolean): string | undefined {
  if (!isSendable(value)) return undefined
  const on = style === 'ON/OFF' ? 'ON' : 'true'
  const off = style === 'ON/OFF' ? 'OFF' : 'false'
  if (typeof value === 'boolean') return value ? on : off
  if (typeof value === 'number') return binary && (value === 0 || value === 1) ? (value ? on : off) : String(value)
  if (typeof value === 'string') {
    if (!binary) return value
    const s = parseSwitch(value) ?? (value === '1' ? 1 : value === '0' ? 0 : undefined)
    if (s !== undefined) return s ? on : off
    return style === 'ON/OFF' && value.trim().toLowerCase() === 'toggle' ? 'TOGGLE' : value
  }
  // Empty payload: Tasmota reads it as "report the current state".
  if (value === null) return ''
  try {
    return JSON.stringify(value)
  } catch {
    return undefined
  }
}
