/**
 * Sensor models for simulated devices. Every function here is pure: the value depends only on
 * the device seed, the wall-clock time and (for the power meter) the relay, so a model can be
 * tested at any instant without running a clock, and a restarted simulator shows the same
 * devices with the same personalities.
 */

/** What a device can measure. `power` is a metering plug: power, voltage, current and energy. */
export type SensorKind = 'temperature' | 'humidity' | 'pressure' | 'battery' | 'motion' | 'power'

/** One reading of every sensor a device has, rounded as the device would report it. */
export interface Sample {
  /** °C */
  temperature?: number
  /** % relative humidity */
  humidity?: number
  /** hPa */
  pressure?: number
  /** % charge */
  battery?: number
  motion?: boolean
  /** W */
  power?: number
  /** V */
  voltage?: number
  /** A */
  current?: number
  /** kWh since the meter was installed */
  energy?: number
  /** Every device has a relay; it changes only by command. */
  relay: boolean
}

/**
 * The sensor sets handed out by device index, so that a fleet is varied and each firmware format
 * gets several of them (the cycle is 5 long, the format cycle 4).
 */
export const PROFILES: readonly (readonly SensorKind[])[] = [
  ['temperature', 'humidity', 'pressure'], // weather station
  ['power'], // metering smart plug
  ['motion', 'battery', 'temperature'], // battery PIR sensor
  ['temperature', 'humidity', 'battery'], // battery thermometer
  ['temperature', 'humidity', 'pressure', 'motion', 'power'], // multisensor on a metered socket
]

export function profileFor(index: number): readonly SensorKind[] {
  return PROFILES[index % PROFILES.length]!
}

/** What kind of device each of PROFILES is; an MQTT 5 device names it in a user property (`model`). */
export const PROFILE_MODELS: readonly string[] = ['weather-station', 'smart-plug', 'pir-sensor', 'thermometer', 'multisensor']

export function modelFor(index: number): string {
  return PROFILE_MODELS[index % PROFILE_MODELS.length]!
}

const DAY_MS = 86_400_000
const HOUR_MS = 3_600_000
const MINUTE_MS = 60_000

// Channels keep the noise of one quantity independent of another for the same seed.
const Channel = {
  TemperatureBase: 1,
  TemperatureAmplitude: 2,
  TemperatureSlow: 3,
  TemperatureFast: 4,
  HumidityBase: 5,
  Humidity: 6,
  PressureBase: 7,
  PressureDays: 8,
  PressureHours: 9,
  PressureMinutes: 10,
  BatteryPhase: 11,
  BatteryRate: 12,
  MotionEvent: 13,
  MotionStart: 14,
  MotionLength: 15,
  PowerBase: 16,
  Power: 17,
  Voltage: 18,
  Rssi: 19,
  EnergyStart: 20,
} as const

function mix(h: number, v: number): number {
  h = Math.imul(h ^ v, 0x5bd1e995)
  return (h ^ (h >>> 15)) >>> 0
}

// MurmurHash3 finaliser: spreads every input bit across the output.
function finalise(h: number): number {
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}

/** A uniform number in [0, 1) fixed by (seed, channel, index); index may be any integer. */
export function random(seed: number, channel: number, index: number): number {
  const lo = index >>> 0
  const hi = Math.floor(index / 0x1_0000_0000) >>> 0
  return finalise(mix(mix(mix(mix(0x9e3779b9, seed >>> 0), channel), lo), hi)) / 0x1_0000_0000
}

/** Smooth noise in [-1, 1]: random values on integer x, eased in between. */
export function valueNoise(seed: number, channel: number, x: number): number {
  const i = Math.floor(x)
  const f = x - i
  const a = random(seed, channel, i) * 2 - 1
  const b = random(seed, channel, i + 1) * 2 - 1
  const s = f * f * (3 - 2 * f)
  return a + (b - a) * s
}

/** A 32-bit seed from a string (FNV-1a), for seeding a fleet from its prefix. */
export function seedFrom(text: string): number {
  let h = 0x811c9dc5
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193)
  return h >>> 0
}

/** The seed of the device at `index` in a fleet seeded with `fleetSeed`. */
export function deviceSeed(fleetSeed: number, index: number): number {
  return finalise(mix(fleetSeed >>> 0, index + 1))
}

function round(value: number, decimals: number): number {
  const f = 10 ** decimals
  return Math.round(value * f) / f
}

function clamp(value: number, min: number, max: number): number {
  return Math.min(max, Math.max(min, value))
}

function temperatureBase(seed: number): number {
  return 18 + 5 * random(seed, Channel.TemperatureBase, 0)
}

/**
 * °C: a daily sine (coldest at 03:00 UTC, warmest at 15:00 UTC) of 2.5–5.5 °C around a
 * per-device mean of 18–23 °C, plus slow drift and a little sensor jitter. Unrounded.
 */
export function temperatureAt(seed: number, t: number): number {
  const amplitude = 2.5 + 3 * random(seed, Channel.TemperatureAmplitude, 0)
  const dayFraction = (((t % DAY_MS) + DAY_MS) % DAY_MS) / DAY_MS
  const daily = amplitude * Math.sin(2 * Math.PI * (dayFraction - 9 / 24))
  const drift = 0.6 * valueNoise(seed, Channel.TemperatureSlow, t / (10 * MINUTE_MS))
  const jitter = 0.1 * valueNoise(seed, Channel.TemperatureFast, t / 20_000)
  return temperatureBase(seed) + daily + drift + jitter
}

