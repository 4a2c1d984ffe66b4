/** Failures forgiven before the first delay. */
const FREE_FAILURES = 3
const MAX_DELAY_MS = 60_000

/**
 * Login failures, per key (an address, a user name): after three, each further failure doubles
 * how long that key is refused, up to a minute; a success forgets it. Bounded: the least
 * recently failed keys are forgotten first, so a flood of names cannot grow it.
 */
export class Backoff {
  readonly #entries = new Map<string, { failures: number; until: number }>()
  readonly #max: number

  constructor(maxKeys = 10_000) {
    this.#max = maxKeys
  }

  /** Milliseconds this key must still wait; 0 when it may try. */
  wait(key: string, now = Date.now()): number {
    const entry = this.#entries.get(key)
    return entry ? Math.max(0, entry.until - now) : 0
  }

  fail(key: string, now = Date.now()): void {
    const entry = this.#entries.get(key) ?? { failures: 0, until: 0 }
    this.#entries.delete(key)
    entry.failures++
    if (entry.failures > FREE_FAILURES) entry.until = now + Math.min(MAX_DELAY_MS, 1000 * 2 ** (entry.failures - FREE_FAILURES - 1))
    this.#entries.set(key, entry)
    if (this.#entries.size > this.#max) this.#entries.delete(this.#entries.keys().next().value!)
  }

  succeed(key: string): void {
    this.#entries.delete(key)
  }
}
