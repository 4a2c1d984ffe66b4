import { createSubscriber } from 'svelte/reactivity'

/** The current time, ticking every second while anything on screen reads it ("3s ago"). */
class Clock {
  #now = Date.now()
  readonly #subscribe = createSubscriber((update) => {
    this.#now = Date.now()
    const timer = window.setInterval(() => {
      this.#now = Date.now()
      update()
    }, 1000)
    return () => window.clearInterval(timer)
  })

  get now(): number {
    this.#subscribe()
    return this.#now
  }
}

export const clock = new Clock()
