import type { Namespace, Socket } from 'socket.io'
import type { OnLimit } from '../protocol/limits.ts'
import type { Principal } from '../protocol/access.ts'
import {
  topicMatches,
  type AppliedView,
  type ChatClientToServerEvents,
  type ChatServerToClientEvents,
  type DeviceSelection,
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

/** What a `/live` client is sent: its view, as the handshake or its last `view` event set it (see `AppliedView`). */
export interface LiveSocketData extends ChatSocketData, AppliedView {}

/**
 * A group of `/live` clients that nodes of a cluster share, so that the node that received a
 * message or a reading sends it to every node's clients of the group, once: the clients of one set
 * of topic filters, or of the readings of one set of devices. Device state is not sent across: every
 * node's registry has every node's devices (the others' mirrored) and tells its own clients.
 */
export interface LiveGroup {
  kind: 'filters' | 'readings'
  /** Topic filters, or device ids: sorted, each once. */
  keys: string[]
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
   * adapter): `/live` gets only what `send` says this node received from its publisher, and only
   * the readings `sendDeviceUpdate` is given (this node's), sent to every group of any node
   * (`addGroup`), and told of each group made here; `/` and device events stay on this node
   * (`send` with `origin` false: another node's message, for `/` only).
   */
  cluster?: { announceGroup(group: LiveGroup): void }
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
/** Room of the `/live` clients that follow the state of every device. */
const DEVICES = 'devices'
/** Room of the `/live` clients that follow the readings of every device. */
const READINGS = 'readings'

/** Kinds of group: messages by filters, readings of some devices, state of some devices (this node's clients only). */
type GroupKind = LiveGroup['kind'] | 'devices'

interface Group {
  keys: string[]
  members: number
  emptySince: number
  /** Known to every node (a cluster's): another node's clients may be in it, so it stays. */
  shared?: true
}

/**
 * Delivers messages to both namespaces, coalescing adaptively. After a quiet
 * spell a message leaves on the next turn of the event loop, with the others
 * that arrived in the same turn (one TCP read often holds many publishes).
 * While messages keep coming, flushes are at least `minIntervalMs` apart, and
 * the interval doubles while batches are large, up to `maxIntervalMs`, then
 * halves again as the rate falls. Each flush sends `/live` clients one frame
 * per filter group, encoded once and written to every member of the group:
 * fewer, larger frames cost the server and the browsers less than many small ones.
 *
 * Device state and readings go the same way, to the groups of clients that follow the same
 * devices (one room for "every device", one per set of device ids): each batch is split among the
 * groups in one pass, through an index from device id to groups, and encoded once per group.
 */
export class Fanout {
  readonly stats: FanoutStats = { dropped: 0, slowClients: 0, laggedOut: 0, broadcasts: 0 }
  readonly #chat: ChatNamespace
  readonly #live: LiveNamespace
  readonly #opts: Required<Omit<FanoutOptions, 'onLimit' | 'cluster'>>
  readonly #onLimit: OnLimit
  readonly #cluster: FanoutOptions['cluster']
  /** Groups by kind and room name; each `/live` client is in at most one of each kind. */
  readonly #groups: Record<GroupKind, Map<string, Group>> = { filters: new Map(), readings: new Map(), devices: new Map() }
  /** Device id → rooms of the groups of that kind that name it. */
  readonly #byDevice: Record<'readings' | 'devices', Map<string, Set<string>>> = { readings: new Map(), devices: new Map() }
  /** When the last client of the every-device rooms left; their broadcasts go on for the recovery window after. */
  readonly #emptySince = new Map<string, number>([
    [DEVICES, -Infinity],
    [READINGS, -Infinity],
  ])
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

  /** Puts a `/live` client in the groups of its handshake view and watches its backlog. */
  addLiveClient(socket: LiveSocket): void {
    // a recovered session is back in the rooms of the view it had; the handshake's view holds now
    for (const room of [...socket.rooms]) if (room !== socket.id) void socket.leave(room)
    this.#enter(socket, socket.data)
    this.#watchBacklog(socket as AnySocket, 'live')
    socket.on('disconnect', () => this.#exit(socket))
  }

  /** Replaces a `/live` client's whole view (already validated and allowed); returns it as applied. */
  setView(socket: LiveSocket, view: AppliedView): AppliedView {
    this.#exit(socket)
    this.#enter(socket, view)
    const { filters, devices, readings } = socket.data
    return { filters, devices, readings }
  }

  /** Replaces a `/live` client's topic filters (already validated). */
  setFilters(socket: LiveSocket, filters: string[]): string[] {
    return this.setView(socket, { ...socket.data, filters }).filters
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

    for (const [room, group] of liveQueue.length > 0 ? this.#groups.filters : []) {
      const batch = liveQueue.filter((e) => group.keys.some((f) => topicMatches(f, e.topic)))
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
      const filters = (socket as LiveSocket).data.filters
      this.stats.dropped += namespace === 'chat' ? chatCount : filters.length > 0 ? (missed.get(roomOf('filters', filters)) ?? 0) : 0
    }
  }

  /**
   * Device changes and readings, already batched by the registry: to the clients of every device,
   * and to each group of some devices, what concerns them. In a cluster, `readings` are this node's
   * to send to every node's clients, and device changes go to this node's clients only.
   */
  sendDeviceUpdate(changed: DeviceState[], readings: Reading[]): void {
    if (changed.length > 0) {
      const local = this.#cluster ? this.#live.local : this.#live
      if (this.#cluster || this.#audience(DEVICES)) this.#emit(local, DEVICES, 'device', changed)
      for (const [room, some] of this.#select('devices', changed, (d) => d.id)) this.#emit(local, room, 'device', some)
    }
    if (readings.length > 0) {
      // in a cluster other nodes' clients may be in the room: socket.io's adapter cannot say here
      if (this.#cluster || this.#audience(READINGS)) this.#emit(this.#live, READINGS, 'readings', readings)
      for (const [room, some] of this.#select('readings', readings, (r) => r.device)) this.#emit(this.#live, room, 'readings', some)
    }
  }

  /** A device the registry no longer knows (in a cluster, every node's registry forgets it and tells its own clients). */
  sendForget(id: string): void {
    const target = this.#cluster ? this.#live.local : this.#live
    target.to([DEVICES, ...(this.#byDevice.devices.get(id) ?? [])]).emit('forget', id)
  }

  /** A group of another node's clients (or one every node knows): this node's messages and readings go to it too. */
  addGroup(group: LiveGroup): void {
    const keys = normalize(group.keys)
    const room = roomOf(group.kind, keys)
    const known = this.#groups[group.kind].get(room)
    // ours too, maybe: either way another node may have clients in it, so it stays
    if (known) known.shared = true
    else this.#add(group.kind, room, { keys, members: 0, emptySince: 0, shared: true })
  }

  close(): void {
    clearInterval(this.#lagTimer)
    this.#cancel?.()
    this.#cancel = null
    this.#queue = []
  }

  /** Whether anyone is in an every-device room, or was within the recovery window (to be sent what they missed). */
  #audience(room: string): boolean {
    return (this.#live.adapter.rooms.get(room)?.size ?? 0) > 0 || performance.now() - this.#emptySince.get(room)! <= this.#opts.recoveryWindowMs
  }

  #emit<E extends 'device' | 'readings'>(target: LiveNamespace | LiveNamespace['local'], room: string, event: E, data: Parameters<LiveServerToClientEvents[E]>[0]): void {
    ;(target.to(room).except(LAGGING).emit as (event: E, data: unknown) => boolean)(event, data)
    this.stats.broadcasts++
  }

  /** What of `items` each group of some devices follows, by room; one pass through the index. */
  #select<T>(kind: 'readings' | 'devices', items: readonly T[], deviceOf: (item: T) => string): Map<string, T[]> {
    const out = new Map<string, T[]>()
    const index = this.#byDevice[kind]
    if (index.size === 0) return out
    for (const item of items) {
      const rooms = index.get(deviceOf(item))
      if (!rooms) continue
      for (const room of rooms) {
        const list = out.get(room)
        if (list) list.push(item)
        else out.set(room, [item])
      }
    }
    return out
  }

  #enter(socket: LiveSocket, view: AppliedView): void {
    const filters = normalize(view.filters)
    const devices = normalizeSelection(view.devices)
    const readings = normalizeSelection(view.readings)
    Object.assign(socket.data, { filters, devices, readings })
    if (filters.length > 0) this.#join(socket, 'filters', filters)
    if (devices === true) void socket.join(DEVICES)
    else if (devices) this.#join(socket, 'devices', devices)
    if (readings === true) void socket.join(READINGS)
    else if (readings) this.#join(socket, 'readings', readings)
  }

  #exit(socket: LiveSocket): void {
    const { filters, devices, readings } = socket.data
    if (filters.length > 0) this.#leave(socket, 'filters', filters)
    for (const [kind, all, selection] of [
      ['devices', DEVICES, devices],
      ['readings', READINGS, readings],
    ] as const) {
      if (selection === true) {
        void socket.leave(all)
        if (!this.#live.adapter.rooms.get(all)?.size) this.#emptySince.set(all, performance.now())
      } else if (selection) this.#leave(socket, kind, selection)
    }
  }

  #join(socket: LiveSocket, kind: GroupKind, keys: string[]): void {
    const room = roomOf(kind, keys)
    const group = this.#groups[kind].get(room)
    if (group) group.members++
    else {
      this.#add(kind, room, { keys, members: 1, emptySince: 0 })
      if (kind !== 'devices') this.#cluster?.announceGroup({ kind, keys })
    }
    void socket.join(room)
  }

  #leave(socket: LiveSocket, kind: GroupKind, keys: string[]): void {
    const room = roomOf(kind, keys)
    void socket.leave(room)
    const group = this.#groups[kind].get(room)
    if (!group || --group.members > 0) return
    // kept for the recovery window: its client may come back and be sent what it missed
    if (this.#opts.recoveryWindowMs > 0 || group.shared) group.emptySince = performance.now()
    else this.#drop(kind, room)
  }

  #add(kind: GroupKind, room: string, group: Group): void {
    this.#groups[kind].set(room, group)
    if (kind === 'filters') return
    const index = this.#byDevice[kind]
    for (const id of group.keys) {
      const rooms = index.get(id)
      if (rooms) rooms.add(room)
      else index.set(id, new Set([room]))
    }
  }

  #drop(kind: GroupKind, room: string): void {
    const group = this.#groups[kind].get(room)
    if (!group) return
    this.#groups[kind].delete(room)
    if (kind === 'filters') return
    const index = this.#byDevice[kind]
    for (const id of group.keys) {
      const rooms = index.get(id)
      rooms?.delete(room)
      if (rooms?.size === 0) index.delete(id)
    }
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
    for (const kind of ['filters', 'readings', 'devices'] as const) {
      for (const [room, group] of this.#groups[kind]) {
        if (group.members === 0 && !group.shared && now - group.emptySince > this.#opts.recoveryWindowMs) this.#drop(kind, room)
      }
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

/** One group per distinct set of filters or device ids, whatever their order. */
function normalize(keys: readonly string[]): string[] {
  return [...new Set(keys)].sort()
}

/** Every device, none, or these: an empty list is none. */
function normalizeSelection(selection: DeviceSelection): DeviceSelection {
  if (typeof selection === 'boolean') return selection
  const ids = normalize(selection)
  return ids.length > 0 ? ids : false
}

const ROOM_PREFIX: Record<GroupKind, string> = { filters: 'filters:', readings: 'readings:', devices: 'device:' }

function roomOf(kind: GroupKind, keys: readonly string[]): string {
  return ROOM_PREFIX[kind] + keys.join('\u0000')
}
