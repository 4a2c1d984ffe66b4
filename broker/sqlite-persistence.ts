import { createRequire } from 'node:module'
import { Readable } from 'node:stream'
import type { AedesPublishPacket, Subscription } from 'aedes'
import type { AsyncPersistence } from './persistence.ts'

type Packet = AedesPublishPacket
type ClientRef = { id: string }
type BrokerRef = Parameters<AsyncPersistence['setup']>[0]

/** The part of a better-sqlite3 database this persistence uses. */
export interface PersistenceDatabase {
  exec(sql: string): unknown
  prepare(sql: string): { run(...params: unknown[]): unknown; all(...params: unknown[]): unknown[] }
  transaction(fn: () => void): () => void
  /** The file, for messages. */
  readonly name?: string
}

/** The broker's tables cannot be created or read back; the message is one line naming the file and the fix. */
export class PersistenceOpenError extends Error {
  override name = 'PersistenceOpenError'
  constructor(
    readonly file: string,
    cause: unknown,
  ) {
    const code = codeOf(cause)
    const damaged = code === 'SQLITE_NOTADB' || code?.startsWith('SQLITE_CORRUPT') === true
    super(`${file} ${damaged ? 'is damaged' : 'cannot hold the broker state'} (${reason(cause)}); move it aside or choose another --data-dir`, { cause })
  }
}

// aedes-persistence is CommonJS and exports its async in-memory class by path only
const MemoryPersistence = createRequire(import.meta.url)('aedes-persistence/asyncPersistence.js') as new () => AsyncPersistence

/**
 * aedes' broker state kept in SQLite, so it survives a restart: retained
 * messages, the subscriptions of persistent sessions (clean: false), their
 * queues of QoS 1/2 messages, and the QoS 2 messages awaiting PUBREL.
 *
 * Wills are kept in memory only. Every device sets one and sets it at each connect: writing
 * each (up to a packet's size) would cost a write per connect, and a reconnect storm of a
 * thousand devices a second of blocked event loop. A will matters after a crash only to tell
 * that its client is gone, which every device is after a restart anyway.
 *
 * The in-memory persistence of aedes-persistence stays the working copy (its
 * subscription trie answers "who subscribed to this topic" at every publish);
 * every change is written through to SQLite, and `setup()` loads it all back.
 * A write that fails (a full disk) is reported through `onError` and the broker
 * carries on from memory: that change is lost at the next restart, nothing else.
 * A record that does not parse at `setup()` is reported there too, and skipped; a
 * file SQLite cannot read throws a {@link PersistenceOpenError}.
 * The database is opened and closed by the caller; the tables are `mqtt_*`.
 */
export class SqlitePersistence implements AsyncPersistence {
  readonly #inner = new MemoryPersistence()
  readonly #db: PersistenceDatabase
  readonly #onError: (err: unknown) => void
  readonly #wills = new Map<string, Packet>()
  #broker: BrokerRef | null = null
  readonly #sql

  constructor(db: PersistenceDatabase, onError: (err: unknown) => void = () => {}) {
    this.#db = db
    this.#onError = onError
    try {
      this.#sql = this.#prepare(db)
    } catch (err) {
      throw new PersistenceOpenError(db.name ?? 'the database', err)
    }
  }

