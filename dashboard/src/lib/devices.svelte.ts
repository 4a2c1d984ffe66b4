import { SvelteMap } from 'svelte/reactivity'
import { onNextFrame } from './frame.ts'
import { fetchAll } from './pages.ts'
import type { DeviceState } from './protocol.ts'

/**
 * Every device the server knows, by id. A `DeviceState` is replaced whole on each change and
 * never mutated, so a card re-renders only when its own device changed.
 */
export const devices = new SvelteMap<string, DeviceState>()

export const registry = $state({
  /** The server told us its devices at least once (a snapshot or `GET /api/devices`). */
  loaded: false,
})

// eslint-disable-next-line svelte/prefer-svelte-reactivity -- a buffer between frames, not state
const pending = new Map<string, DeviceState>()
let snapshotSeen = false

/** The full list sent on each (re)connect: devices that are gone since are dropped. */
export function replaceDevices(all: readonly DeviceState[]): void {
  snapshotSeen = true
  apply(all)
}

function apply(all: readonly DeviceState[]): void {
  pending.clear()
  const ids = new Set(all.map((d) => d.id))
  for (const id of devices.keys()) if (!ids.has(id)) devices.delete(id)
  for (const device of all) devices.set(device.id, device)
  registry.loaded = true
}

/**
 * Cards show values people read, not a chart: four updates a second is as fast as anyone reads
 * a number, and a grid of a hundred cards repainted ten times a second keeps the page busy.
 * Charts follow `readings`, frame by frame, and are not held back by this.
 */
const CARD_UPDATE_MS = 250
let lastFlush = 0
let timer = 0

/** Changed devices, applied together in a frame at most every CARD_UPDATE_MS. */
export function updateDevices(changed: readonly DeviceState[]): void {
  for (const device of changed) pending.set(device.id, device)
  if (timer !== 0) return
  timer = window.setTimeout(() => onNextFrame(flush), Math.max(0, lastFlush + CARD_UPDATE_MS - performance.now()))
}

function flush(): void {
  timer = 0
  lastFlush = performance.now()
  for (const [id, device] of pending) devices.set(id, device)
  pending.clear()
}

/** The first paint need not wait for the socket: the HTTP list is usually quicker. */
export async function loadDevices(): Promise<void> {
  try {
    const list = await fetchAll<DeviceState>('/api/devices')
    if (snapshotSeen) return // the socket's snapshot is as fresh or fresher
    // not a list: a server without the device registry; the page shows "no devices yet"
    if (!list) registry.loaded = true
    else apply(list)
  } catch {
    // offline: the socket's snapshot fills the list once it connects
  }
}

export type DeviceStatus = 'online' | 'stale' | 'offline'

export function statusOf(device: DeviceState): DeviceStatus {
  if (!device.online) return 'offline'
  return device.stale ? 'stale' : 'online'
}

export const statusLabel: Record<DeviceStatus, string> = { online: 'Online', stale: 'Stale', offline: 'Offline' }

/** Metric names in display order: numbers first, switches last, each alphabetical. */
export function metricNames(device: DeviceState): string[] {
  return Object.keys(device.metrics).sort((a, b) => {
    const ba = device.metrics[a]!.binary ? 1 : 0
    const bb = device.metrics[b]!.binary ? 1 : 0
    return ba - bb || a.localeCompare(b)
  })
}
