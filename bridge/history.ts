/** A fixed-size ring of (time, value) points: one per metric, so memory stays flat however long it runs. */
export class Series {
  readonly #ts: Float64Array
  readonly #values: Float64Array
  #next = 0
  #length = 0

  constructor(readonly capacity: number) {
    this.#ts = new Float64Array(capacity)
    this.#values = new Float64Array(capacity)
  }

  push(ts: number, value: number): void {
    this.#ts[this.#next] = ts
    this.#values[this.#next] = value
    this.#next = (this.#next + 1) % this.capacity
    if (this.#length < this.capacity) this.#length++
  }

  get length(): number {
    return this.#length
  }

  /** Points at or after `since`, oldest first. */
  since(since = -Infinity): [number, number][] {
    const out: [number, number][] = []
    const first = (this.#next - this.#length + this.capacity) % this.capacity
    for (let i = 0; i < this.#length; i++) {
      const at = (first + i) % this.capacity
      if (this.#ts[at]! >= since) out.push([this.#ts[at]!, this.#values[at]!])
    }
    return out
  }
}
