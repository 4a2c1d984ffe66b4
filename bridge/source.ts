import type { Principal } from '../protocol/access.ts'
import type { MessageProperties } from '../protocol/envelope.ts'
import type { BrokerStatus } from '../protocol/health.ts'

/** One MQTT message as the rest of Pulseboard sees it, whichever broker carried it. */
export interface Message {
  topic: string
  payload: Buffer
  qos: 0 | 1 | 2
  retain: boolean
  /** Epoch ms when this node received it. */
  ts: number
  /** Who published it: an MQTT client (its id when known), or a socket client through Pulseboard. */
  from: { kind: 'mqtt'; clientId?: string } | { kind: 'socket'; socketId: string }
  /** This node received it from its publisher, rather than from another node: it is stored here. */
  local: boolean
  /** MQTT 5 properties, when the broker speaks MQTT 5 and the publisher set any. */
  properties?: MessageProperties
  /**
   * A retained message the broker sent because Pulseboard subscribed (at start, or after a
   * reconnect): what a device said before, not a publish now. Only the registry learns from it.
   */
  replay?: boolean
  /**
   * A copy to store only: it came through a shared subscription (`$share/...`), which the broker
   * gives one node of several, while every node's own subscription brought the copy it shows.
   */
  storeOnly?: boolean
}

/** What a socket client publishes. */
export interface OutgoingMessage {
  topic: string
  payload: Buffer
  qos: 0 | 1 | 2
  retain: boolean
  socketId: string
  /** MQTT 5 properties; a source speaking 3.1.1 refuses a message with any (`E_MQTT5_REQUIRED`). */
  properties?: MessageProperties
}

/** What the source knows of its clients' connections. A broker that says nothing of them sends none. */
export type PresenceEvent =
  | { type: 'connect'; clientId: string; will?: { topic: string; payload: Buffer } }
  | { type: 'disconnect'; clientId: string }
  | { type: 'takeover'; clientId: string }

export interface MessageSourceLimits {
  /** Largest MQTT packet the broker takes, in bytes. */
  maxPacketSize: number
  /** Longest topic, in UTF-8 bytes. */
  maxTopicLength: number
}

/**
 * Whose messages a subscription gets: those this node takes in (`node`: published through it, by
 * its MQTT clients, its sockets or its broker itself; on an external broker, everything its
 * subscriptions bring), or those of every node that shares its broker (`cluster`: with a cluster's
 * emitter, the other nodes' publishes too). A node alone takes in every message either way.
 */
export type SubscriptionScope = 'node' | 'cluster'

/**
 * Where MQTT messages come from and go to: the embedded broker, or one that
 * Pulseboard connects to. The bridge, the registry and the store see only
 * this, so none of them knows which broker it is.
 */
export interface MessageSource {
  /** For people: where the messages come from. */
  readonly description: string
  readonly limits: MessageSourceLimits
  /**
   * Every message matching `filter` within `scope` (this node's, by default), published by anyone
   * (socket clients through `publish` included, exactly once); `$` topics only when the filter
   * names them. Returns a function that ends the subscription.
   */
  subscribe(filter: string, handler: (message: Message) => void, scope?: SubscriptionScope): () => void
  /** Publishes for a principal; rejects with a CodedError when the policy or the broker refuses. */
  publish(message: OutgoingMessage, principal: Principal): Promise<void>
  onPresence(handler: (event: PresenceEvent) => void): () => void
  /** The retained messages held now; the registry starts from them. */
  retained(): AsyncIterable<Message>
  /** Which broker, and whether it is connected now. */
  status(): BrokerStatus
  /** Told of each change of `status()` (an external broker lost, or back). */
  onStatus(handler: (status: BrokerStatus) => void): () => void
  /**
   * Publishes an MQTT 5 request (a response topic and correlation data are added) and resolves
   * with the first answer, or rejects with E_DEVICE_TIMEOUT; absent where the broker cannot carry
   * them (MQTT 3.1.1).
   */
  request?(message: OutgoingMessage, principal: Principal, timeoutMs: number): Promise<Message>
  /** Messages counted in and out since start, for health and metrics. */
  readonly stats: { messagesIn: number; messagesOut: number }
}