/**
 * % RH, anti-correlated with temperature: the same air holds the same water, so relative
 * humidity falls about 2.5 % per °C as it warms.
 */
export function humidityAt(seed: number, t: number): number {
  const base = 40 + 20 * random(seed, Channel.HumidityBase, 0)
  const warming = temperatureAt(seed, t) - temperatureBase(seed)
  const noise = 1.5 * valueNoise(seed, Channel.Humidity, t / (5 * MINUTE_MS))
  return clamp(base - 2.5 * warming + noise, 5, 99)
}

/**
 * hPa: a slow, bounded random walk around 1013 (weather over days, hours and minutes; at most
 * about 1.5 hPa an hour, as in ordinary weather), offset a little per device as if at different
 * altitudes. Built from noise so it stays a function of time.
 */
export function pressureAt(seed: number, t: number): number {
  const offset = 6 * random(seed, Channel.PressureBase, 0) - 3
  return (
    1013 +
    offset +
    8 * valueNoise(seed, Channel.PressureDays, t / (48 * HOUR_MS)) +
    1.5 * valueNoise(seed, Channel.PressureHours, t / (6 * HOUR_MS)) +
    0.2 * valueNoise(seed, Channel.PressureMinutes, t / (5 * MINUTE_MS))
  )
}

/**
 * % charge: drains 0.1–0.3 % a minute (fast enough to see on a dashboard) from 100 % down to 5 %,
 * when someone swaps the battery and it starts again at 100 %.
 */
export function batteryAt(seed: number, t: number): number {
  const span = 95
  const ratePerMs = (0.1 + 0.2 * random(seed, Channel.BatteryRate, 0)) / MINUTE_MS
  const phase = span * random(seed, Channel.BatteryPhase, 0)
  const used = (((phase + ratePerMs * t) % span) + span) % span
  return 100 - used
}

const MOTION_WINDOW_MS = 20_000

/**
 * Occasional motion: each 20 s window has a 25 % chance of one event lasting 2–10 s, starting
 * anywhere in the window (so an event may run into the next window, never further).
 */
export function motionAt(seed: number, t: number): boolean {
  const window = Math.floor(t / MOTION_WINDOW_MS)
  for (const w of [window, window - 1]) {
    if (random(seed, Channel.MotionEvent, w) >= 0.25) continue
    const start = (w + random(seed, Channel.MotionStart, w)) * MOTION_WINDOW_MS
    const length = 2_000 + 8_000 * random(seed, Channel.MotionLength, w)
    if (t >= start && t < start + length) return true
  }
  return false
}

/** W drawn through the relay: nothing when off; a 20–200 W load that wanders ±10 % when on. */
export function powerAt(seed: number, t: number, relay: boolean): number {
  if (!relay) return 0
  const base = 20 + 180 * random(seed, Channel.PowerBase, 0)
  return base * (1 + 0.1 * valueNoise(seed, Channel.Power, t / 15_000))
}

/** V at the socket: 230 ± 3. */
export function voltageAt(seed: number, t: number): number {
  return 230 + 3 * valueNoise(seed, Channel.Voltage, t / MINUTE_MS)
}

/** Wi-Fi signal quality in % (Tasmota's `RSSI`), 45–95. */
export function rssiAt(seed: number, t: number): number {
  return Math.round(70 + 25 * valueNoise(seed, Channel.Rssi, t / (2 * MINUTE_MS)))
}

/** kWh on the meter when the simulator starts, so devices look as if they had been in service. */
export function initialEnergy(seed: number): number {
  return round(50 * random(seed, Channel.EnergyStart, 0), 3)
}

/** Metering plugs start with their relay on (something is plugged in); other relays start off. */
export function initialRelay(sensors: readonly SensorKind[]): boolean {
  return sensors.includes('power')
}

/** The energy meter after `powerW` was drawn for `dtMs`. */
export function accumulateEnergy(kWh: number, powerW: number, dtMs: number): number {
  return kWh + (powerW * Math.max(0, dtMs)) / HOUR_MS / 1000
}

/** Every sensor of a device at time `t`, rounded as the device reports it. */
export function sample(
  sensors: readonly SensorKind[],
  seed: number,
  t: number,
  state: { relay: boolean; energy: number },
): Sample {
  const s: Sample = { relay: state.relay }
  if (sensors.includes('temperature')) s.temperature = round(temperatureAt(seed, t), 1)
  if (sensors.includes('humidity')) s.humidity = round(humidityAt(seed, t), 1)
  if (sensors.includes('pressure')) s.pressure = round(pressureAt(seed, t), 1)
  if (sensors.includes('battery')) s.battery = round(batteryAt(seed, t), 1)
  if (sensors.includes('motion')) s.motion = motionAt(seed, t)
  if (sensors.includes('power')) {
    const power = powerAt(seed, t, state.relay)
    const voltage = voltageAt(seed, t)
    s.power = round(power, 1)
    s.voltage = round(voltage, 1)
    s.current = round(power / voltage, 3)
    s.energy = round(state.energy, 3)
  }
  return s
}
