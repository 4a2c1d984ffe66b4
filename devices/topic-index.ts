import type { Envelope, TopicSummary } from '../protocol/index.ts'
import type { OnLimit } from '../protocol/limits.ts'

/** Characters of the last payload kept per topic. */
const PAYLOAD_PREVIEW = 256

export interface TopicIndexOptions {
  /** Topics remembered. */
  maxTopics: number
  /** Bytes of topic names and payload previews remembered. */
  maxBytes: number
  onLimit?: OnLimit
}

/** Every topic seen since start, with its last payload cut short, for the topic tree; bounded in count and bytes. */
export class TopicIndex {
  readonly #opts: TopicIndexOptions
  readonly #topics = new Map<string, TopicSummary>()
  #bytes = 0

  constructor(opts: TopicIndexOptions) {
    this.#opts = opts
  }

  get size(): number {
    return this.#topics.size
  }

  get bytes(): number {
    return this.#bytes
  }

  remember(envelope: Envelope): void {
    const payload = envelope.payload.length > PAYLOAD_PREVIEW ? envelope.payload.slice(0, PAYLOAD_PREVIEW) : envelope.payload
    const summary = this.#topics.get(envelope.topic)
    if (summary) {
      this.#bytes += payload.length - summary.payload.length
      summary.count++
      summary.payload = payload
      summary.ts = envelope.ts
      summary.retain = envelope.retain
      if (envelope.encoding) summary.encoding = envelope.encoding
      else delete summary.encoding
      return
    }
    const bytes = envelope.topic.length + payload.length
    if (this.#topics.size >= this.#opts.maxTopics || this.#bytes + bytes > this.#opts.maxBytes) {
      this.#opts.onLimit?.('topics', { topic: envelope.topic.slice(0, 256) })
      return
    }
    this.#bytes += bytes
    this.#topics.set(envelope.topic, {
      topic: envelope.topic,
      payload,
      ...(envelope.encoding && { encoding: envelope.encoding }),
      count: 1,
      ts: envelope.ts,
      retain: envelope.retain,
    })
  }

  /** Summaries sorted by topic, from just after `cursor`. */
  page(limit: number, cursor?: string): TopicSummary[] {
    return pageOf([...this.#topics.values()], (t) => t.topic, limit, cursor)
  }
}

/**
 * One page of a listing sorted by key: the items after `cursor` (a key of the
 * previous page's last item), at most `limit` of them. Keys are unique, so a
 * page never repeats or skips an item that existed across both requests.
 */
export function pageOf<T>(items: T[], key: (item: T) => string, limit: number, cursor?: string): T[] {
  items.sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0))
  let lo = 0
  if (cursor !== undefined) {
    let hi = items.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (key(items[mid]!) <= cursor) lo = mid + 1
      else hi = mid
    }
  }
  return items.slice(lo, lo + limit)
}
