import { onNextFrame } from './frame.ts'
import { getJson, nextLink, withQuery } from './http.ts'
import { filterError, topicMatches, type Envelope, type LoggedEnvelope } from './protocol.ts'

/** One line of the log. */
export interface LogRow extends Envelope {
  /** Unique and stable across trimming: the list's key. Live rows count up from 1, older ones down from 0. */
  seq: number
  /** The server log's id, for rows that came from it. */
  id?: number
  /** Came from the server's log ("Load older"), not live. */
  older?: true
}

/** Live rows kept; the oldest go first. */
export const LOG_CAPACITY = 10_000
/** Older rows kept, loaded from the server a page at a time. */
export const OLDER_CAPACITY = 10_000
/** Messages per "Load older". */
const OLDER_PAGE = 200

/**
 * The live message log: a bounded list of everything received, and the filtered view the page
 * shows. Rows are plain objects; `version` ticks at most once per frame when the view changed.
 */
class MessageLog {
  /** MQTT filter typed by the user; empty shows everything. */
  filter = $state('')
  /** Why the filter is not a valid MQTT filter, or null. */
  filterProblem = $state<string | null>(null)
  paused = $state(false)
  /** Messages received while paused, not yet in the view. */
  missed = $state(0)
  /** Rows in the log (filtered or not). */
  size = $state(0)
  version = $state(0)
  /** Loading older messages from the server, what that said, and whether it has more. */
  older = $state({ loading: false, problem: null as string | null, more: true, count: 0 })

  /** Live rows, oldest first. */
  #rows: LogRow[] = []
  /**
   * Rows from the server's log, oldest first, all older than every live row and matching the
   * filter they were loaded for; they go when it changes, so the view is never a mix.
   */
  #older: LogRow[] = []
  /** Where the next older page starts: the last message of the previous one. */
  #cursor: { ts: number; id: number } | null = null
  #view: LogRow[] = []
  #incoming: Envelope[] = []
  #seq = 0
  #olderSeq = 0
  /** Changes when the older rows go (filter changed, log cleared or trimmed): a page on its way is stale. */
  #epoch = 0
  #active: string | null = null

  /** The rows that pass the filter, oldest first. Read `version` to track changes. */
  get view(): readonly LogRow[] {
    return this.#view
  }

