/**
 * Tasmota with the default FullTopic `%prefix%/%topic%/`:
 *   tele/<topic>/SENSOR   {"Time":"2024-01-01T12:00:00","AM2301":{"Temperature":22.1,"Humidity":45.3},"TempUnit":"C"}
 *   tele/<topic>/STATE    {"Time":...,"UptimeSec":611,"Heap":24,"LoadAvg":19,"POWER":"OFF","Wifi":{"RSSI":44,"Signal":-78}}
 *   tele/<topic>/LWT      Online | Offline
 *   stat/<topic>/POWER    ON | OFF            (POWER1.. for multi-relay devices)
 *   stat/<topic>/RESULT   {"POWER":"ON"}
 *   stat/<topic>/STATUS10 {"StatusSNS":{...}} (same as SENSOR), STATUS11 {"StatusSTS":{...}} (same as STATE)
 *   cmnd/<topic>/<Cmd>    commands; never readings
 * `<topic>` may span several levels when FullTopic adds some; the last level is always upper case.
 */
import type { ParseResult } from './types.ts'
import {
  Collector,
  empty,
  flatten,
  isRecord,
  makeFact,
  ownString,
  parseJsonObject,
  parseNumber,
  parseSwitch,
  payloadTime,
  type Limits,
  type Message,
} from './values.ts'

const KIND = /^[A-Z][A-Z0-9]*$/
const POWER = /^POWER\d*$/
// Metadata at the top of a payload: the unit keys only qualify other values.
const SKIP_TOP = new Set(['Time', 'TempUnit', 'PressureUnit', 'SpeedUnit', 'Epoch'])

// Null when the topic is not Tasmota-shaped.
export function parseTasmota(msg: Message, limits: Limits): ParseResult | null {
  const { levels } = msg
  const prefix = levels[0]
  if (prefix !== 'tele' && prefix !== 'stat' && prefix !== 'cmnd') return null
  if (levels.length < 3) return null
  const kind = levels[levels.length - 1]!
  if (!KIND.test(kind)) return null
  // Commands travel to the device; its answer arrives on stat/, so cmnd/ is never a reading.
  if (prefix === 'cmnd') return empty()
  const device = levels.slice(1, -1).join('/')
  if (levels.slice(1, -1).some((l) => l.length === 0)) return empty()

  const out = new Collector(limits.maxReadings)
  const binary: string[] = []
  let online: boolean | undefined
  let name: string | undefined

  if (kind === 'LWT') {
    const t = msg.payload.trim().toLowerCase()
    if (t === 'online') online = true
    else if (t === 'offline') online = false
  } else if (prefix === 'stat' && POWER.test(kind)) {
    const s = parseSwitch(msg.payload)
    if (s !== undefined && out.reading(device, kind, s, msg.ts)) binary.push(kind)
  } else if (/^INFO\d*$/.test(kind)) {
    // Boot information (module, version, IP): nothing to chart.
  } else {
    const obj = parseJsonObject(msg.payload)
    if (obj) {
      if (kind.startsWith('STATUS')) {
        // Only the sensor and state sections of a status reply are readings; the rest is configuration.
        name = statusName(obj['Status'])
        if (isRecord(obj['StatusSNS'])) readJson(out, device, obj['StatusSNS'], msg.ts, limits, binary)
        if (isRecord(obj['StatusSTS'])) readJson(out, device, obj['StatusSTS'], msg.ts, limits, binary)
      } else {
        readJson(out, device, obj, msg.ts, limits, binary)
      }
    } else if (prefix === 'stat') {
      // e.g. stat/<topic>/SHUTTER1 = 0, stat/<topic>/DIMMER = 50
      const n = parseNumber(msg.payload)
      if (n !== undefined) out.reading(device, kind, n, msg.ts, unitOf([kind], {}))
    }
  }

  if (online !== undefined || name !== undefined || out.readings.length > 0) {
    out.fact(makeFact(device, 'tasmota', { online, name, commandBase: device, binary }))
  }
  return out.result()
}

function readJson(
  out: Collector,
  device: string,
  obj: Record<string, unknown>,
  receivedAt: number,
  limits: Limits,
  binary: string[],
): void {
  const ts = payloadTime(obj['Time'], receivedAt) ?? receivedAt
  const units = {
    temp: ownString(obj, 'TempUnit'),
    pressure: ownString(obj, 'PressureUnit'),
  }
  for (const v of flatten(obj, { max: limits.maxReadings, skipTop: SKIP_TOP, onOffStrings: true })) {
    const metric = v.path.join('.')
    if (out.reading(device, metric, v.value, ts, v.binary ? undefined : unitOf(v.path, units)) && v.binary) {
      binary.push(metric)
    }
  }
}

function statusName(status: unknown): string | undefined {
  if (!isRecord(status)) return undefined
  const deviceName = ownString(status, 'DeviceName')
  if (deviceName) return deviceName
  const friendly = status['FriendlyName']
  if (Array.isArray(friendly) && typeof friendly[0] === 'string') return friendly[0]
  return typeof friendly === 'string' ? friendly : undefined
}

// Units by leaf key, as Tasmota's sensor drivers document them.
const UNITS: Record<string, string> = {
  Humidity: '%',
  Illuminance: 'lx',
  Power: 'W',
  ApparentPower: 'VA',
  ReactivePower: 'var',
  Voltage: 'V',
  Current: 'A',
  Frequency: 'Hz',
  CarbonDioxide: 'ppm',
  eCO2: 'ppm',
  TVOC: 'ppb',
  Distance: 'cm',
  Gas: 'kΩ',
  Dimmer: '%',
  UptimeSec: 's',
  Heap: 'kB',
  Vcc: 'V',
  Sleep: 'ms',
}
// Energy counters are only kWh inside the ENERGY block (Total elsewhere may be a plain count).
const ENERGY_UNITS: Record<string, string> = { Total: 'kWh', Today: 'kWh', Yesterday: 'kWh', Energy: 'kWh' }
// Tasmota's RSSI is link quality in percent; Signal is the dBm value.
const WIFI_UNITS: Record<string, string> = { RSSI: '%', Signal: 'dBm' }

function unitOf(path: string[], units: { temp?: string | undefined; pressure?: string | undefined }): string | undefined {
  // Three-phase meters report arrays: ENERGY.Voltage.0 takes the unit of Voltage.
  const named = path.filter((p) => !/^\d+$/.test(p))
  const leaf = named[named.length - 1]
  if (leaf === undefined) return undefined
  const parent = named[named.length - 2]
  if (leaf === 'Temperature' || leaf === 'DewPoint') return units.temp === 'F' ? '°F' : '°C'
  if (leaf === 'Pressure' || leaf === 'SeaPressure') return units.pressure ?? 'hPa'
  if (parent === 'Wifi' && Object.hasOwn(WIFI_UNITS, leaf)) return WIFI_UNITS[leaf]
  if (Object.hasOwn(ENERGY_UNITS, leaf) && named.some((p) => p === 'ENERGY' || p === 'CTEnergy')) return ENERGY_UNITS[leaf]
  return Object.hasOwn(UNITS, leaf) ? UNITS[leaf] : undefined
}
