import type { Logger } from 'pino'
import type { Envelope, Reading } from '../protocol/index.ts'
import type { OnLimit } from '../protocol/limits.ts'
import type { Saved } from './history.ts'
import { cutPayload, toJson } from './memory.ts'

/** One transaction's worth of the queue: taken out while it is written, and put back if that fails. */
export interface QueuedBatch {
  ops: Op[]
  /** Device snapshots (JSON, by id) and the formats state saved so far: written with these ops. */
  devices: ReadonlyMap<string, string>
  formats: string | undefined
  items: number
  bytes: number
}

/**
 * A store's bounded write queue, shared by the SQLite and PostgreSQL stores: readings and logged
 * messages within `maxQueue` items and `maxQueueBytes` bytes, forgets in order among them, and the
 * newest device snapshots and formats state. While writing works, what does not fit is the
 * newest, and is dropped; while it fails (`failing()`), the oldest make room, since the newest
 * are worth more once it works again. Every drop is counted and reported as `store_queue`.
 */
export class WriteQueue {
  #ops: Op[] = []
  #queued = 0
  #queuedBytes = 0
  #devices = new Map<string, string>()
  #formats: string | undefined
  #dropped = 0
  #closed = false
  readonly #bounds: QueueBounds
  readonly #onLimit: OnLimit
  readonly #failing: () => boolean
  readonly #logger: Logger | undefined
  /** Device ids and snapshots as the database takes them: PostgreSQL has no NUL in text or json, SQLite takes them as they are. */
  readonly #key: (id: string) => string
  readonly #json: (json: string) => string

  constructor(
    opts: QueueBounds & { onLimit: OnLimit; failing: () => boolean; logger?: Logger | undefined; key?: (id: string) => string; json?: (json: string) => string },
  ) {
    this.#bounds = { maxQueue: opts.maxQueue, maxQueueBytes: opts.maxQueueBytes }
    this.#onLimit = opts.onLimit
    this.#failing = opts.failing
    this.#logger = opts.logger
    this.#key = opts.key ?? ((id) => id)
    this.#json = opts.json ?? ((json) => json)
  }

  /** Readings and messages queued, their bytes, and how many were dropped since start. */
  get depth(): number {
    return this.#queued
  }
  get bytes(): number {
    return this.#queuedBytes
  }
  get dropped(): number {
    return this.#dropped
  }

  append(batch: readonly Reading[]): void {
    if (batch.length === 0) return
    this.#enqueue({ kind: 'readings', batch }, batch.length, 0)
  }

  log(batch: readonly Envelope[]): void {
    if (batch.length === 0) return
    const { rows, bytes } = queuedMessages(batch)
    this.#enqueue({ kind: 'log', batch: rows }, rows.length, bytes)
  }

