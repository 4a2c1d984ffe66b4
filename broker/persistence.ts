import type { Readable } from 'node:stream'
import type { AedesPublishPacket, Client, Subscription } from 'aedes'
import type { OnLimit } from '../protocol/limits.ts'

type ClientRef = Pick<Client, 'id'>
type Packet = AedesPublishPacket

/** What aedes 1.x calls on its persistence: the async interface of aedes-persistence 11. */
export interface AsyncPersistence {
  setup(broker: BrokerRef): Promise<void>
  storeRetained(packet: Packet): Promise<void>
  createRetainedStream(pattern: string): Readable
  createRetainedStreamCombi(patterns: string[]): Readable
  addSubscriptions(client: ClientRef, subs: Subscription[]): Promise<void>
  removeSubscriptions(client: ClientRef, subs: string[]): Promise<void>
  subscriptionsByClient(client: ClientRef): Promise<Subscription[]>
  countOffline(): Promise<{ subsCount: number; clientsCount: number }>
  subscriptionsByTopic(pattern: string): Promise<{ clientId: string; topic: string; qos: number }[]>
  cleanSubscriptions(client: ClientRef): Promise<void>
  outgoingEnqueue(sub: { clientId: string }, packet: Packet): Promise<void>
  outgoingEnqueueCombi(subs: { clientId: string }[], packet: Packet): Promise<void>
  outgoingUpdate(client: ClientRef, packet: Packet): Promise<void>
  outgoingClearMessageId(client: ClientRef, packet: Packet): Promise<Packet | undefined>
  outgoingStream(client: ClientRef): Readable
  incomingStorePacket(client: ClientRef, packet: Packet): Promise<void>
  incomingGetPacket(client: ClientRef, packet: Packet): Promise<Packet>
  incomingDelPacket(client: ClientRef, packet: Packet): Promise<void>
  cleanIncoming?(client: ClientRef): Promise<void>
  putWill(client: ClientRef, packet: Packet): Promise<void>
  getWill(client: ClientRef): Promise<Packet | undefined>
  delWill(client: ClientRef): Promise<Packet | undefined>
  streamWill(brokers?: Record<string, number>): Readable
  getClientList(topic: string): Readable
  destroy(): Promise<void>
}

/** The part of aedes a persistence sees; `clients` is absent in aedes-persistence's abstract tests. */
interface BrokerRef {
  id: string
  clients?: Record<string, unknown>
}

export interface PersistenceLimits {
  /** Retained messages kept. */
  maxRetained: number
  /** Bytes of retained payloads and topics kept. */
  maxRetainedBytes: number
  /** QoS 1/2 messages queued for one persistent session. */
  maxQueued: number
  /** Bytes queued for one persistent session. */
  maxQueuedBytes: number
  /** Bytes queued for all persistent sessions together. */
  maxQueuedTotalBytes: number
  /** Persistent sessions (clean: false) remembered; the least recently seen offline one goes first. */
  maxSessions: number
}

/** What a stored packet object costs beyond its topic and payload, so a byte bound is a memory bound. */
export const PACKET_OVERHEAD = 256
const sizeOf = (packet: Packet) => PACKET_OVERHEAD + Buffer.byteLength(packet.topic) + Buffer.byteLength(packet.payload)

/**
 * Wraps any aedes persistence with byte and count bounds. aedes keeps retained
 * messages, offline queues and sessions for as long as the persistence does,
 * and the stock ones never refuse: a client could grow them until the process
 * dies. Over a bound, a retained message is still delivered live but not kept,
 * a queued message is dropped, and the oldest offline session is forgotten.
 * Counters are rebuilt from the inner persistence at setup, so a persistent
 * store starts with its real sizes.
 */
export class BoundedPersistence implements AsyncPersistence {
  readonly #inner: AsyncPersistence
  readonly #limits: PersistenceLimits
  readonly #onLimit: OnLimit
  #broker: BrokerRef | null = null
  /** Retained bytes by topic. */
  readonly #retained = new Map<string, number>()
  #retainedBytes = 0
  /** Queued messages and bytes by client id. */
  readonly #queues = new Map<string, { count: number; bytes: number }>()
  #queuedBytes = 0
  /** Client ids with stored subscriptions, least recently active first. */
  readonly #sessions = new Map<string, true>()

