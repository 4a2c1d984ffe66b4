import { SvelteMap, SvelteSet } from 'svelte/reactivity'
import { onNextFrame } from './frame.ts'
import { fetchAll } from './pages.ts'
import { formatIn } from './format.ts'
import { problemOf } from './http.ts'
import type { DeviceState } from './protocol.ts'
import { series } from './series.svelte.ts'

/**
 * Every device the server knows, by id. A `DeviceState` is replaced whole on each change and
 * never mutated, so a card re-renders only when its own device changed.
 */
export const devices = new SvelteMap<string, DeviceState>()

export const registry = $state({
  /** The server told us its devices at least once (a snapshot or `GET /api/devices`). */
  loaded: false,
})

/** Devices forgotten while this page was open (by anyone), until they report again: a device page says so. */
export const forgotten = new SvelteSet<string>()

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
  for (const device of all) set(device)
  registry.loaded = true
}

function set(device: DeviceState): void {
  devices.set(device.id, device)
  if (forgotten.has(device.id)) forgotten.delete(device.id)
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
  for (const device of pending.values()) set(device)
  pending.clear()
}

/** A device as an HTTP answer gave it (a rename): shown at once, and an older update still waiting for its frame is dropped. */
export function applyDevice(device: DeviceState): void {
  pending.delete(device.id)
  set(device)
}

/** The server forgot a device (the `forget` event, or our own DELETE): off the lists, its points dropped. */
export function removeDevice(id: string): void {
  pending.delete(id)
  devices.delete(id)
  series.forget(id)
  forgotten.add(id)
}

const deviceUrl = (id: string) => `/api/devices/${encodeURIComponent(id)}`

/** Names a device (`null`: back to the name its firmware announced). Resolves with why not, or null once done. */
export async function renameDevice(id: string, name: string | null): Promise<string | null> {
  try {
    const res = await fetch(deviceUrl(id), {
      method: 'PATCH',
      headers: { 'content-type': 'application/json', accept: 'application/json' },
      body: JSON.stringify({ name }),
    })
    if (!res.ok) return await problemOf(res)
    applyDevice((await res.json()) as DeviceState)
    return null
  } catch (err) {
    return err instanceof Error ? err.message : String(err)
  }
}

/** Forgets a device and its history on the server. Resolves with why not, or null once done. */
export async function forgetDevice(id: string): Promise<string | null> {
  try {
    const res = await fetch(deviceUrl(id), { method: 'DELETE' })
    // already gone is what was asked for
    if (!res.ok && res.status !== 404) return await problemOf(res)
    removeDevice(id)
    return null
  } catch (err) {
    return err instanceof Error ? err.message : String(err)
  }
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

export type DeviceStatus = 'online' | 'stale' | 'asleep' | 'offline'

export function statusOf(device: DeviceState): DeviceStatus {
  // not connected, but expected back on its schedule: not the same as gone
  if (device.asleep) return 'asleep'
  if (!device.online) return 'offline'
  return device.stale ? 'stale' : 'online'
}

export const statusLabel: Record<DeviceStatus, string> = { online: 'Online', stale: 'Stale', asleep: 'Asleep', offline: 'Offline' }

/** "next report in 4m" for an asleep device, "next report due" once it is late; null when not asleep. */
export function nextReportText(device: DeviceState, now: number): string | null {
  if (!device.asleep || device.nextReport === undefined) return null
  return device.nextReport > now ? `next report ${formatIn(device.nextReport, now)}` : 'next report due'
}

/** Metric names in display order: numbers first, switches last, each alphabetical. */
export function metricNames(device: DeviceState): string[] {
  return Object.keys(device.metrics).sort((a, b) => {
    const ba = device.metrics[a]!.binary ? 1 : 0
    const bb = device.metrics[b]!.binary ? 1 : 0
    return ba - bb || a.localeCompare(b)
  })
}
