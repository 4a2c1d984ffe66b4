import type { Registry } from 'prom-client'
import { LIMITS, type LimitName } from '../protocol/limits.ts'
import type { Broker } from '../broker/broker.ts'
import type { Bridge } from '../bridge/bridge.ts'
import type { MessageSource } from '../bridge/source.ts'
import type { Registry as DeviceRegistry } from '../devices/registry.ts'
import type { HistoryStore } from '../store/history.ts'

/** What is measured; `broker` is null when Pulseboard runs on an external broker. */
interface MetricParts {
  broker: Broker | null
  source: MessageSource
  bridge: Bridge
  registry: DeviceRegistry
  store: HistoryStore
}

export interface Metrics {
  /** The Prometheus text, and its content type. */
  scrape(): Promise<{ contentType: string; body: string }>
}

/**
 * Prometheus metrics, read from the live counters at scrape time rather than kept twice.
 * prom-client is loaded at the first scrape: a server nobody scrapes never pays for it
 * (about 30 ms of start-up and several MB). Process metrics such as GC timings start then.
 */
export function createMetrics(
  parts: MetricParts,
  limitHits: Readonly<Record<LimitName, number>>,
  uncaughtErrors: () => number,
): Metrics {
  let loaded: Promise<Registry> | null = null
  return {
    async scrape() {
      // prom-client is CommonJS: only `default` (its module.exports) is there both from sources and in the bundle
      loaded ??= import('prom-client').then((prom) => build(prom.default, parts, limitHits, uncaughtErrors))
      const register = await loaded
      return { contentType: register.contentType, body: await register.metrics() }
    },
  }
}

function build(
  { Counter, Gauge, Registry, collectDefaultMetrics }: typeof import('prom-client'),
  { broker, source, bridge, registry, store }: MetricParts,
  limitHits: Readonly<Record<LimitName, number>>,
  uncaughtErrors: () => number,
): Registry {
  const register = new Registry()
  collectDefaultMetrics({ register, prefix: 'pulseboard_' })

  const gauge = (name: string, help: string, read: () => number) =>
    new Gauge({ name, help, registers: [register], collect() { this.set(read()) } })
  const counter = (name: string, help: string, read: () => number) =>
    new Counter({
      name,
      help,
      registers: [register],
      collect() {
        this.reset()
        this.inc(read())
      },
    })

  gauge('pulseboard_socket_clients', 'Connected socket.io clients on / and /live.', () => bridge.chat.sockets.size + bridge.live.sockets.size)
  counter('pulseboard_mqtt_messages_in_total', 'PUBLISH packets received from MQTT clients (or from the external broker).', () => source.stats.messagesIn)
  counter('pulseboard_mqtt_messages_out_total', 'PUBLISH packets delivered to MQTT subscribers (or sent to the external broker).', () => source.stats.messagesOut)
  counter('pulseboard_socket_messages_in_total', 'Messages from socket clients published to MQTT.', () => bridge.stats.socketMessagesIn)
  counter('pulseboard_socket_messages_rejected_total', 'Messages from socket clients refused with an error.', () => bridge.stats.socketMessagesRejected)
  counter('pulseboard_socket_broadcasts_total', 'socket.io packets broadcast, each encoded once.', () => bridge.fanout.stats.broadcasts)
  counter('pulseboard_socket_dropped_total', 'Messages not sent to socket clients that were too far behind.', () => bridge.fanout.stats.dropped)
  counter('pulseboard_socket_slow_clients_total', 'Times a socket client fell too far behind and was skipped.', () => bridge.fanout.stats.slowClients)
  counter('pulseboard_uncaught_errors_total', 'Errors nothing else caught; each is logged with its stack.', uncaughtErrors)
  gauge('pulseboard_broker_connected', 'The broker messages come from is connected (always 1 for the embedded one).', () => (source.status().connected ? 1 : 0))
  if (broker) {
    gauge('pulseboard_mqtt_clients', 'Connected MQTT clients.', () => broker.stats.clients)
    counter('pulseboard_mqtt_oversize_packets_total', 'MQTT connections closed for a packet over the size limit.', () => broker.stats.oversizePackets)
    counter('pulseboard_mqtt_client_errors_total', 'MQTT connections closed for a protocol error.', () => broker.stats.clientErrors)
    counter('pulseboard_mqtt_refused_publishes_total', 'Client publishes refused by the topic rules; each closed its connection.', () => broker.stats.refusedPublishes)
    counter('pulseboard_mqtt_denied_publishes_total', 'Client publishes the ACL denied: acknowledged and dropped.', () => broker.stats.deniedPublishes)
    counter('pulseboard_mqtt_takeovers_total', 'Times a new connection took the id of a connected MQTT client.', () => broker.stats.takeovers)
    gauge('pulseboard_retained_messages', 'Retained messages kept by the broker.', () => broker.persistence.usage.retained)
    gauge('pulseboard_retained_bytes', 'Bytes of retained messages kept by the broker.', () => broker.persistence.usage.retainedBytes)
    gauge('pulseboard_queued_bytes', 'Bytes queued for persistent MQTT sessions.', () => broker.persistence.usage.queuedBytes)
    gauge('pulseboard_sessions', 'Persistent MQTT sessions remembered.', () => broker.persistence.usage.sessions)
  }
  gauge('pulseboard_devices', 'Devices the registry knows.', () => registry.usage.devices)
  gauge('pulseboard_topics', 'Topics in the topic index.', () => registry.usage.topics)
  for (const [name, value] of Object.entries(store.usage)) {
    gauge(`pulseboard_store_${name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)}`, `History store: ${name}.`, () => store.usage[name] ?? value)
  }
  new Counter({
    name: 'pulseboard_limit_hits_total',
    help: 'Times input reached a bound, by limit (docs/limits.md).',
    labelNames: ['limit'],
    registers: [register],
    collect() {
      this.reset()
      for (const limit of Object.keys(LIMITS) as LimitName[]) this.inc({ limit }, limitHits[limit])
    },
  })
  return register
}
