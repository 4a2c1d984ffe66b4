import type { Namespace, Socket } from 'socket.io'
import type { OnLimit } from '../protocol/limits.ts'
import type { Principal } from '../protocol/access.ts'
import {
  topicMatches,
  type ChatClientToServerEvents,
  type ChatServerToClientEvents,
  type DeviceState,
  type Envelope,
  type Reading,
  type LiveClientToServerEvents,
  type LiveServerToClientEvents,
} from '../protocol/index.ts'

export interface ChatSocketData {
  /** Who this client is, from its handshake. */
  principal: Principal
}

export interface LiveSocketData extends ChatSocketData {
  /** Topic filters this client receives; set by the handshake, `#` by default. */
  filters: string[]
  /** Receives `device` and `readings` updates; set by the handshake, true by default. */
  devices: boolean
}

export type ChatNamespace = Namespace<ChatClientToServerEvents, ChatServerToClientEvents, object, ChatSocketData>
export type ChatSocket = Socket<ChatClientToServerEvents, ChatServerToClientEvents, object, ChatSocketData>
export type LiveNamespace = Namespace<LiveClientToServerEvents, LiveServerToClientEvents, object, LiveSocketData>
export type LiveSocket = Socket<LiveClientToServerEvents, LiveServerToClientEvents, object, LiveSocketData>
type AnySocket = Socket<never, never, object, unknown>

export interface FanoutOptions {
  /**
   * Packets a socket client may have waiting to be written before it is
   * skipped. A skipped client misses messages until its backlog is written
   * out; then it receives again. This bounds server memory per client.
   * @default 128
   */
  maxPendingPackets?: number
  /** Bytes a socket client may have waiting before it is skipped, as with `maxPendingPackets`. @default 524288 */
  maxPendingBytes?: number
  /**
   * A client whose oldest waiting packet is older than this is disconnected,
   * whether or not it answers pings; it reconnects and catches up from history. @default 30000
   */
  maxLagMs?: number
  /** Envelopes in one `messages` frame. @default 256 */
  maxBatch?: number
  /** Shortest time between two flushes; a flush after a quiet spell goes at once. @default 1 */
  minIntervalMs?: number
  /** Longest a message waits when the rate is high and batches are large. @default 16 */
  maxIntervalMs?: number
  /**
   * How long broadcasts go on for a group whose last client disconnected, so that socket.io's
   * connection state recovery has them to send when it is back. @default 0 (no recovery)
   */
  recoveryWindowMs?: number
  /**
   * One of several nodes whose `/live` broadcasts reach every node's clients (socket.io's Redis
   * adapter): `/live` gets only what `send` says this node received from its publisher, sent to
   * every filter group of any node (`addGroup`), and told of each group made here; `/` and device
   * events stay on this node, which sees every message.
   */
  cluster?: { announceGroup(filters: readonly string[]): void }
  onLimit?: OnLimit
}

export const fanoutDefaults = {
  maxPendingPackets: 128,
  maxPendingBytes: 512 * 1024,
  maxLagMs: 30_000,
  maxBatch: 256,
  minIntervalMs: 1,
  maxIntervalMs: 16,
  recoveryWindowMs: 0,
} satisfies Required<Omit<FanoutOptions, 'onLimit' | 'cluster'>>

export interface FanoutStats {
  /** Envelopes not sent to clients that were too far behind. */
  dropped: number
  /** Clients skipped at least once for being too far behind. */
  slowClients: number
  /** Clients disconnected for lagging longer than `maxLagMs`. */
  laggedOut: number
  /** socket.io packets broadcast (each encoded once, whatever the number of receivers). */
  broadcasts: number
}

/** How often lagging clients are looked for; lag is measured in these ticks. */
const LAG_TICK_MS = 1000
/** Room of the clients that are too far behind to be sent more. */
const LAGGING = 'lagging'
/** Room of the `/live` clients that follow device updates. */
const DEVICES = 'devices'

