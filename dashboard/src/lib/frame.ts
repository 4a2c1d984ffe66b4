/**
 * Work that may be asked for many times between two paints runs once, in the next animation
 * frame: socket batches only fill buffers, and the DOM and charts change at most once per frame.
 */
const pending = new Set<() => void>()
let handle = 0

export function onNextFrame(fn: () => void): void {
  pending.add(fn)
  if (handle === 0) handle = requestAnimationFrame(run)
}

function run(): void {
  handle = 0
  const fns = [...pending]
  pending.clear()
  for (const fn of fns) fn()
}
