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
