import type { Attachment } from 'svelte/attachments'

/** One observer for every element that wants to know whether it is on screen (or about to be). */
const listeners = new WeakMap<Element, (visible: boolean) => void>()
let observer: IntersectionObserver | null = null

function shared(): IntersectionObserver {
  observer ??= new IntersectionObserver(
    (entries) => {
      for (const entry of entries) listeners.get(entry.target)?.(entry.isIntersecting)
    },
    { rootMargin: '200px 0px' },
  )
  return observer
}

/** Calls `onChange` when the element scrolls into or out of view: off-screen work can wait. */
export function visibility(onChange: (visible: boolean) => void): Attachment<Element> {
  return (element) => {
    listeners.set(element, onChange)
    shared().observe(element)
    return () => {
      shared().unobserve(element)
      listeners.delete(element)
    }
  }
}
