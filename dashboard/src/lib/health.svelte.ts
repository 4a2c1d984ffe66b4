import type { HealthReport } from './protocol.ts'
import type { Point } from './series.svelte.ts'

const POLL_MS = 1000
/** Rate points kept: ten minutes at one a second. */
const KEEP = 600

/** The broker's numbers, polled every second while someone looks at them. */
class BrokerHealth {
  latest = $state<HealthReport | null>(null)
  /** Messages per second over the last poll. */
  rateIn = $state(0)
  rateOut = $state(0)
  error = $state<string | null>(null)
  /** Ticks when the rate series below changed. */
  version = $state(0)
  readonly inbound: Point[] = []
  readonly outbound: Point[] = []
  #previous: { at: number; report: HealthReport } | null = null

  /** Polls until the returned function is called. */
  start(): () => void {
    let stopped = false
    let timer = 0
    const tick = async () => {
      await this.#poll()
      if (!stopped) timer = window.setTimeout(tick, POLL_MS)
    }
    void tick()
    return () => {
      stopped = true
      window.clearTimeout(timer)
    }
  }

  async #poll(): Promise<void> {
    try {
      const res = await fetch('/api/health', { headers: { accept: 'application/json' } })
      if (!res.ok) throw new Error(`the server answered ${res.status}`)
      const report = (await res.json()) as HealthReport
      const at = Date.now()
      const prev = this.#previous
      // a restarted server starts counting from zero again: no rate across that gap
      if (prev && report.uptime >= prev.report.uptime) {
        const seconds = (at - prev.at) / 1000
        this.rateIn = Math.max(0, (report.mqtt.messagesIn - prev.report.mqtt.messagesIn) / seconds)
        this.rateOut = Math.max(0, (report.mqtt.messagesOut - prev.report.mqtt.messagesOut) / seconds)
        push(this.inbound, { x: at, y: this.rateIn })
        push(this.outbound, { x: at, y: this.rateOut })
        this.version++
      }
      this.#previous = { at, report }
      this.latest = report
      this.error = null
    } catch (err) {
      this.error = err instanceof Error ? err.message : String(err)
      this.#previous = null
    }
  }
}

function push(points: Point[], p: Point): void {
  points.push(p)
  if (points.length > KEEP) points.splice(0, points.length - KEEP)
}

export const brokerHealth = new BrokerHealth()