  constructor(inner: AsyncPersistence, limits: PersistenceLimits, onLimit: OnLimit = () => {}) {
    this.#inner = inner
    this.#limits = limits
    this.#onLimit = onLimit
  }

  /** The broker this persistence was set up with (aedes-persistence's abstract tests read it). */
  get broker(): BrokerRef | null {
    return this.#broker
  }

  /** Sizes as the bounds see them, for `/api/health`. */
  get usage(): { retained: number; retainedBytes: number; queuedBytes: number; sessions: number } {
    return { retained: this.#retained.size, retainedBytes: this.#retainedBytes, queuedBytes: this.#queuedBytes, sessions: this.#sessions.size }
  }

  async setup(broker: BrokerRef): Promise<void> {
    this.#broker = broker
    await this.#inner.setup(broker)
    for await (const packet of this.#inner.createRetainedStream('#') as AsyncIterable<Packet>) this.#countRetained(packet)
  }

  async storeRetained(packet: Packet): Promise<void> {
    const size = sizeOf(packet)
    const previous = this.#retained.get(packet.topic)
    // [MQTT-3.3.1-10] an empty retained payload removes what the topic kept
    if (Buffer.byteLength(packet.payload) === 0) {
      if (previous !== undefined) this.#forgetRetained(packet.topic, previous)
      return this.#inner.storeRetained(packet)
    }
    const count = this.#retained.size + (previous === undefined ? 1 : 0)
    const bytes = this.#retainedBytes - (previous ?? 0) + size
    if (count > this.#limits.maxRetained || bytes > this.#limits.maxRetainedBytes) {
      this.#onLimit('retained', { topic: packet.topic.slice(0, 256), bytes: size })
      return
    }
    this.#countRetained(packet, previous)
    return this.#inner.storeRetained(packet)
  }

  createRetainedStream(pattern: string): Readable {
    return this.#inner.createRetainedStream(pattern)
  }

  createRetainedStreamCombi(patterns: string[]): Readable {
    return this.#inner.createRetainedStreamCombi(patterns)
  }

  async addSubscriptions(client: ClientRef, subs: Subscription[]): Promise<void> {
    this.#touchSession(client.id)
    await this.#inner.addSubscriptions(client, subs)
  }

  async removeSubscriptions(client: ClientRef, subs: string[]): Promise<void> {
    await this.#inner.removeSubscriptions(client, subs)
  }

  subscriptionsByClient(client: ClientRef): Promise<Subscription[]> {
    if (this.#sessions.has(client.id)) this.#touchSession(client.id)
    return this.#inner.subscriptionsByClient(client)
  }

  countOffline(): Promise<{ subsCount: number; clientsCount: number }> {
    return this.#inner.countOffline()
  }

  subscriptionsByTopic(pattern: string): Promise<{ clientId: string; topic: string; qos: number }[]> {
    return this.#inner.subscriptionsByTopic(pattern)
  }

  async cleanSubscriptions(client: ClientRef): Promise<void> {
    this.#sessions.delete(client.id)
    await this.#inner.cleanSubscriptions(client)
  }

  async outgoingEnqueue(sub: { clientId: string }, packet: Packet): Promise<void> {
    if (this.#admit(sub.clientId, packet)) await this.#inner.outgoingEnqueue(sub, packet)
  }

  async outgoingEnqueueCombi(subs: { clientId: string }[], packet: Packet): Promise<void> {
    const admitted = subs.filter((sub) => this.#admit(sub.clientId, packet))
    if (admitted.length > 0) await this.#inner.outgoingEnqueueCombi(admitted, packet)
  }

  outgoingUpdate(client: ClientRef, packet: Packet): Promise<void> {
    return this.#inner.outgoingUpdate(client, packet)
  }

  async outgoingClearMessageId(client: ClientRef, packet: Packet): Promise<Packet | undefined> {
    const removed = await this.#inner.outgoingClearMessageId(client, packet)
    if (removed) this.#dequeued(client.id, sizeOf(removed))
    return removed
  }

  outgoingStream(client: ClientRef): Readable {
    return this.#inner.outgoingStream(client)
  }

  incomingStorePacket(client: ClientRef, packet: Packet): Promise<void> {
    return this.#inner.incomingStorePacket(client, packet)
  }

  incomingGetPacket(client: ClientRef, packet: Packet): Promise<Packet> {
    return this.#inner.incomingGetPacket(client, packet)
  }

  incomingDelPacket(client: ClientRef, packet: Packet): Promise<void> {
    return this.#inner.incomingDelPacket(client, packet)
  }

  async cleanIncoming(client: ClientRef): Promise<void> {
    await this.#inner.cleanIncoming?.(client)
  }

  putWill(client: ClientRef, packet: Packet): Promise<void> {
    return this.#inner.putWill(client, packet)
  }

  getWill(client: ClientRef): Promise<Packet | undefined> {
    return this.#inner.getWill(client)
  }

  delWill(client: ClientRef): Promise<Packet | undefined> {
    return this.#inner.delWill(client)
  }

  streamWill(brokers?: Record<string, number>): Readable {
    return this.#inner.streamWill(brokers)
  }

  getClientList(topic: string): Readable {
    return this.#inner.getClientList(topic)
  }

  destroy(): Promise<void> {
    return this.#inner.destroy()
  }

  #countRetained(packet: Packet, previous = this.#retained.get(packet.topic)): void {
    const size = sizeOf(packet)
    this.#retainedBytes += size - (previous ?? 0)
    this.#retained.set(packet.topic, size)
  }

  #forgetRetained(topic: string, size: number): void {
    this.#retained.delete(topic)
    this.#retainedBytes -= size
  }

  /** Whether one more message fits this session's queue and the total; counts it if so. */
  #admit(clientId: string, packet: Packet): boolean {
    const size = sizeOf(packet)
    const queue = this.#queues.get(clientId) ?? { count: 0, bytes: 0 }
    if (queue.count + 1 > this.#limits.maxQueued || queue.bytes + size > this.#limits.maxQueuedBytes) {
      this.#onLimit('session_queue', { clientId, queued: queue.count, bytes: queue.bytes })
      return false
    }
    if (this.#queuedBytes + size > this.#limits.maxQueuedTotalBytes) {
      this.#onLimit('queued_bytes', { clientId, bytes: this.#queuedBytes })
      return false
    }
    queue.count++
    queue.bytes += size
    this.#queues.set(clientId, queue)
    this.#queuedBytes += size
    return true
  }

  #dequeued(clientId: string, size: number): void {
    const queue = this.#queues.get(clientId)
    if (!queue) return
    queue.count--
    queue.bytes -= size
    this.#queuedBytes -= size
    if (queue.count <= 0) {
      this.#queuedBytes -= queue.bytes
      this.#queues.delete(clientId)
    }
  }

  /** Marks a session as just seen, and forgets the least recently seen offline ones over the bound. */
  #touchSession(clientId: string): void {
    this.#sessions.delete(clientId)
    this.#sessions.set(clientId, true)
    if (this.#sessions.size <= this.#limits.maxSessions) return
    for (const id of this.#sessions.keys()) {
      if (this.#sessions.size <= this.#limits.maxSessions) break
      if (id === clientId || this.#broker?.clients?.[id]) continue
      this.#onLimit('sessions', { clientId: id })
      void this.#forgetSession(id)
    }
  }

  async #forgetSession(clientId: string): Promise<void> {
    this.#sessions.delete(clientId)
    const client = { id: clientId }
    await this.#inner.cleanSubscriptions(client)
    for await (const packet of this.#inner.outgoingStream(client) as AsyncIterable<Packet>) {
      await this.outgoingClearMessageId(client, packet)
    }
  }
}
