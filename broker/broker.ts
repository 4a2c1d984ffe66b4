import net from 'node:net'
import { EventEmitter } from 'node:events'
import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import { createRequire } from 'node:module'
import { Aedes, type AedesOptions, type AedesPublishPacket, type AuthenticateError, type Client, type ConnectPacket } from 'aedes'
import type { Logger } from 'pino'
import type { OnLimit } from '../protocol/limits.ts'
import { ANONYMOUS, OPEN_POLICY, type Policy, type Principal } from '../protocol/access.ts'
import { topicMatches } from '../protocol/topics.ts'
import { FlappingDetector } from './flapping.ts'
import { PacketSizeGuard } from './packet-size.ts'
import { BoundedPersistence, type AsyncPersistence, type PersistenceLimits } from './persistence.ts'

export interface BrokerLimits extends PersistenceLimits {
  /** Largest MQTT packet accepted, in bytes; bigger ones close the connection. */
  maxPacketSize: number
  /** Longest topic or filter, in UTF-8 bytes. */
  maxTopicLength: number
  /** MQTT connections at once, over TCP and WebSocket together. */
  maxConnections: number
  /** Longest keepalive, in seconds; 0 (none) and longer ones are capped to it. */
  maxKeepalive: number
  /** Subscriptions one client may hold. */
  maxSubscriptions: number
  /** Connects of one client id within `flapWindowMs` before it is refused for `flapBanMs`. */
  flapMax: number
  flapWindowMs: number
  flapBanMs: number
}

export const brokerDefaults: BrokerLimits = {
  maxPacketSize: 256 * 1024,
  maxTopicLength: 1024,
  maxConnections: 2000,
  maxKeepalive: 600,
  maxSubscriptions: 1000,
  maxRetained: 10_000,
  maxRetainedBytes: 64 * 1024 * 1024,
  maxQueued: 1000,
  maxQueuedBytes: 8 * 1024 * 1024,
  maxQueuedTotalBytes: 128 * 1024 * 1024,
  maxSessions: 1000,
  flapMax: 15,
  flapWindowMs: 60_000,
  flapBanMs: 60_000,
}

export interface BrokerOptions extends Partial<BrokerLimits> {
  /** Where the broker reports client errors. @default a silent logger */
  logger?: Logger
  /** Called each time input reaches a bound. */
  onLimit?: OnLimit
  /** Asked for every publish, subscription and delivery. @default everyone may do everything */
  policy?: Policy
  /**
   * Who a connecting client is, from its CONNECT: a Principal, or a refusal with its CONNACK
   * code (4 bad user name or password, 5 not authorized). @default everyone is anonymous
   */
  authenticate?: (username: string | undefined, password: Buffer | undefined, clientId: string, address: string) => Promise<Principal | { refused: 4 | 5; reason: string }>
  /** Where retained messages, sessions and their queues live; kept within the limits either way. @default in memory */
  persistence?: AsyncPersistence
  /**
   * How publishes reach subscribers: an MQEmitter shared by several brokers (mqemitter-redis)
   * makes one broker of them. @default aedes' own, in this process
   */
  mq?: unknown
  /**
   * How often this broker says it is alive to the others sharing `mq`; one silent for 3 of these
   * is dead, and its clients' wills are published within 4 of these. @default 60000 (aedes')
   */
  heartbeatIntervalMs?: number
}

/** A message as the broker delivers it to an in-process subscriber. */
export interface BrokerMessage {
  topic: string
  payload: Buffer
  qos: 0 | 1 | 2
  retain: boolean
  /** The MQTT client that published it; absent for the broker's own and for in-process publishes. */
  clientId?: string
  /** What an in-process publisher said it was, given to `publish`. */
  origin?: string
  /** Published through this broker, not relayed from another one sharing its emitter. */
  local: boolean
}

/** Counters read by `/api/health` and `/metrics`. */
export interface BrokerStats {
  readonly clients: number
  /** PUBLISH packets received from MQTT clients. */
  messagesIn: number
  /** PUBLISH packets delivered to MQTT subscribers. */
  messagesOut: number
  /** Connections closed for sending a packet over `maxPacketSize`. */
  oversizePackets: number
  /** Connections closed for a protocol error (garbage, malformed packets, a refused publish). */
  clientErrors: number
  /** Publishes refused by the topic rules ($-topics, NUL, too long); each closes its connection. */
  refusedPublishes: number
  /** A client id was taken over by a new connection [MQTT-3.1.4-2]. */
  takeovers: number
  /** Publishes the ACL denied: acknowledged and dropped. */
  deniedPublishes: number
}

