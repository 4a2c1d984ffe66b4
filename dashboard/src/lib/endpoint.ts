import type { BrokerStatus } from './protocol.ts'

/** Where a device connects over MQTT. */
export interface DeviceEndpoint {
  /** `mqtt://host:1883`: what to give a device. */
  url: string
  host: string
  port: number
  tls: boolean
  /** MQTT over WebSocket (`ws://`, `wss://`). */
  websocket: boolean
  /** The external broker (`--broker`), not Pulseboard's own. */
  external: boolean
}

const DEFAULT_PORTS: Record<string, number> = { mqtt: 1883, mqtts: 8883, ws: 80, wss: 443 }
const LOOPBACK = /^(localhost|127(\.\d{1,3}){3}|\[::1\])$/i

/**
 * Where devices connect: the embedded broker's port on the host this page came from, or the
 * external broker's URL. Pulseboard names that broker as it reaches it; a loopback address means
 * Pulseboard's own machine, which a device knows by the name this page was loaded from.
 */
export function deviceEndpoint(status: BrokerStatus | null, mqttPort: number | null): DeviceEndpoint {
  const here = location.hostname || 'localhost'
  if (status?.mode === 'external' && status.url) {
    try {
      const u = new URL(status.url)
      const scheme = u.protocol.replace(/:$/, '')
      const host = LOOPBACK.test(u.hostname) ? here : u.hostname
      const port = u.port === '' ? (DEFAULT_PORTS[scheme] ?? 1883) : Number(u.port)
      const websocket = scheme === 'ws' || scheme === 'wss'
      const tls = scheme === 'mqtts' || scheme === 'wss'
      return { url: `${scheme}://${host}:${port}${websocket ? u.pathname : ''}`, host, port, tls, websocket, external: true }
    } catch {
      // not a URL this browser parses: show it as the server gave it
      return { url: status.url, host: here, port: 1883, tls: false, websocket: false, external: true }
    }
  }
  const port = mqttPort ?? 1883
  return { url: `mqtt://${here}:${port}`, host: here, port, tls: false, websocket: false, external: false }
}