  saveDevices(devices: readonly Saved[]): void {
    if (this.#closed) return
    // serialised now: what is written is the snapshot as it was when saved
    for (const d of devices) {
      const json = toJson(d.snapshot, this.#logger)
      if (json !== undefined) this.#devices.set(this.#key(d.id), this.#json(json))
    }
  }

  saveFormats(state: unknown): void {
    if (this.#closed) return
    this.#formats = toJson(state, this.#logger) ?? this.#formats
  }

  forget(device: string): void {
    if (this.#closed) return
    this.#devices.delete(this.#key(device))
    this.#ops.push({ kind: 'forget', device: this.#key(device) })
  }

  pending(): boolean {
    return this.#ops.length > 0 || this.#devices.size > 0 || this.#formats !== undefined
  }

  /** From now on what comes is dropped, counted as `closed`. */
  close(): void {
    this.#closed = true
  }

  /**
   * The next transaction: up to `max` readings and messages with the forgets among them, and every
   * snapshot saved so far. Its ops leave the queue (trimming cannot touch them) but still count in
   * its depth until `written` or `failed`.
   */
  take(max: number): QueuedBatch {
    const { count, items, bytes } = takeOps(this.#ops, max)
    return { ops: this.#ops.splice(0, count), devices: new Map(this.#devices), formats: this.#formats, items, bytes }
  }

  /** The batch is in the database; snapshots saved again while it was written wait for the next. */
  written(batch: QueuedBatch): void {
    this.#queued -= batch.items
    this.#queuedBytes -= batch.bytes
    for (const [id, json] of batch.devices) if (this.#devices.get(id) === json) this.#devices.delete(id)
    if (this.#formats === batch.formats) this.#formats = undefined
  }

  /** The batch could not be written: back at the head of the queue, the oldest trimmed to the bounds. */
  failed(batch: QueuedBatch): void {
    this.#ops.unshift(...batch.ops)
    const dropped = this.#trimOldest()
    if (dropped > 0) this.#drop(dropped, 'write_failing')
  }

  #enqueue(op: Op & { kind: 'readings' | 'log' }, items: number, bytes: number): void {
    if (this.#closed) {
      this.#drop(items, 'closed')
      return
    }
    if (!this.#failing()) {
      // keeping up is the normal case: what does not fit is the newest, and is dropped
      const fit = admit(op, items, bytes, { queued: this.#queued, queuedBytes: this.#queuedBytes }, this.#bounds)
      if (fit.take < items) this.#drop(items - fit.take, 'queue_full')
      if (!fit.op) return
      this.#ops.push(fit.op)
      this.#queued += fit.take
      this.#queuedBytes += fit.bytes
      return
    }
    // writing fails: the newest are worth more once it works again, so the oldest make room
    this.#ops.push(op)
    this.#queued += items
    this.#queuedBytes += bytes
    const dropped = this.#trimOldest()
    if (dropped > 0) this.#drop(dropped, 'write_failing')
  }

  #drop(n: number, reason: 'queue_full' | 'write_failing' | 'closed'): void {
    this.#dropped += n
    this.#onLimit('store_queue', { dropped: n, reason, queueDepth: this.#queued })
  }

  /** Drops the oldest queued readings and messages (not those of a transaction under way) until within bounds; returns how many. */
  #trimOldest(): number {
    const counts = { queued: this.#queued, queuedBytes: this.#queuedBytes }
    const dropped = trimOldest(this.#ops, counts, this.#bounds)
    this.#queued = counts.queued
    this.#queuedBytes = counts.queuedBytes
    return dropped
  }
}

/** A message as it waits to be written: payload already cut, its bytes counted. */
export interface QueuedMessage {
  ts: number
  topic: string
  payload: string
  base64: number
  source: number
  clientId: string | null
  qos: number
  retain: number
  /** MQTT 5 properties as JSON, or null. */
  properties: string | null
  bytes: number
}
/** One entry of a store's write queue. */
export type Op = { kind: 'readings'; batch: readonly Reading[] } | { kind: 'log'; batch: QueuedMessage[] } | { kind: 'forget'; device: string }
/** The bounds of a write queue: items, and bytes of logged messages. */
interface QueueBounds {
  maxQueue: number
  maxQueueBytes: number
}
/** What a write queue holds: items, and bytes of logged messages. */
interface QueueCounts {
  queued: number
  queuedBytes: number
}

/** A batch of envelopes as the log's queue keeps them: payloads cut, each one's bytes counted. */
function queuedMessages(batch: readonly Envelope[]): { rows: QueuedMessage[]; bytes: number } {
  const rows: QueuedMessage[] = []
  let bytes = 0
  for (const e of batch) {
    const payload = cutPayload(e.payload, e.encoding)
    const clientId = e.clientId ?? null
    const properties = e.properties ? JSON.stringify(e.properties) : null
    const size = e.topic.length + payload.length + (clientId?.length ?? 0) + (properties?.length ?? 0)
    bytes += size
    rows.push({
      ts: Math.trunc(e.ts),
      topic: e.topic,
      payload,
      base64: e.encoding === 'base64' ? 1 : 0,
      source: e.source === 'socket' ? 1 : 0,
      clientId,
      qos: e.qos,
      retain: e.retain ? 1 : 0,
      properties,
      bytes: size,
    })
  }
  return { rows, bytes }
}


/**
 * How much of a batch of `items` (and `bytes`) a queue holding `counts` takes while writing works:
 * what does not fit is the newest, left out. `op` is what to queue (null when nothing fits), `take`
 * how many items it holds (at most `items`; less than zero when the queue is already over), `bytes` their bytes.
 */
function admit(op: Op & { kind: 'readings' | 'log' }, items: number, bytes: number, counts: QueueCounts, bounds: QueueBounds): { op: Op | null; take: number; bytes: number } {
  let take = Math.min(items, bounds.maxQueue - counts.queued)
  if (op.kind === 'log') {
    let b = 0
    for (let i = 0; i < take; i++) {
      if (counts.queuedBytes + b + op.batch[i]!.bytes > bounds.maxQueueBytes) {
        take = i
        break
      }
      b += op.batch[i]!.bytes
    }
    bytes = b
  }
  if (take <= 0) return { op: null, take, bytes }
  if (take < items) op = op.kind === 'readings' ? { kind: 'readings', batch: op.batch.slice(0, take) } : { kind: 'log', batch: op.batch.slice(0, take) }
  return { op, take, bytes }
}

/** Drops the oldest queued readings and messages of `ops` until `counts` are within `bounds`, updating both; returns how many. */
function trimOldest(ops: Op[], counts: QueueCounts, bounds: QueueBounds): number {
  const { maxQueue, maxQueueBytes } = bounds
  let dropped = 0
  let i = 0
  while ((counts.queued > maxQueue || counts.queuedBytes > maxQueueBytes) && i < ops.length) {
    const op = ops[i]!
    if (op.kind === 'readings' && counts.queued > maxQueue) {
      const n = Math.min(op.batch.length, counts.queued - maxQueue)
      ops[i] = { kind: 'readings', batch: op.batch.slice(n) }
      counts.queued -= n
      dropped += n
    } else if (op.kind === 'log') {
      let n = 0
      let bytes = 0
      while (n < op.batch.length && (counts.queued - n > maxQueue || counts.queuedBytes - bytes > maxQueueBytes)) bytes += op.batch[n++]!.bytes
      ops[i] = { kind: 'log', batch: op.batch.slice(n) }
      counts.queued -= n
      counts.queuedBytes -= bytes
      dropped += n
    }
    const left = ops[i]!
    if (left.kind !== 'forget' && left.batch.length === 0) ops.splice(i, 1)
    else i++
  }
  return dropped
}

/**
 * The first `count` ops of the queue make one transaction of at most `max` items (`bytes` of them
 * logged messages), and the forgets right after; the op that crosses `max` is split in place.
 */
function takeOps(ops: Op[], max: number): { count: number; items: number; bytes: number } {
  let count = 0
  let items = 0
  let bytes = 0
  for (; count < ops.length && items < max; count++) {
    const op = ops[count]!
    if (op.kind === 'forget') continue
    const room = max - items
    if (op.batch.length > room) {
      if (op.kind === 'readings') ops.splice(count, 1, { kind: 'readings', batch: op.batch.slice(0, room) }, { kind: 'readings', batch: op.batch.slice(room) })
      else ops.splice(count, 1, { kind: 'log', batch: op.batch.slice(0, room) }, { kind: 'log', batch: op.batch.slice(room) })
    }
    const taken = ops[count]!
    if (taken.kind === 'readings') items += taken.batch.length
    else if (taken.kind === 'log') {
      items += taken.batch.length
      for (const m of taken.batch) bytes += m.bytes
    }
  }
  // forgets right after the last batch taken belong to this transaction too
  while (count < ops.length && ops[count]!.kind === 'forget') count++
  return { count, items, bytes }
}

