import type { BrokerStatus, HealthReport } from './protocol.ts'

/**
 * The broker Pulseboard gets its messages from, as `/live` last said (`broker`, sent on connect
 * and on each change). Null until the socket told us, and again from each (re)connect until it
 * does: while the socket is down, what it said last may no longer be so.
 */
export const broker = $state({ status: null as BrokerStatus | null })

export function setBrokerStatus(status: BrokerStatus): void {
  broker.status = status
}

export function resetBrokerStatus(): void {
  broker.status = null
}

/** The live status, else the one from `/api/health` (the Broker page polls it); null before either. */
export function currentBroker(health: HealthReport | null): BrokerStatus | null {
  return broker.status ?? health?.broker ?? null
}

export const protocolName = (version: 4 | 5): string => (version === 5 ? 'MQTT 5' : 'MQTT 3.1.1')