export interface BrokerEvents {
  /** An MQTT client finished connecting; `will` is its last will, if it set one. */
  connect: [clientId: string, will: { topic: string; payload: Buffer } | undefined]
  /** An MQTT client's connection ended, cleanly or not. */
  disconnect: [clientId: string]
  /** A new connection took the id of a connected client, which was closed. */
  takeover: [clientId: string]
}

export interface Broker extends EventEmitter<BrokerEvents> {
  readonly aedes: Aedes
  readonly stats: BrokerStats
  readonly limits: BrokerLimits
  readonly persistence: BoundedPersistence
  /** MQTT over TCP; not yet listening. */
  readonly tcpServer: net.Server
  /** Serve one MQTT connection: a TCP socket or a WebSocket stream. */
  handle(stream: Duplex, req?: IncomingMessage): void
  /**
   * Every message matching `filter`, as the broker routes it (so with a shared
   * emitter, every broker's); returns a function that ends the subscription.
   */
  subscribe(filter: string, deliver: (message: BrokerMessage) => void): () => void
  /**
   * Every message matching `filter` published through this broker (by its clients, in-process,
   * or by the broker itself: `$SYS`, wills), as it is routed; with a shared emitter, not the other
   * brokers'. Returns a function that ends the subscription.
   */
  subscribeLocal(filter: string, deliver: (message: BrokerMessage) => void): () => void
  /** Publishes from inside the process; `origin` comes back on the message to subscribers in-process. */
  publish(message: { topic: string; payload: Buffer; qos: 0 | 1 | 2; retain: boolean }, origin: string): Promise<void>
  /** The retained messages it holds now. */
  retained(): AsyncIterable<BrokerMessage>
  close(): Promise<void>
}

// aedes-persistence is CommonJS and exports its async in-memory class by path only
const MemoryPersistence = createRequire(import.meta.url)('aedes-persistence/asyncPersistence.js') as new () => AsyncPersistence

