import { CodedError } from '../protocol/errors.ts'
import type { Policy, Principal } from '../protocol/access.ts'
import type { Broker, BrokerMessage } from '../broker/broker.ts'
import type { BrokerStatus } from '../protocol/health.ts'
import type { Message, MessageSource, OutgoingMessage, PresenceEvent } from './source.ts'

/** Marks what a socket client published, so it comes back as the socket's and not as an MQTT client's. */
const SOCKET_ORIGIN = 'socket:'

/** The embedded broker as a MessageSource. */
export function embeddedSource(broker: Broker, policy: Policy): MessageSource {
  const toMessage = (m: BrokerMessage): Message => ({
    topic: m.topic,
    payload: m.payload,
    qos: m.qos,
    retain: m.retain,
    ts: Date.now(),
    from: m.origin?.startsWith(SOCKET_ORIGIN)
      ? { kind: 'socket', socketId: m.origin.slice(SOCKET_ORIGIN.length) }
      : { kind: 'mqtt', ...(m.clientId !== undefined && { clientId: m.clientId }) },
    local: m.local,
  })

  const status: BrokerStatus = { mode: 'embedded', connected: true, protocolVersion: 4, since: Date.now() }
  return {
    description: 'embedded broker (MQTT 3.1.1)',
    stats: broker.stats,
    status: () => status,
    // the embedded broker is this process: it is never lost
    onStatus: () => () => {},
    limits: { maxPacketSize: broker.limits.maxPacketSize, maxTopicLength: broker.limits.maxTopicLength },

    subscribe(filter, handler, scope = 'node') {
      // [MQTT-4.7.2-1] a filter starting with a wildcard does not match `$` topics; aedes' emitter would
      const wild = filter.startsWith('#') || filter.startsWith('+')
      const deliver = (m: BrokerMessage) => {
        if (!(wild && m.topic.startsWith('$'))) handler(toMessage(m))
      }
      return scope === 'node' ? broker.subscribeLocal(filter, deliver) : broker.subscribe(filter, deliver)
    },

    async publish(message: OutgoingMessage, principal: Principal) {
      if (!policy.canPublish(principal, message.topic)) {
        throw new CodedError('E_NOT_AUTHORIZED', `${principal.name} may not publish to ${message.topic}`)
      }
      if (message.properties) {
        throw new CodedError('E_MQTT5_REQUIRED', 'the embedded broker speaks MQTT 3.1.1, which has no message properties; run Pulseboard on an MQTT 5 broker with --broker (docs/devices.md)')
      }
      const { topic, payload, qos, retain, socketId } = message
      try {
        await broker.publish({ topic, payload, qos, retain }, SOCKET_ORIGIN + socketId)
      } catch (err) {
        throw new CodedError('E_PUBLISH_FAILED', (err as Error).message)
      }
    },

    onPresence(handler: (event: PresenceEvent) => void) {
      const connect = (clientId: string, will?: { topic: string; payload: Buffer }) => handler({ type: 'connect', clientId, ...(will && { will }) })
      const disconnect = (clientId: string) => handler({ type: 'disconnect', clientId })
      const takeover = (clientId: string) => handler({ type: 'takeover', clientId })
      broker.on('connect', connect)
      broker.on('disconnect', disconnect)
      broker.on('takeover', takeover)
      return () => {
        broker.off('connect', connect)
        broker.off('disconnect', disconnect)
        broker.off('takeover', takeover)
      }
    },

    async *retained() {
      for await (const m of broker.retained()) yield toMessage(m)
    },
  }
}
