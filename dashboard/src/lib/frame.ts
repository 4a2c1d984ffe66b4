/**
 * Work that may be asked for many times between two paints runs once, in the next animation
 * frame: socket batches only fill buffers, and the DOM and charts change at most once per frame.
 */
const pending = new Set<() => void>()
let handle = 0
/**
 * Work asked for while a frame's work runs, or in the microtasks it set off: done in this frame
 * still, before it paints. Svelte applies the state that frame's work changed (the series
 * store's versions) in a microtask queued while it ran, so the effects that follow (a chart's
 * redraw for its new points) ask here, and the chart changes in the frame its tiles change.
 */
let late: Set<() => void> | null = null

export function onNextFrame(fn: () => void): void {
  if (late) {
    late.add(fn)
    return
  }
  pending.add(fn)
  if (handle === 0) handle = requestAnimationFrame(run)
}

function run(): void {
  handle = 0
  const fns = [...pending]
  pending.clear()
  late = new Set()
  try {
    for (const fn of fns) fn()
  } finally {
    // after the microtasks queued above, Svelte's among them
    queueMicrotask(runLate)
  }
}

function runLate(): void {
  const fns = late ?? []
  // work these ask for waits for the next frame
  late = null
  for (const fn of fns) fn()
}
