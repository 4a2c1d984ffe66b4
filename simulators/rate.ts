/**
 * Messages per second over a sliding window of about one second, kept in 100 ms buckets so the
 * cost does not grow with the message rate. The clock is passed in so tests need no timers.
 */
export class RateMeter {
  readonly #bucketMs: number
  readonly #counts: number[]
  /** The absolute bucket number (time / bucketMs) each slot currently counts for. */
  readonly #slots: number[]
  readonly #createdAt: number

  constructor(windowMs = 1000, buckets = 10, now = Date.now()) {
    this.#bucketMs = windowMs / buckets
    this.#counts = new Array<number>(buckets).fill(0)
    this.#slots = new Array<number>(buckets).fill(-Infinity)
    this.#createdAt = now
  }

  record(count = 1, now = Date.now()): void {
    const bucket = Math.floor(now / this.#bucketMs)
    const i = bucket % this.#counts.length
    if (this.#slots[i] !== bucket) {
      this.#slots[i] = bucket
      this.#counts[i] = 0
    }
    this.#counts[i]! += count
  }

  perSecond(now = Date.now()): number {
    const current = Math.floor(now / this.#bucketMs)
    const size = this.#counts.length
    let sum = 0
    for (let i = 0; i < size; i++) {
      const slot = this.#slots[i]!
      if (slot > current - size && slot <= current) sum += this.#counts[i]!
    }
    // The window is the full buckets before this one plus the part of this one gone so far,
    // or less just after creation so the first second does not read low (but at least one
    // bucket, so the first message does not read as a spike).
    const full = (size - 1) * this.#bucketMs + (now - current * this.#bucketMs)
    const span = Math.min(full, Math.max(now - this.#createdAt, this.#bucketMs))
    return (sum * 1000) / span
  }
}
