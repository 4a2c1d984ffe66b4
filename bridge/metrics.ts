import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client'
import type { Broker } from '../broker/broker.ts'
import type { Bridge } from './bridge.ts'

/** Prometheus metrics, read from the live counters at scrape time rather than kept twice. */
export function createMetrics(broker: Broker, bridge: Bridge): Registry {
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

  gauge('pulseboard_mqtt_clients', 'Connected MQTT clients.', () => broker.stats.clients)
  gauge('pulseboard_socket_clients', 'Connected socket.io clients on / and /live.', () => bridge.chat.sockets.size + bridge.live.sockets.size)
  counter('pulseboard_mqtt_messages_in_total', 'PUBLISH packets received from MQTT clients.', () => broker.stats.messagesIn)
  counter('pulseboard_mqtt_messages_out_total', 'PUBLISH packets delivered to MQTT subscribers.', () => broker.stats.messagesOut)
  counter('pulseboard_mqtt_oversize_packets_total', 'MQTT connections closed for a packet over the size limit.', () => broker.stats.oversizePackets)
  counter('pulseboard_mqtt_client_errors_total', 'MQTT connections closed for a protocol error.', () => broker.stats.clientErrors)
  counter('pulseboard_socket_messages_in_total', 'Messages from socket clients published to MQTT.', () => bridge.stats.socketMessagesIn)
  counter('pulseboard_socket_messages_rejected_total', 'Messages from socket clients refused with an error.', () => bridge.stats.socketMessagesRejected)
  counter('pulseboard_socket_broadcasts_total', 'socket.io packets broadcast, each encoded once.', () => bridge.fanout.stats.broadcasts)
  counter('pulseboard_socket_dropped_total', 'Messages not sent to socket clients that were too far behind.', () => bridge.fanout.stats.dropped)
  counter('pulseboard_socket_slow_clients_total', 'Times a socket client fell too far behind and was skipped.', () => bridge.fanout.stats.slowClients)
  return register
}