/**
 * Delivers messages to both namespaces, coalescing adaptively. After a quiet
 * spell a message leaves on the next turn of the event loop, with the others
 * that arrived in the same turn (one TCP read often holds many publishes).
 * While messages keep coming, flushes are at least `minIntervalMs` apart, and
 * the interval doubles while batches are large, up to `maxIntervalMs`, then
 * halves again as the rate falls. Each flush sends `/live` clients one frame
 * per filter group, encoded once and written to every member of the group:
 * fewer, larger frames cost the server and the browsers less than many small ones.
 */
export class Fanout {
  readonly stats: FanoutStats = { dropped: 0, slowClients: 0, laggedOut: 0, broadcasts: 0 }
  readonly #chat: ChatNamespace
  readonly #live: LiveNamespace
  readonly #opts: Required<Omit<FanoutOptions, 'onLimit' | 'cluster'>>
  readonly #onLimit: OnLimit
  readonly #cluster: FanoutOptions['cluster']
  /** Filter groups by room name; each `/live` client is in exactly one. `remote`: a group of another node's clients. */
  readonly #groups = new Map<string, { filters: string[]; members: number; emptySince: number; remote?: true }>()
  /** When the last client following devices left; device updates go on for the recovery window after. */
  #devicesEmptySince = -Infinity
  /** Clients skipped for now, and their namespace. */
  readonly #lagging = new Map<AnySocket, 'chat' | 'live'>()
  /** Each watched client's backlog, with the lag tick at which its oldest waiting packet was created. */
  readonly #backlogs = new Map<AnySocket, { pending: number; bytes: number; since: number }>()
  /** Seconds (ticks of the lag timer) since start: a clock that costs nothing to read per packet. */
  #tick = 0
  readonly #lagTimer: NodeJS.Timeout
  #queue: Envelope[] = []
  /** In a cluster: the queued messages this node sends to `/live` (it received them from their publishers). */
  #liveQueue: Envelope[] = []
  #cancel: (() => void) | null = null
  #lastFlush = -Infinity
  #intervalMs: number

  constructor(chat: ChatNamespace, live: LiveNamespace, opts: FanoutOptions = {}) {
    this.#chat = chat
    this.#live = live
    const { onLimit, cluster, ...rest } = opts
    this.#opts = { ...fanoutDefaults, ...rest }
    this.#cluster = cluster
    this.#onLimit = onLimit ?? (() => {})
    this.#intervalMs = this.#opts.minIntervalMs
    this.#lagTimer = setInterval(() => this.#disconnectLagging(), LAG_TICK_MS)
    this.#lagTimer.unref()
  }

  /** Starts watching a `/` client's backlog. */
  addChatClient(socket: ChatSocket): void {
    this.#watchBacklog(socket as AnySocket, 'chat')
  }

