import { onNextFrame } from './frame.ts'
import { fetchAll } from './pages.ts'
import type { Envelope, TopicSummary } from './protocol.ts'
import type { Point } from './series.svelte.ts'

/** Numeric values remembered per topic, for the leaf chart. */
const VALUES_PER_TOPIC = 300

/** One level of the topic tree. A node is also a topic when a message was published on it. */
export interface TopicNode {
  name: string
  /** The full topic of this level. */
  path: string
  depth: number
  children: Map<string, TopicNode>
  /** Messages on this exact topic (0 for a level nobody published on). */
  count: number
  /** Messages on this topic and below. */
  total: number
  payload: string | null
  encoding?: 'base64'
  ts: number
  retain: boolean
  /** Recent numeric payloads, oldest first: the leaf's chart. */
  values: Point[]
}

/** A row of the flattened, expanded tree, as the page renders it. */
export interface TopicRow {
  path: string
  name: string
  depth: number
  hasChildren: boolean
  expanded: boolean
  /** Topics below this level. */
  descendants: number
  count: number
  total: number
  payload: string | null
  encoding?: 'base64'
  ts: number
  retain: boolean
  numeric: boolean
}

const newNode = (name: string, path: string, depth: number): TopicNode => ({
  name,
  path,
  depth,
  children: new Map(),
  count: 0,
  total: 0,
  payload: null,
  ts: 0,
  retain: false,
  values: [],
})

/** Every topic seen, seeded from `GET /api/topics` and kept live from messages. */
class TopicTree {
  /** Ticks at most once per frame when a topic changed. */
  version = $state(0)
  /** Distinct topics that carried a message. */
  topicCount = $state(0)
  /** Paths of expanded levels. */
  readonly expanded = new Set<string>()
  readonly root: TopicNode = newNode('', '', -1)
  #incoming: Envelope[] = []
  #seeded = false

  push(batch: readonly Envelope[]): void {
    for (const e of batch) this.#incoming.push(e)
    onNextFrame(this.#flush)
  }

  /** `again`: the tree missed messages (a page that showed none was open): counts and last payloads come anew. */
  async seed(again = false): Promise<void> {
    if (this.#seeded && !again) return
    try {
      const list = await fetchAll<TopicSummary>('/api/topics')
      if (!list) return
      for (const summary of list) this.#seedOne(summary)
      this.#seeded = true
      this.version++
    } catch {
      // the live messages fill the tree anyway
    }
  }

  find(path: string): TopicNode | undefined {
    let node: TopicNode | undefined = this.root
    for (const level of path.split('/')) {
      node = node.children.get(level)
      if (!node) return undefined
    }
    return node
  }

  toggle(path: string, open = !this.expanded.has(path)): void {
    if (open) this.expanded.add(path)
    else this.expanded.delete(path)
    this.version++
  }

  expandAll(open: boolean): void {
    this.expanded.clear()
    if (open) {
      const walk = (node: TopicNode) => {
        for (const child of node.children.values()) {
          if (child.children.size > 0) {
            this.expanded.add(child.path)
            walk(child)
          }
        }
      }
      walk(this.root)
    }
    this.version++
  }

  /** The visible rows: top-level topics and the children of expanded levels, sorted by name. */
  rows(query = ''): TopicRow[] {
    const rows: TopicRow[] = []
    const needle = query.trim().toLowerCase()
    const visit = (node: TopicNode): void => {
      for (const child of sortedChildren(node)) {
        const matches = needle === '' || child.path.toLowerCase().includes(needle)
        const below = needle !== '' && !matches ? hasMatchBelow(child, needle) : false
        if (!matches && !below) continue
        const expanded = child.children.size > 0 && (this.expanded.has(child.path) || below)
        rows.push({
          path: child.path,
          name: child.name,
          depth: child.depth,
          hasChildren: child.children.size > 0,
          expanded,
          descendants: countTopics(child) - (child.count > 0 ? 1 : 0),
          count: child.count,
          total: child.total,
          payload: child.payload,
          ...(child.encoding && { encoding: child.encoding }),
          ts: child.ts,
          retain: child.retain,
          numeric: child.values.length > 0 && isNumeric(child.payload),
        })
        if (expanded) visit(child)
      }
    }
    visit(this.root)
    return rows
  }

  #node(topic: string): { node: TopicNode; created: boolean } {
    let node = this.root
    let created = false
    const levels = topic.split('/')
    for (let i = 0; i < levels.length; i++) {
      const name = levels[i]!
      let child = node.children.get(name)
      if (!child) {
        child = newNode(name, levels.slice(0, i + 1).join('/'), i)
        node.children.set(name, child)
        created = true
      }
      node = child
    }
    return { node, created }
  }

  #seedOne(summary: TopicSummary): void {
    const { node } = this.#node(summary.topic)
    if (node.count === 0) this.topicCount++
    const extra = Math.max(0, summary.count - node.count)
    node.count += extra
    this.#addTotal(summary.topic, extra)
    if (summary.ts >= node.ts) {
      node.payload = summary.payload
      node.ts = summary.ts
      node.retain = summary.retain
      if (summary.encoding) node.encoding = summary.encoding
      else delete node.encoding
      const n = summary.encoding ? NaN : toNumber(summary.payload)
      if (Number.isFinite(n) && node.values.length === 0) node.values.push({ x: summary.ts, y: n })
    }
  }

  #addTotal(topic: string, n: number): void {
    if (n === 0) return
    let node = this.root
    node.total += n
    for (const level of topic.split('/')) {
      node = node.children.get(level)!
      node.total += n
    }
  }

  readonly #flush = (): void => {
    const incoming = this.#incoming
    if (incoming.length === 0) return
    this.#incoming = []
    for (const e of incoming) {
      const { node } = this.#node(e.topic)
      if (node.count === 0) this.topicCount++
      node.count++
      this.#addTotal(e.topic, 1)
      node.payload = e.payload
      node.ts = e.ts
      node.retain = e.retain
      if (e.encoding) node.encoding = e.encoding
      else delete node.encoding
      const n = e.encoding ? NaN : toNumber(e.payload)
      if (Number.isFinite(n)) {
        node.values.push({ x: e.ts, y: n })
        if (node.values.length > VALUES_PER_TOPIC * 1.25) node.values.splice(0, node.values.length - VALUES_PER_TOPIC)
      } else if (node.values.length > 0) {
        node.values = []
      }
    }
    this.version++
  }
}

function sortedChildren(node: TopicNode): TopicNode[] {
  return [...node.children.values()].sort((a, b) => a.name.localeCompare(b.name, undefined, { numeric: true }))
}

function hasMatchBelow(node: TopicNode, needle: string): boolean {
  for (const child of node.children.values()) {
    if (child.path.toLowerCase().includes(needle) || hasMatchBelow(child, needle)) return true
  }
  return false
}

function countTopics(node: TopicNode): number {
  let n = node.count > 0 ? 1 : 0
  for (const child of node.children.values()) n += countTopics(child)
  return n
}

/** A payload that is one plain number (what a leaf chart can plot). */
function toNumber(payload: string): number {
  const text = payload.trim()
  if (text === '' || text.length > 64) return NaN
  return Number(text)
}

export function isNumeric(payload: string | null): boolean {
  return payload !== null && Number.isFinite(toNumber(payload))
}

export const topicTree = new TopicTree()
