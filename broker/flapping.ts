export interface FlappingOptions {
  /** Connects of one client id within `windowMs` that make it flap. */
  maxConnects: number
  windowMs: number
  /** How long a flapping client id is refused. */
  banMs: number
  /** Client ids tracked at once; the least recently seen are forgotten first. */
  maxTracked: number
}

/**
 * Flapping detection as EMQX does it: a client id that connects more than
 * `maxConnects` times in `windowMs` is refused for `banMs`. Two devices that
 * share one id take the session from each other on every connect; without this
 * they loop at full speed forever, and each takeover looks like a fresh device.
 */
export class FlappingDetector {
  readonly #opts: FlappingOptions
  /** Per client id: start of the current window, connects in it, and the end of a ban. */
  readonly #seen = new Map<string, { since: number; connects: number; bannedUntil: number }>()

  constructor(opts: FlappingOptions) {
    this.#opts = opts
  }

  /** Records a connect; returns how long the id stays refused, in ms, or 0 when it may connect. */
  connect(clientId: string, now = Date.now()): number {
    let entry = this.#seen.get(clientId)
    if (entry) this.#seen.delete(clientId) // re-inserted below: the Map's order is the LRU order
    else entry = { since: now, connects: 0, bannedUntil: 0 }
    this.#seen.set(clientId, entry)
    if (this.#seen.size > this.#opts.maxTracked) this.#seen.delete(this.#seen.keys().next().value!)

    if (entry.bannedUntil > now) return entry.bannedUntil - now
    if (now - entry.since > this.#opts.windowMs) {
      entry.since = now
      entry.connects = 0
    }
    if (++entry.connects <= this.#opts.maxConnects) return 0
    entry.bannedUntil = now + this.#opts.banMs
    entry.since = entry.bannedUntil
    entry.connects = 0
    return this.#opts.banMs
  }
}
