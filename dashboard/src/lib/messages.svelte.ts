import { onNextFrame } from './frame.ts'
import { filterError, topicMatches, type Envelope } from './protocol.ts'

/** One line of the log. */
export interface LogRow extends Envelope {
  /** Increasing id, stable across trimming: the list's key. */
  seq: number
}

/** Rows kept; the oldest go first. */
export const LOG_CAPACITY = 10_000

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

  #rows: LogRow[] = []
  #view: LogRow[] = []
  #incoming: Envelope[] = []
  #seq = 0
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
    this.#active = trimmed === '' || this.filterProblem ? null : trimmed
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
    this.size = 0
    this.#rebuild()
  }

  readonly #flush = (): void => {
    const incoming = this.#incoming
    if (incoming.length === 0) return
    this.#incoming = []
    const fresh: LogRow[] = incoming.map((e) => ({ ...e, seq: ++this.#seq }))
    for (const row of fresh) this.#rows.push(row)
    if (this.#rows.length > LOG_CAPACITY * 1.1) this.#rows.splice(0, this.#rows.length - LOG_CAPACITY)
    this.size = Math.min(this.#rows.length, LOG_CAPACITY)
    if (this.paused) {
      this.missed += fresh.length
      return
    }
    for (const row of fresh) if (this.matches(row.topic)) this.#view.push(row)
    if (this.#view.length > LOG_CAPACITY) this.#view.splice(0, this.#view.length - LOG_CAPACITY)
    this.version++
  }

  #rebuild(): void {
    const start = Math.max(0, this.#rows.length - LOG_CAPACITY)
    const view: LogRow[] = []
    for (let i = start; i < this.#rows.length; i++) {
      const row = this.#rows[i]!
      if (this.matches(row.topic)) view.push(row)
    }
    this.#view = view
    this.version++
  }
}

export const messageLog = new MessageLog()
