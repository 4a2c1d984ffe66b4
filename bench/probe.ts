/**
 * The bench's telemetry payload: small JSON, as a sensor sends, that also
 * carries what the receivers need to measure latency, loss and duplicates.
 *   {"d":12,"s":3456,"m":1,"t":1795629993399.123,"v":21.5,"p":"xx"}
 * d device, s sequence per device, m sent inside the measured window,
 * t send time (epoch ms, µs precision), p padding to the payload size.
 */
export interface Probe {
  device: number
  seq: number
  measured: boolean
  sentAt: number
}

/** Epoch milliseconds with sub-millisecond precision, the same clock in every process. */
export function now(): number {
  return performance.timeOrigin + performance.now()
}

export function probePayload(device: number, seq: number, measured: boolean, size: number): string {
  const body = `{"d":${device},"s":${seq},"m":${measured ? 1 : 0},"t":${now().toFixed(3)},"v":${(20 + (seq % 50) / 10).toFixed(1)}`
  const pad = size - body.length - 8 // ,"p":"" and }
  return pad > 0 ? `${body},"p":"${'x'.repeat(pad)}"}` : `${body}}`
}

const PROBE = /^\{"d":(\d+),"s":(\d+),"m":([01]),"t":([\d.]+)/

export function readProbe(payload: string): Probe | null {
  const m = PROBE.exec(payload)
  if (!m) return null
  return { device: Number(m[1]), seq: Number(m[2]), measured: m[3] === '1', sentAt: Number(m[4]) }
}

export function probeTopic(device: number): string {
  return `devices/bench-${device}/telemetry`
}

/**
 * What a multi-sensor node reports, for the history bench: one JSON object of `metrics` numbers,
 * the generic format's telemetry, each value moving with the sequence number as a sensor's would.
 *   {"temperature":21.53,"humidity":45.2,"pressure":1013.4,"co2":612,"voc":105,"pm25":8.4,
 *    "battery":87,"rssi":-61,"voltage":3.71,"power":142.7}
 * Some values are whole numbers, as real ones are (SQLite keeps those smaller). Past the ten
 * named ones, metrics are `m10`, `m11`, ... No timestamp: the server stamps what it receives.
 */
export function telemetryPayload(device: number, seq: number, metrics: number): string {
  const t = seq + device * 7
  const wave = (period: number) => Math.sin(t / period)
  const values: [string, string][] = [
    ['temperature', (21 + 3 * wave(600)).toFixed(2)],
    ['humidity', (45 + 10 * wave(900)).toFixed(1)],
    ['pressure', (1013 + 5 * wave(3600)).toFixed(1)],
    ['co2', String(Math.round(600 + 200 * wave(300)))],
    ['voc', String(Math.round(100 + 40 * wave(120)))],
    ['pm25', (8 + 4 * wave(60)).toFixed(1)],
    ['battery', String(100 - (Math.floor(t / 3600) % 100))],
    ['rssi', String(-60 - (t % 7))],
    ['voltage', (3.7 + 0.1 * wave(30)).toFixed(2)],
    ['power', (140 + 60 * wave(20)).toFixed(1)],
  ]
  const parts: string[] = []
  for (let i = 0; i < metrics; i++) {
    const [name, value] = values[i] ?? [`m${i}`, (50 + 50 * wave(10 + i)).toFixed(2)]
    parts.push(`"${name}":${value}`)
  }
  return `{${parts.join(',')}}`
}