export async function createBroker(opts: BrokerOptions = {}): Promise<Broker> {
  // only the limits, whatever else the caller's options carry
  const limits = Object.fromEntries(
    Object.entries(brokerDefaults).map(([name, value]) => [name, opts[name as keyof BrokerLimits] ?? value]),
  ) as unknown as BrokerLimits
  const log = opts.logger
  const onLimit: OnLimit = opts.onLimit ?? (() => {})
  const events = new EventEmitter<BrokerEvents>()
  const flapping = new FlappingDetector({
    maxConnects: limits.flapMax,
    windowMs: limits.flapWindowMs,
    banMs: limits.flapBanMs,
    maxTracked: limits.maxSessions,
  })
  const persistence = new BoundedPersistence(opts.persistence ?? new MemoryPersistence(), limits, onLimit)
  const policy = opts.policy ?? OPEN_POLICY
  /** The CONNECT packet of each client being authenticated: aedes hands `authenticate` only the client. */
  const connecting = new WeakMap<Client, ConnectPacket>()
  /** Who each connected client is, from `authenticate` on. */
  const principals = new WeakMap<Client, Principal>()
  /** Who each persistent session's client id belongs to, while the broker keeps the session. */
  const sessionOwners = new Map<string, Principal>()
  /** The peer address of each connection, for login back-off. */
  const addresses = new WeakMap<Client, string>()
  const principalOf = (client: Client | null) => (client && principals.get(client)) ?? ANONYMOUS
  let messagesOut = 0
  let connections = 0

  const stats: BrokerStats = {
    get clients() {
      return aedes.connectedClients
    },
    messagesIn: 0,
    get messagesOut() {
      return messagesOut
    },
    oversizePackets: 0,
    clientErrors: 0,
    refusedPublishes: 0,
    takeovers: 0,
    deniedPublishes: 0,
  }

  /** Why a topic may not be published by a client, or null. */
  function publishError(topic: string): string | null {
    // [MQTT-4.7.2-1] `$` topics belong to the broker; aedes itself only guards $SYS
    if (topic.startsWith('$')) return 'topics starting with $ are reserved for the broker'
    // [MQTT-1.5.3-2] a UTF-8 string in MQTT must not contain U+0000
    if (topic.includes('\u0000')) return 'topic contains NUL'
    if (Buffer.byteLength(topic) > limits.maxTopicLength) {
      onLimit('topic_length', { bytes: Buffer.byteLength(topic) })
      return `topic is longer than ${limits.maxTopicLength} bytes (--max-topic-length)`
    }
    return null
  }

  /** The rules every connection meets once it is known who it is. */
  function admit(client: Client, packet: ConnectPacket | undefined, who: Principal, done: (err: AuthenticateError | null, ok: boolean) => void): void {
    // [MQTT-3.1.3-8] a zero-length client id needs clean session: the server cannot keep a session for nobody
    if (packet && packet.clientId === '' && !packet.clean) return done(refusal(2, 'a zero-length client id needs clean session'), false)
    const bannedMs = flapping.connect(client.id)
    if (bannedMs > 0) {
      onLimit('flapping', { clientId: client.id, refusedForMs: bannedMs })
      return done(refusal(3, `client id ${client.id} connects too often; refused for ${Math.ceil(bannedMs / 1000)} s`), false)
    }
    const holder = clientsOf(aedes)[client.id]
    // with users, only the same one may take a client id over, connected or with a session kept for
    // it (clean: false); anyone else would hijack a device's session and its queued messages
    const held = (holder && principals.get(holder)) || sessionOwners.get(client.id)
    if (held && (held.kind !== who.kind || held.name !== who.name)) {
      log?.warn({ clientId: client.id, holder: held.name, by: who.name }, 'mqtt client id held by another user; connect refused')
      return done(refusal(5, `client id ${client.id} belongs to another user`), false)
    }
    if (packet && !packet.clean) {
      sessionOwners.delete(client.id)
      sessionOwners.set(client.id, who)
      // as many as the sessions kept, the least recently connected forgotten first
      if (sessionOwners.size > limits.maxSessions) sessionOwners.delete(sessionOwners.keys().next().value!)
    } else sessionOwners.delete(client.id)
    if (holder) {
      // [MQTT-3.1.4-2] the new connection wins; aedes closes the old one after this
      stats.takeovers++
      log?.warn({ clientId: client.id }, 'mqtt client id taken over by a new connection; the old one is closed')
      events.emit('takeover', client.id)
    }
    principals.set(client, who)
    done(null, true)
  }

  const hooks: AedesOptions = {
    persistence,
    ...(opts.mq !== undefined && { mq: opts.mq }),
    ...(opts.heartbeatIntervalMs !== undefined && { heartbeatInterval: opts.heartbeatIntervalMs }),
    preConnect(client, packet, done) {
      connecting.set(client, packet)
      // [MQTT-3.1.2-24] the server disconnects after 1.5 × keepalive of silence; a client that asks
      // for none, or for hours, would hold its connection forever. MQTT 3.1.1 cannot tell it so; capping
      // the keepalive here makes aedes apply the cap, and a client that pings within it never notices.
      if (!packet.keepalive || packet.keepalive > limits.maxKeepalive) {
        onLimit('keepalive', { clientId: packet.clientId, keepalive: packet.keepalive })
        packet.keepalive = limits.maxKeepalive
      }
      done(null, true)
    },
    authenticate(client, username, password, done) {
      const packet = connecting.get(client)
      connecting.delete(client)
      if (!opts.authenticate) return admit(client, packet, { ...ANONYMOUS, clientId: client.id }, done)
      opts.authenticate(username, password, client.id, addresses.get(client) ?? 'unknown').then(
        (who) => {
          if ('refused' in who) {
            log?.info({ clientId: client.id, username, address: addresses.get(client) }, `mqtt connect refused: ${who.reason}`)
            return done(refusal(who.refused, who.reason), false)
          }
          admit(client, packet, who, done)
        },
        (err: unknown) => done(refusal(3, `authentication failed: ${(err as Error).message}`), false),
      )
    },
    authorizePublish(client, packet, done) {
      // shutting down: refused before it is acknowledged, so the client keeps it and sends it again
      if (closing) return done(new Error('the server is shutting down'))
      if (client) routing++
      const problem = publishError(packet.topic)
      if (client && problem === null && !policy.canPublish(principalOf(client), packet.topic)) {
        // MQTT 3.1.1 has no reason codes: a denied publish is acknowledged as usual (so a QoS 1 client does not
        // resend it forever) and dropped, sent to a `$` topic that no wildcard reaches and nobody may subscribe to.
        stats.deniedPublishes++
        log?.info({ clientId: client.id, user: principalOf(client).name, topic: packet.topic.slice(0, 256) }, 'publish denied by the ACL; dropped')
        packet.topic = DENIED_TOPIC
        packet.retain = false
        return done(null)
      }
      if (!problem) return done(null)
      if (client) routing--
      stats.refusedPublishes++
      log?.debug({ clientId: client?.id, topic: packet.topic.slice(0, 256) }, `publish refused: ${problem}`)
      // MQTT 3.1.1 has no way to refuse one PUBLISH: the connection is closed [MQTT-4.8.0-1]
      done(new Error(problem))
    },
    authorizeSubscribe(client, sub, done) {
      const bytes = Buffer.byteLength(sub.topic)
      if (bytes > limits.maxTopicLength) {
        onLimit('topic_length', { clientId: client.id, bytes })
        return done(null, null) // [MQTT-3.9.3] return code 0x80 for this filter alone
      }
      if (sub.topic.includes('\u0000')) return done(null, null) // [MQTT-1.5.3-2]
      if (sub.topic.startsWith(DENIED_TOPIC)) return done(null, null)
      const held = subscriptionsOf(client)
      if (!(sub.topic in held) && Object.keys(held).length >= limits.maxSubscriptions) {
        onLimit('subscriptions', { clientId: client.id })
        return done(null, null)
      }
      done(null, policy.canSubscribe(principalOf(client), sub.topic) ? sub : null)
    },
    // Called once per delivery to an MQTT subscriber (retained and queued ones too): where reading is checked, and counted.
    authorizeForward(client, packet) {
      if (!policy.canSubscribe(principalOf(client), packet.topic)) return null
      messagesOut++
      return packet
    },
  }
  /** Closing: no PUBLISH is taken any more. */
  let closing = false
  /** PUBLISHes from clients taken but not yet routed: aedes acknowledges a QoS 1 one before it routes it. */
  let routing = 0
  const aedes = await Aedes.createBroker(hooks)
  // With brokers sharing one emitter, aedes republishes the wills of a dead one's clients keeping
  // its brokerId: no live node would count them as its own, show them or store them. The node
  // that publishes one now is where it comes from (a fresh counter of ours goes with it).
  const publishAsIs = aedes.publish.bind(aedes)
  aedes.publish = ((packet: AedesPublishPacket, ...rest: unknown[]) =>
    (publishAsIs as (...args: unknown[]) => unknown)(
      packet.brokerId !== undefined && packet.brokerId !== aedes.id ? { ...packet, brokerId: undefined, brokerCounter: undefined } : packet,
      ...rest,
    )) as typeof aedes.publish
  /** In-process subscribers to what this broker routes, with a shared emitter (`subscribeLocal`). */
  const localSubscribers = new Set<{ filter: string; deliver: (message: BrokerMessage) => void }>()
  // aedes emits `publish` on the broker a publish went through, never for what the emitter brings
  // from other brokers, once the packet is stored (retained, offline queues) and the emitter has
  // it. Its packet is the one given to `aedes.publish`, not the routed copy: no brokerId, and no
  // clientId, qos or retain where the publisher left them out (the broker's own `$SYS`).
  aedes.on('publish', (packet, client) => {
    if (client) {
      routing = Math.max(0, routing - 1)
      stats.messagesIn++
    }
    if (localSubscribers.size === 0) return
    const message = toMessage(packet, client?.id ?? (packet as ClientPacket).clientId, true)
    for (const { filter, deliver } of localSubscribers) if (topicMatches(filter, packet.topic)) deliver(message)
  })
  // an MQTT 5 device is told why in the log, once per 10 s: its own error says only "unacceptable protocol version"
  let versionLoggedAt = 0
  const onClientError = (client: Client, err: Error & { errorCode?: number }) => {
    stats.clientErrors++
    if (err.errorCode === 1 && Date.now() - versionLoggedAt >= 10_000) {
      versionLoggedAt = Date.now()
      // refused before aedes took its id: the CONNECT has it
      const id = client.id || connecting.get(client)?.clientId || 'no id'
      log?.warn(
        { clientId: id },
        `an MQTT 5 client (${id}) was refused: the embedded broker speaks MQTT 3.1.1 only. Connect it with MQTT 3.1.1, or run Pulseboard on Mosquitto 2 with --broker (docs/devices.md)`,
      )
      return
    }
    log?.debug({ clientId: client.id, err: err.message }, 'mqtt client error; connection closed')
  }
  aedes.on('clientError', onClientError)
  aedes.on('connectionError', onClientError)
  aedes.on('clientReady', (client) => {
    log?.info({ clientId: client.id }, 'mqtt client connected')
    // aedes keeps the CONNECT packet's will on the client; its types leave it out
    const will = (client as Client & { will?: { topic: string; payload: Buffer | string } | null }).will
    events.emit('connect', client.id, will ? { topic: will.topic, payload: Buffer.from(will.payload) } : undefined)
  })
  aedes.on('clientDisconnect', (client) => {
    log?.info({ clientId: client.id }, 'mqtt client disconnected')
    events.emit('disconnect', client.id)
  })

  function toMessage(packet: AedesPublishPacket, clientId: string | undefined, local: boolean): BrokerMessage {
    const origin = packet.properties?.userProperties?.[ORIGIN_PROPERTY]
    return {
      topic: packet.topic,
      payload: Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload),
      qos: packet.qos ?? 0,
      retain: packet.retain ?? false,
      ...(clientId !== undefined && { clientId }),
      ...(typeof origin === 'string' && { origin }),
      local,
    }
  }
  /** A routed packet as an in-process subscriber gets it. */
  const routed = (packet: ClientPacket) => toMessage(packet, packet.clientId, packet.brokerId === aedes.id)

  function subscribe(filter: string, deliver: (message: BrokerMessage) => void): () => void {
    const listener = (packet: AedesPublishPacket, done: () => void) => {
      deliver(routed(packet))
      done()
    }
    aedes.subscribe(filter, listener, noop)
    return () => aedes.unsubscribe(filter, listener, noop)
  }

  function subscribeLocal(filter: string, deliver: (message: BrokerMessage) => void): () => void {
    // Alone, everything the emitter routes was published here, and its subscription gets it first:
    // aedes' own emitter calls back only once every subscriber's write is done, so `publish`
    // would wait for the slowest MQTT subscriber.
    if (opts.mq === undefined) return subscribe(filter, deliver)
    const entry = { filter, deliver }
    localSubscribers.add(entry)
    return () => localSubscribers.delete(entry)
  }

  function publish(message: { topic: string; payload: Buffer; qos: 0 | 1 | 2; retain: boolean }, origin: string): Promise<void> {
    return new Promise((resolve, reject) => {
      // the origin travels as a user property: aedes keeps `properties` on every copy of a packet
      const packet = { cmd: 'publish' as const, dup: false, ...message, properties: { userProperties: { [ORIGIN_PROPERTY]: origin } } }
      aedes.publish(packet, (err) => (err ? reject(err) : resolve()))
    })
  }

  async function* retained(): AsyncIterable<BrokerMessage> {
    for await (const packet of persistence.createRetainedStream('#') as AsyncIterable<AedesPublishPacket>) yield routed(packet)
  }

  function handle(stream: Duplex, req?: IncomingMessage): void {
    if (connections >= limits.maxConnections) {
      onLimit('connections', { connections })
      stream.destroy()
      return
    }
    connections++
    stream.once('close', () => connections--)
    const client = aedes.handle(stream, req)
    addresses.set(client, (req?.socket ?? (stream as Partial<net.Socket>)).remoteAddress ?? 'unknown')
    const guard = new PacketSizeGuard(limits.maxPacketSize)
    // aedes pulls with read(); a 'data' listener then sees each chunk as it is read, before it is parsed.
    stream.on('data', (chunk: Buffer) => {
      const size = guard.push(chunk)
      if (size === null) return
      stats.oversizePackets++
      onLimit('packet_size', { clientId: client.id, size })
      stream.destroy()
    })
  }

  const tcpServer = net.createServer((socket) => {
    // Nagle's algorithm holds small publishes back by up to 40 ms; telemetry wants them now.
    socket.setNoDelay(true)
    handle(socket)
  })

  async function close(): Promise<void> {
    closing = true
    // those already taken reach the subscribers (the bridge, so the store) before the clients go
    for (const until = Date.now() + 1000; routing > 0 && Date.now() < until; ) await new Promise((resolve) => setTimeout(resolve, 1))
    const closed = new Promise<void>((resolve) => tcpServer.close(() => resolve()))
    await new Promise<void>((resolve) => aedes.close(() => resolve()))
    if (tcpServer.listening) await closed
  }

  return Object.assign(events, { aedes, stats, limits, persistence, tcpServer, handle, subscribe, subscribeLocal, publish, retained, close })
}

/** The user property that carries an in-process publisher's origin. */
const ORIGIN_PROPERTY = 'pulseboard-origin'
const noop = () => {}

// Fields aedes keeps at run time that its type declarations leave out.
/** aedes sets `clientId` on the packets its clients publish. */
type ClientPacket = AedesPublishPacket & { clientId?: string }
const clientsOf = (aedes: Aedes) => (aedes as unknown as { clients: Record<string, Client> }).clients
const subscriptionsOf = (client: Client) => (client as unknown as { subscriptions: Record<string, unknown> }).subscriptions

/** A CONNACK refusal: aedes sends `returnCode` [MQTT-3.2.2-5], then closes. */
/** Where a denied publish goes: a `$` topic, so no wildcard subscription receives it [MQTT-4.7.2-1]. */
const DENIED_TOPIC = '$pulseboard/denied'

function refusal(returnCode: 2 | 3 | 4 | 5, message: string): AuthenticateError {
  return Object.assign(new Error(message), { returnCode })
}