  #prepare(db: PersistenceDatabase) {
    db.exec(`
      CREATE TABLE IF NOT EXISTS mqtt_retained (topic TEXT PRIMARY KEY, packet TEXT NOT NULL);
      CREATE TABLE IF NOT EXISTS mqtt_subscriptions (client_id TEXT NOT NULL, topic TEXT NOT NULL, options TEXT NOT NULL, PRIMARY KEY (client_id, topic));
      CREATE TABLE IF NOT EXISTS mqtt_outgoing (seq INTEGER PRIMARY KEY AUTOINCREMENT, client_id TEXT NOT NULL, broker_id TEXT, broker_counter INTEGER, message_id INTEGER, packet TEXT NOT NULL);
      CREATE INDEX IF NOT EXISTS mqtt_outgoing_client ON mqtt_outgoing (client_id, seq);
      CREATE TABLE IF NOT EXISTS mqtt_incoming (client_id TEXT NOT NULL, message_id INTEGER NOT NULL, packet TEXT NOT NULL, PRIMARY KEY (client_id, message_id));
    `)
    return {
      putRetained: db.prepare('INSERT OR REPLACE INTO mqtt_retained (topic, packet) VALUES (?, ?)'),
      delRetained: db.prepare('DELETE FROM mqtt_retained WHERE topic = ?'),
      allRetained: db.prepare('SELECT packet FROM mqtt_retained'),
      putSub: db.prepare('INSERT OR REPLACE INTO mqtt_subscriptions (client_id, topic, options) VALUES (?, ?, ?)'),
      delSub: db.prepare('DELETE FROM mqtt_subscriptions WHERE client_id = ? AND topic = ?'),
      delSubs: db.prepare('DELETE FROM mqtt_subscriptions WHERE client_id = ?'),
      allSubs: db.prepare('SELECT client_id, topic, options FROM mqtt_subscriptions ORDER BY rowid'),
      enqueue: db.prepare('INSERT INTO mqtt_outgoing (client_id, broker_id, broker_counter, message_id, packet) VALUES (?, ?, ?, NULL, ?)'),
      updateByCounter: db.prepare('UPDATE mqtt_outgoing SET message_id = ?, packet = ? WHERE client_id = ? AND broker_id = ? AND broker_counter = ?'),
      updateByMessageId: db.prepare(
        'UPDATE mqtt_outgoing SET broker_id = ?, broker_counter = ?, message_id = ?, packet = ? WHERE seq = (SELECT seq FROM mqtt_outgoing WHERE client_id = ? AND message_id = ? ORDER BY seq LIMIT 1)',
      ),
      clear: db.prepare('DELETE FROM mqtt_outgoing WHERE seq = (SELECT seq FROM mqtt_outgoing WHERE client_id = ? AND message_id IS ? ORDER BY seq LIMIT 1)'),
      allOutgoing: db.prepare('SELECT client_id, message_id, packet FROM mqtt_outgoing ORDER BY seq'),
      putIncoming: db.prepare('INSERT OR REPLACE INTO mqtt_incoming (client_id, message_id, packet) VALUES (?, ?, ?)'),
      delIncoming: db.prepare('DELETE FROM mqtt_incoming WHERE client_id = ? AND message_id = ?'),
      cleanIncoming: db.prepare('DELETE FROM mqtt_incoming WHERE client_id = ?'),
      allIncoming: db.prepare('SELECT client_id, packet FROM mqtt_incoming'),
    }
  }

  /** The broker this persistence was set up with (aedes-persistence's abstract tests read it). */
  get broker(): BrokerRef | null {
    return this.#broker
  }

  async setup(broker: BrokerRef): Promise<void> {
    this.#broker = broker
    await this.#inner.setup(broker)
    // read it all first: a damaged file fails here, with a message that names it
    let rows
    try {
      const s = this.#sql
      rows = {
        retained: s.allRetained.all() as { packet: string }[],
        subs: s.allSubs.all() as { client_id: string; topic: string; options: string }[],
        outgoing: s.allOutgoing.all() as { client_id: string; message_id: number | null; packet: string }[],
        incoming: s.allIncoming.all() as { client_id: string; packet: string }[],
      }
    } catch (err) {
      throw new PersistenceOpenError(this.#db.name ?? 'the database', err)
    }
    // a row that does not parse is reported and skipped: one bad record must not keep the broker down
    const parse = <T>(text: string, as: (text: string) => T): T | undefined => {
      try {
        return as(text)
      } catch (err) {
        this.#onError(err)
        return undefined
      }
    }
    for (const row of rows.retained) {
      const packet = parse(row.packet, revive)
      if (packet) await this.#inner.storeRetained(packet)
    }
    const subs = new Map<string, Subscription[]>()
    for (const row of rows.subs) {
      const options = parse(row.options, (text) => JSON.parse(text) as Omit<Subscription, 'topic'>)
      if (!options) continue
      const list = subs.get(row.client_id) ?? []
      list.push({ topic: row.topic, ...options })
      subs.set(row.client_id, list)
    }
    for (const [id, list] of subs) await this.#inner.addSubscriptions({ id }, list)
    for (const row of rows.outgoing) {
      const packet = parse(row.packet, revive)
      if (!packet) continue
      await this.#inner.outgoingEnqueue({ clientId: row.client_id }, packet)
      // enqueueing makes a fresh copy without its id; the update gives it back [MQTT-4.4.0-1]
      if (row.message_id !== null) await this.#inner.outgoingUpdate({ id: row.client_id }, packet)
    }
    for (const row of rows.incoming) {
      const packet = parse(row.packet, revive)
      if (packet) await this.#inner.incomingStorePacket({ id: row.client_id }, packet)
    }
  }

  async storeRetained(packet: Packet): Promise<void> {
    await this.#inner.storeRetained(packet)
    // [MQTT-3.3.1-10] an empty retained payload removes what the topic kept
    this.#write(() => (Buffer.byteLength(packet.payload) === 0 ? this.#sql.delRetained.run(packet.topic) : this.#sql.putRetained.run(packet.topic, serialize(packet))))
  }

  createRetainedStream(pattern: string): Readable {
    return this.#inner.createRetainedStream(pattern)
  }

  createRetainedStreamCombi(patterns: string[]): Readable {
    return this.#inner.createRetainedStreamCombi(patterns)
  }

  async addSubscriptions(client: ClientRef, subs: Subscription[]): Promise<void> {
    await this.#inner.addSubscriptions(client, subs)
    this.#write(
      this.#db.transaction(() => {
        for (const { topic, ...options } of subs) this.#sql.putSub.run(client.id, topic, JSON.stringify(options))
      }),
    )
  }

  async removeSubscriptions(client: ClientRef, subs: string[]): Promise<void> {
    await this.#inner.removeSubscriptions(client, subs)
    this.#write(
      this.#db.transaction(() => {
        for (const topic of subs) this.#sql.delSub.run(client.id, topic)
      }),
    )
  }

  subscriptionsByClient(client: ClientRef): Promise<Subscription[]> {
    return this.#inner.subscriptionsByClient(client)
  }

  countOffline(): Promise<{ subsCount: number; clientsCount: number }> {
    return this.#inner.countOffline()
  }

  subscriptionsByTopic(pattern: string): Promise<{ clientId: string; topic: string; qos: number }[]> {
    return this.#inner.subscriptionsByTopic(pattern)
  }

  async cleanSubscriptions(client: ClientRef): Promise<void> {
    await this.#inner.cleanSubscriptions(client)
    this.#write(() => this.#sql.delSubs.run(client.id))
  }

  async outgoingEnqueue(sub: { clientId: string }, packet: Packet): Promise<void> {
    await this.outgoingEnqueueCombi([sub], packet)
  }

  async outgoingEnqueueCombi(subs: { clientId: string }[], packet: Packet): Promise<void> {
    await this.#inner.outgoingEnqueueCombi(subs, packet)
    const stored = serialize({ ...packet, messageId: undefined })
    this.#write(
      this.#db.transaction(() => {
        for (const { clientId } of subs) this.#sql.enqueue.run(clientId, packet.brokerId, packet.brokerCounter, stored)
      }),
    )
  }

  async outgoingUpdate(client: ClientRef, packet: Packet): Promise<void> {
    await this.#inner.outgoingUpdate(client, packet)
    // as the memory persistence matches: the same packet by broker and counter, else the one with this id (a PUBREL)
    this.#write(() => {
      const { changes } = this.#sql.updateByCounter.run(packet.messageId, serialize(packet), client.id, packet.brokerId, packet.brokerCounter) as { changes: number }
      if (changes === 0) this.#sql.updateByMessageId.run(packet.brokerId, packet.brokerCounter, packet.messageId, serialize(packet), client.id, packet.messageId)
    })
  }

  async outgoingClearMessageId(client: ClientRef, packet: Packet): Promise<Packet | undefined> {
    const removed = await this.#inner.outgoingClearMessageId(client, packet)
    if (removed) this.#write(() => this.#sql.clear.run(client.id, packet.messageId ?? null))
    return removed
  }

  outgoingStream(client: ClientRef): Readable {
    return this.#inner.outgoingStream(client)
  }

  async incomingStorePacket(client: ClientRef, packet: Packet): Promise<void> {
    await this.#inner.incomingStorePacket(client, packet)
    this.#write(() => this.#sql.putIncoming.run(client.id, packet.messageId, serialize(packet)))
  }

  incomingGetPacket(client: ClientRef, packet: Packet): Promise<Packet> {
    return this.#inner.incomingGetPacket(client, packet)
  }

  async incomingDelPacket(client: ClientRef, packet: Packet): Promise<void> {
    await this.#inner.incomingDelPacket(client, packet)
    this.#write(() => this.#sql.delIncoming.run(client.id, packet.messageId))
  }

  async cleanIncoming(client: ClientRef): Promise<void> {
    await this.#inner.cleanIncoming?.(client)
    this.#write(() => this.#sql.cleanIncoming.run(client.id))
  }

  async putWill(client: ClientRef, packet: Packet): Promise<void> {
    // in place, as aedes-persistence does: the broker keeps using the packet it handed over
    const will = packet as Packet & { clientId: string }
    will.brokerId = this.#broker?.id ?? packet.brokerId
    will.clientId = client.id
    this.#wills.set(client.id, will)
  }

  async getWill(client: ClientRef): Promise<Packet | undefined> {
    return this.#wills.get(client.id)
  }

  async delWill(client: ClientRef): Promise<Packet | undefined> {
    const will = this.#wills.get(client.id)
    this.#wills.delete(client.id)
    return will
  }

  streamWill(brokers: Record<string, number> = {}): Readable {
    return Readable.from([...this.#wills.values()].filter((will) => !brokers[will.brokerId]))
  }

  getClientList(topic: string): Readable {
    return this.#inner.getClientList(topic)
  }

  async destroy(): Promise<void> {
    // the database belongs to the caller, who closes it after the broker
    await this.#inner.destroy()
  }

  #write(write: () => unknown): void {
    try {
      write()
    } catch (err) {
      this.#onError(err)
    }
  }
}

/** A packet as JSON: Buffers (payload, correlation data) as base64. */
function serialize(packet: object): string {
  // `this[key]` is the value before Buffer's toJSON turns it into an array of numbers, slow for large payloads
  return JSON.stringify(packet, function (this: Record<string, unknown>, key, value: unknown) {
    const raw = this[key]
    return Buffer.isBuffer(raw) ? { $base64: raw.toString('base64') } : value
  })
}

function codeOf(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string' ? err.code : undefined
}

/** An error as a few words on one line. */
function reason(err: unknown): string {
  const line = (err instanceof Error ? err.message : String(err)).replace(/\s+/g, ' ').trim()
  const code = codeOf(err)
  return code && !line.includes(code) ? `${code}: ${line}` : line
}

function revive(text: string): Packet {
  return JSON.parse(text, (_key, value: unknown) => {
    const b = value as { $base64?: unknown } | null
    return b && typeof b === 'object' && typeof b.$base64 === 'string' ? Buffer.from(b.$base64, 'base64') : value
  }) as Packet
}