  /** Puts a `/live` client in the group of its handshake filters and watches its backlog. */
  addLiveClient(socket: LiveSocket): void {
    socket.data.filters = normalize(socket.data.filters)
    this.#join(socket, socket.data.filters)
    if (socket.data.devices) void socket.join(DEVICES)
    this.#watchBacklog(socket as AnySocket, 'live')
    socket.on('disconnect', () => {
      this.#leave(socket)
      if (socket.data.devices && !this.#live.adapter.rooms.get(DEVICES)?.size) this.#devicesEmptySince = performance.now()
    })
  }

  /** Replaces a `/live` client's topic filters (already validated). */
  setFilters(socket: LiveSocket, filters: string[]): string[] {
    this.#leave(socket)
    socket.data.filters = normalize(filters)
    this.#join(socket, socket.data.filters)
    return socket.data.filters
  }

  /** A message for every client; in a cluster, `origin` false keeps it from `/live` (its node sends it there). */
  send(envelope: Envelope, origin = true): void {
    this.#queue.push(envelope)
    if (this.#cluster && origin) this.#liveQueue.push(envelope)
    if (this.#cancel) return
    const wait = this.#lastFlush + this.#intervalMs - performance.now()
    if (wait <= 0) {
      const immediate = setImmediate(() => this.flush())
      this.#cancel = () => clearImmediate(immediate)
    } else {
      const timer = setTimeout(() => this.flush(), wait)
      this.#cancel = () => clearTimeout(timer)
    }
  }

  flush(): void {
    this.#cancel = null
    const queue = this.#queue
    if (queue.length === 0) return
    this.#queue = []
    const liveQueue = this.#cluster ? this.#liveQueue : queue
    this.#liveQueue = []
    this.#lastFlush = performance.now()
    // a batch that fills a good part of a frame means the rate is high: wait longer next time
    this.#intervalMs =
      queue.length > this.#opts.maxBatch / 4
        ? Math.min(this.#intervalMs * 2, this.#opts.maxIntervalMs)
        : Math.max(this.#intervalMs / 2, this.#opts.minIntervalMs)

    // who is skipped for this whole flush; a client that falls behind during it did receive what came before
    const skipped = [...this.#lagging]
    const missed = new Map<string, number>()
    let chatCount = 0
    // socket.io encodes a broadcast before it looks for receivers: with nobody on `/`, skip the work
    const chatTarget = this.#chat.sockets.size > 0 ? this.#chat.except(LAGGING) : null
    for (const envelope of queue) {
      // [MQTT-4.7.2-1] $SYS belongs to the broker; the seed protocol never carried it
      if (envelope.topic.startsWith('$')) continue
      chatTarget?.emit('message', envelope.payload)
      chatCount++
    }
    if (chatTarget) this.stats.broadcasts += chatCount

    for (const [room, group] of liveQueue.length > 0 ? this.#groups : []) {
      const batch = liveQueue.filter((e) => group.filters.some((f) => topicMatches(f, e.topic)))
      missed.set(room, batch.length)
      for (let i = 0; i < batch.length; i += this.#opts.maxBatch) {
        const chunk = batch.slice(i, i + this.#opts.maxBatch)
        const target = this.#live.to(room).except(LAGGING)
        if (chunk.length === 1) target.emit('message', chunk[0]!)
        else target.emit('messages', chunk)
        this.stats.broadcasts++
      }
    }

    for (const [socket, namespace] of skipped) {
      this.stats.dropped +=
        namespace === 'chat' ? chatCount : (missed.get(roomOf((socket as LiveSocket).data.filters)) ?? 0)
    }
  }

  /** Device changes and readings, already batched by the registry. */
  /** Device changes and readings, already batched by the registry; in a cluster, `readings` are this node's to send to all. */
  sendDeviceUpdate(changed: DeviceState[], readings: Reading[]): void {
    if (this.#cluster) {
      // every node's registry sees every message and tells its own clients of device changes
      if (changed.length > 0) this.#live.local.to(DEVICES).except(LAGGING).emit('device', changed)
      if (readings.length > 0) this.#live.to(DEVICES).except(LAGGING).emit('readings', readings)
      return
    }
    // socket.io encodes a broadcast before it looks for receivers; skip the work when there are none
    if (!this.#live.adapter.rooms.get(DEVICES)?.size && performance.now() - this.#devicesEmptySince > this.#opts.recoveryWindowMs) return
    const target = this.#live.to(DEVICES).except(LAGGING)
    if (changed.length > 0) target.emit('device', changed)
    if (readings.length > 0) target.emit('readings', readings)
  }

  /** A device the registry no longer knows (in a cluster, every node's registry forgets it and tells its own clients). */
  sendForget(id: string): void {
    ;(this.#cluster ? this.#live.local : this.#live).to(DEVICES).emit('forget', id)
  }

  /** A filter group of another node's clients: this node's messages go to it too. */
  addGroup(filters: string[]): void {
    const sorted = normalize(filters)
    const room = roomOf(sorted)
    if (!this.#groups.has(room)) this.#groups.set(room, { filters: sorted, members: 0, emptySince: 0, remote: true })
  }

  close(): void {
    clearInterval(this.#lagTimer)
    this.#cancel?.()
    this.#cancel = null
    this.#queue = []
  }

  #join(socket: LiveSocket, filters: string[]): void {
    const room = roomOf(filters)
    const group = this.#groups.get(room)
    if (group) group.members++
    else {
      this.#groups.set(room, { filters, members: 1, emptySince: 0 })
      this.#cluster?.announceGroup(filters)
    }
    void socket.join(room)
  }

  #leave(socket: LiveSocket): void {
    const room = roomOf(socket.data.filters)
    void socket.leave(room)
    const group = this.#groups.get(room)
    if (!group || --group.members > 0) return
    // kept for the recovery window: its client may come back and be sent what it missed
    if (this.#opts.recoveryWindowMs > 0) group.emptySince = performance.now()
    else this.#groups.delete(room)
  }

  /**
   * engine.io queues packets while the previous write is still in flight and
   * hands them all to the transport on `flush`, so packets created since the
   * last flush are this client's backlog. It is bounded in packets and in
   * bytes: one packet may batch hundreds of envelopes.
   */
  #watchBacklog(socket: AnySocket, namespace: 'chat' | 'live'): void {
    const conn = socket.conn
    // one object per client, updated in place: this runs for every packet to every client
    const backlog = { pending: 0, bytes: 0, since: 0 }
    this.#backlogs.set(socket, backlog)
    const onCreate = (packet: { data?: unknown }) => {
      if (backlog.pending++ === 0) backlog.since = this.#tick
      backlog.bytes += sizeOf(packet.data)
      if ((backlog.pending <= this.#opts.maxPendingPackets && backlog.bytes <= this.#opts.maxPendingBytes) || this.#lagging.has(socket)) return
      this.#lagging.set(socket, namespace)
      this.stats.slowClients++
      this.#onLimit('socket_backlog', { socketId: socket.id, packets: backlog.pending, bytes: backlog.bytes })
      void socket.join(LAGGING)
    }
    const onFlush = () => {
      backlog.pending = 0
      backlog.bytes = 0
      if (this.#lagging.size > 0 && this.#lagging.delete(socket)) void socket.leave(LAGGING)
    }
    conn.on('packetCreate', onCreate)
    conn.on('flush', onFlush)
    socket.on('disconnect', () => {
      conn.off('packetCreate', onCreate)
      conn.off('flush', onFlush)
      this.#lagging.delete(socket)
      this.#backlogs.delete(socket)
    })
  }

  /** Heartbeats prove a client is there, not that it reads: one that stays behind too long is cut off. */
  #disconnectLagging(): void {
    this.#tick++
    const now = performance.now()
    for (const [room, group] of this.#groups) {
      if (group.members === 0 && !group.remote && now - group.emptySince > this.#opts.recoveryWindowMs) this.#groups.delete(room)
    }
    const maxTicks = Math.ceil(this.#opts.maxLagMs / LAG_TICK_MS)
    for (const [socket, backlog] of this.#backlogs) {
      if (backlog.pending === 0 || this.#tick - backlog.since <= maxTicks) continue
      this.#backlogs.delete(socket)
      this.stats.laggedOut++
      this.#onLimit('socket_lag', { socketId: socket.id, lagMs: (this.#tick - backlog.since) * LAG_TICK_MS })
      // discard: what waits for a client that does not read will never be written
      socket.conn.close(true)
    }
  }
}

function sizeOf(data: unknown): number {
  if (typeof data === 'string') return data.length
  return data instanceof ArrayBuffer || ArrayBuffer.isView(data) ? data.byteLength : 0
}

/** One group per distinct set of filters, whatever their order. */
function normalize(filters: string[]): string[] {
  return [...new Set(filters)].sort()
}

function roomOf(filters: string[]): string {
  return `filters:${filters.join('\u0000')}`
}