  push(batch: readonly Envelope[]): void {
    for (const e of batch) this.#incoming.push(e)
    // a hidden tab gets no frames: keep only what the log could hold anyway
    if (this.#incoming.length > LOG_CAPACITY) this.#incoming.splice(0, this.#incoming.length - LOG_CAPACITY)
    onNextFrame(this.#flush)
  }

  setFilter(text: string): void {
    this.filter = text
    const trimmed = text.trim()
    this.filterProblem = trimmed === '' ? null : filterError(trimmed)
    const active = trimmed === '' || this.filterProblem ? null : trimmed
    if (active !== this.#active) this.#dropOlder()
    this.#active = active
    this.#rebuild()
  }

  matches(topic: string): boolean {
    return this.#active === null || topicMatches(this.#active, topic)
  }

  pause(): void {
    this.paused = true
  }

  resume(): void {
    this.paused = false
    this.missed = 0
    this.#rebuild()
  }

  clear(): void {
    this.#rows = []
    this.#incoming = []
    this.missed = 0
    this.#dropOlder()
    this.#rebuild()
  }

  /**
   * The page of the server's log before the oldest row shown, for the current filter, below the
   * live rows. A message both live and in the page is shown once: the server's id says which
   * when the row has one; otherwise live rows are whole from the oldest on, so only messages of
   * that same millisecond can be in both, and they are matched by content.
   */
  async loadOlder(): Promise<void> {
    if (this.older.loading || !this.older.more || this.#older.length >= OLDER_CAPACITY) return
    const filter = this.#active
    const boundary = this.#rows[0]
    const epoch = this.#epoch
    const cursor = this.#cursor
    const url = withQuery('/api/messages', {
      topic: filter ?? undefined,
      // `before` is exclusive: one past the oldest live row, to see the rest of its millisecond
      before: cursor ? cursor.ts : boundary ? boundary.ts + 1 : undefined,
      beforeId: cursor?.id,
      limit: OLDER_PAGE,
    })
    this.older.loading = true
    this.older.problem = null
    try {
      const { body, res } = await getJson<LoggedEnvelope[]>(url)
      // the filter changed, or the log was cleared or trimmed, while the page was on its way
      if (epoch !== this.#epoch) return
      const last = body.at(-1)
      if (last) this.#cursor = { ts: last.ts, id: last.id }
      this.older.more = nextLink(res) !== null && body.length > 0
      const fresh = this.#withoutLive(body)
      const rows: LogRow[] = fresh.map((e) => ({ ...e, seq: this.#olderSeq--, older: true as const })).reverse()
      this.#older = rows.concat(this.#older)
      if (this.#older.length >= OLDER_CAPACITY) {
        this.#older.splice(0, this.#older.length - OLDER_CAPACITY)
        this.older.more = false
      }
      this.older.count = this.#older.length
      this.#rebuild()
    } catch (err) {
      this.older.problem = err instanceof Error ? err.message : String(err)
    } finally {
      this.older.loading = false
    }
  }

  /** A page of the server's log (newest first) less what the live rows already have. */
  #withoutLive(page: readonly LoggedEnvelope[]): LoggedEnvelope[] {
    const boundary = this.#rows[0]?.ts ?? Infinity
    // eslint-disable-next-line svelte/prefer-svelte-reactivity -- local to this call
    const ids = new Set<number>()
    const sameMs: LogRow[] = []
    for (const row of this.#rows) {
      if (row.id !== undefined) ids.add(row.id)
      if (row.ts === boundary) sameMs.push(row)
    }
    for (const row of this.#older) if (row.id !== undefined) ids.add(row.id)
    return page.filter((e) => {
      if (ids.has(e.id)) return false
      // newer than the oldest live row: the live rows have it
      if (e.ts > boundary) return false
      if (e.ts < boundary) return true
      const twin = sameMs.findIndex((row) => sameMessage(row, e))
      if (twin === -1) return true
      sameMs.splice(twin, 1)
      return false
    })
  }

  #dropOlder(): void {
    this.#epoch++
    this.#older = []
    this.#cursor = null
    this.older.more = true
    this.older.count = 0
    this.older.problem = null
  }

  readonly #flush = (): void => {
    const incoming = this.#incoming
    if (incoming.length === 0) return
    this.#incoming = []
    const fresh: LogRow[] = incoming.map((e) => ({ ...e, seq: ++this.#seq }))
    for (const row of fresh) this.#rows.push(row)
    let trimmed = false
    if (this.#rows.length > LOG_CAPACITY * 1.1) {
      this.#rows.splice(0, this.#rows.length - LOG_CAPACITY)
      trimmed = true
    }
    // the older rows no longer meet the live ones: showing them would hide the hole between
    if (trimmed) this.#dropOlder()
    this.size = Math.min(this.#rows.length, LOG_CAPACITY) + this.#older.length
    if (this.paused) {
      this.missed += fresh.length
      return
    }
    if (trimmed) return this.#rebuild()
    for (const row of fresh) if (this.matches(row.topic)) this.#view.push(row)
    // the view is the older rows, then the live ones: the oldest live ones go
    const excess = this.#view.length - this.#older.length - LOG_CAPACITY
    if (excess > 0) this.#view.splice(this.#older.length, excess)
    this.version++
  }

  #rebuild(): void {
    const start = Math.max(0, this.#rows.length - LOG_CAPACITY)
    // the older rows match the filter they were loaded for, which is the current one
    const view: LogRow[] = this.#older.slice()
    for (let i = start; i < this.#rows.length; i++) {
      const row = this.#rows[i]!
      if (this.matches(row.topic)) view.push(row)
    }
    this.#view = view
    this.size = Math.min(this.#rows.length, LOG_CAPACITY) + this.#older.length
    this.version++
  }
}

/** The same message, as the live socket and the server's log carry it (the log cuts long payloads). */
function sameMessage(row: LogRow, e: LoggedEnvelope): boolean {
  return (
    row.topic === e.topic &&
    row.qos === e.qos &&
    row.retain === e.retain &&
    row.source === e.source &&
    (row.clientId ?? '') === (e.clientId ?? '') &&
    row.encoding === e.encoding &&
    row.payload.slice(0, 256) === e.payload.slice(0, 256)
  )
}

export const messageLog = new MessageLog()
