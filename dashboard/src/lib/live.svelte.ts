import { io, type Socket } from 'socket.io-client'
import { resetBrokerStatus, setBrokerStatus } from './broker.svelte.ts'
import { applyDevice, devices, loadDevices, removeDevice, replaceDevices, updateDevices } from './devices.svelte.ts'
import { messageLog } from './messages.svelte.ts'
import {
  LIVE_NAMESPACE,
  type Ack,
  type AppliedView,
  type CommandRequest,
  type CommandResult,
  type DeviceSelection,
  type DeviceState,
  type ErrorCode,
  type Envelope,
  type LiveAuth,
  type LiveClientToServerEvents,
  type LiveServerToClientEvents,
  type PublishRequest,
  type Reading,
} from './protocol.ts'
import { router, type Route } from './router.svelte.ts'
import { series } from './series.svelte.ts'
import { checkSession } from './session.svelte.ts'
import { topicTree } from './topics.svelte.ts'

type LiveSocket = Socket<LiveServerToClientEvents, LiveClientToServerEvents>

export type ConnectionStatus = 'connecting' | 'online' | 'reconnecting' | 'offline'

/** Failed attempts after which "reconnecting" becomes "offline" (still retrying, less often). */
const OFFLINE_AFTER_ATTEMPTS = 4
const ACK_TIMEOUT_MS = 5000
/**
 * A command to an MQTT 5 device is acknowledged once the device answers, or once the server
 * gives up on it (E_DEVICE_TIMEOUT, after 5 s): wait for that, and for the server's own answer.
 */
const COMMAND_ACK_TIMEOUT_MS = 15_000

/** The `/live` socket as the banner shows it. */
export const connection = $state({
  status: 'connecting' as ConnectionStatus,
  /** Reconnection attempts since the connection was lost. */
  attempts: 0,
  /** Why the connection was refused (a handshake middleware said no), for people. */
  reason: '',
  /** The server refused us: socket.io does not retry until asked. */
  refused: false,
  /** Connected at least once since the page loaded. */
  everConnected: false,
  /** When the current connection was made (epoch ms, this browser's clock), or null while not connected. */
  connectedAt: null as number | null,
})

/** A (re)connection, as stores that fill gaps see it. */
export interface Connected {
  /** The first connection since the page loaded: there is no gap to fill. */
  first: boolean
  /**
   * The server replayed what was missed (socket.io connection state recovery, within its window):
   * nothing to fill. False also for a client that had received nothing before the drop, which
   * has no offset to recover from.
   */
  recovered: boolean
  at: number
}

// eslint-disable-next-line svelte/prefer-svelte-reactivity -- callbacks, not state
const connectListeners = new Set<(c: Connected) => void>()

/** Calls `fn` on each connection until the returned function is called. */
export function onConnect(fn: (c: Connected) => void): () => void {
  connectListeners.add(fn)
  return () => connectListeners.delete(fn)
}

/**
 * What each page shows, and so all the server sends it (docs/protocol.md, "Views"): a page that
 * shows one device gets that device's state and readings and nothing else. A page that starts to
 * show something new adds it here.
 */
const PAGE_VIEWS: { [P in Route['page']]: (route: Extract<Route, { page: P }>) => AppliedView } = {
  // cards: every device's state; values come with it, at most once a second per device
  overview: () => ({ filters: [], devices: true, readings: false }),
  device: (route) => ({ filters: [], devices: [route.id], readings: [route.id] }),
  messages: () => ({ filters: ['#'], devices: false, readings: false }),
  topics: () => ({ filters: ['#'], devices: false, readings: false }),
  // figures polled from /api/health
  broker: () => ({ filters: [], devices: false, readings: false }),
  missing: () => ({ filters: [], devices: false, readings: false }),
}

function viewOf(route: Route): AppliedView {
  return (PAGE_VIEWS[route.page] as (r: Route) => AppliedView)(route)
}

const sameView = (a: AppliedView, b: AppliedView) => JSON.stringify(a) === JSON.stringify(b)
const covers = (selection: DeviceSelection, id: string) => selection === true || (Array.isArray(selection) && selection.includes(id))
/** Whose points a view keeps live: those whose readings it gets, or, without readings, whose values come with their state. */
const livePoints = (view: AppliedView): DeviceSelection => (view.readings === false ? view.devices : view.readings)

/** The view of the page on screen. */
let wanted: AppliedView = viewOf(router.route)
/** The view the server applies, as far as we know: the one the handshake sent, then each acknowledged `view`. */
let applied: AppliedView = wanted

/**
 * The page changed: the server is told before the new page renders, and what the old one left
 * behind is put right. Points of devices no view kept live have a gap, so they go (a card fetches
 * its history again); a message log that missed messages starts again from the server's log, and
 * the topic tree asks the server for its counts again.
 */
function onRoute(route: Route): void {
  const next = viewOf(route)
  if (sameView(next, wanted)) return
  const before = wanted
  wanted = next
  const keptLive = livePoints(before)
  const nowLive = livePoints(next)
  if (nowLive !== false) {
    for (const id of [...series.versions.keys()]) if (covers(nowLive, id) && !covers(keptLive, id)) series.forget(id)
  }
  if (before.filters.length === 0 && next.filters.length > 0 && connection.everConnected) {
    // the latest of the server's log fill the gap; live messages follow from the view on
    messageLog.clear()
    void messageLog.loadOlder()
    void topicTree.seed(true)
  }
  sendView()
}

/** Tells the server the page's view; while not connected, the next handshake carries it. */
function sendView(): void {
  const s = socket
  if (!s?.connected) return
  const view = wanted
  s.emit('view', view, (ack) => {
    if (ack.ok) applied = ack.view
  })
}

/**
 * A benchmark's hook (bench/browser.ts installs it before the app loads): told of every reading
 * and device state as it arrives, before anything renders it.
 */
interface Probe {
  readings(batch: readonly Reading[]): void
  devices(list: readonly DeviceState[]): void
}

let socket: LiveSocket | null = null

/** Opens the socket (once) and routes every event to its store. */
export function connectLive(): void {
  if (socket) return
  const probe = (window as { __pulseboardProbe?: Probe }).__pulseboardProbe
  // read at every (re)connect: the handshake carries the view of the page on screen
  const auth = (send: (auth: LiveAuth) => void) => {
    applied = wanted
    send({ view: applied })
  }
  const s: LiveSocket = io(LIVE_NAMESPACE, {
    auth,
    // WebSocket first; long-polling when a proxy on the way does not pass WebSockets
    transports: ['websocket', 'polling'],
    tryAllTransports: true,
    reconnectionDelay: 500,
    reconnectionDelayMax: 5000,
  })
  socket = s

  s.on('connect', () => {
    const c: Connected = { first: !connection.everConnected, recovered: s.recovered, at: Date.now() }
    connection.status = 'online'
    connection.attempts = 0
    connection.reason = ''
    connection.refused = false
    connection.everConnected = true
    connection.connectedAt = c.at
    // the server sends where its messages come from right after: what we knew may be stale
    resetBrokerStatus()
    // the page changed after the handshake went
    if (!sameView(applied, wanted)) sendView()
    for (const fn of connectListeners) fn(c)
  })
  s.on('disconnect', (reason) => {
    connection.connectedAt = null
    connection.status = navigator.onLine ? 'reconnecting' : 'offline'
    // the server closed this socket on purpose; socket.io waits for us to reconnect
    if (reason === 'io server disconnect') window.setTimeout(() => s.connect(), 1000)
  })
  s.on('connect_error', (err) => {
    // refused by a handshake middleware: socket.io gives up; transport errors are retried
    if (s.active) return
    // the session ended (logged out elsewhere, the user removed): back to the login page
    if ((err as { data?: { code?: unknown } }).data?.code === 'E_NOT_AUTHENTICATED') void checkSession()
    connection.status = 'offline'
    connection.refused = true
    connection.reason = err.message
  })
  s.io.on('reconnect_attempt', (attempt) => {
    connection.attempts = attempt
    connection.status =
      !navigator.onLine || attempt > OFFLINE_AFTER_ATTEMPTS ? 'offline' : connection.everConnected ? 'reconnecting' : 'connecting'
  })
  window.addEventListener('offline', () => {
    if (connection.status !== 'online') connection.status = 'offline'
  })
  window.addEventListener('online', () => {
    if (!s.connected) retryNow()
  })

  s.on('devices', (list) => {
    probe?.devices(list)
    const scope = applied.devices
    if (Array.isArray(scope)) replaceSome(scope, list)
    else replaceDevices(list)
    pointsFromValues(list)
  })
  s.on('device', (changed) => {
    probe?.devices(changed)
    updateDevices(changed)
    pointsFromValues(changed)
  })
  s.on('forget', removeDevice)
  s.on('broker', setBrokerStatus)
  s.on('readings', (batch) => {
    probe?.readings(batch)
    series.add(batch)
  })
  s.on('message', (envelope) => receive([envelope]))
  s.on('messages', receive)
  window.addEventListener('hashchange', () => onRoute(router.route))

  void loadDevices()
  void topicTree.seed()
}

/** A snapshot of some devices: those it has are new, those it lacks of the ones it is of are gone. */
function replaceSome(scope: readonly string[], list: readonly DeviceState[]): void {
  for (const device of list) applyDevice(device)
  const got = new Set(list.map((d) => d.id))
  for (const id of scope) if (!got.has(id) && devices.has(id)) removeDevice(id)
}

/**
 * Without readings (the overview) a device's points come from the values its state carries, at
 * most once a second: enough for a card's sparkline, at a small part of the cost of every reading.
 */
function pointsFromValues(list: readonly DeviceState[]): void {
  const view = applied
  if (view.readings === true) return
  const points: Reading[] = []
  for (const device of list) {
    if (covers(view.readings, device.id)) continue
    for (const [metric, m] of Object.entries(device.metrics)) {
      if (m.ts > (series.last(device.id, metric)?.x ?? -Infinity)) points.push({ device: device.id, metric, value: m.value, ts: m.ts })
    }
  }
  if (points.length > 0) series.add(points)
}

function receive(batch: Envelope[]): void {
  messageLog.push(batch)
  topicTree.push(batch)
}

/** Skips the back-off wait. */
export function retryNow(): void {
  if (!socket || socket.connected) return
  socket.disconnect()
  socket.connect()
}

/** What a send resolves with: the server's ack, or why no ack came (the catalogue's client-side codes). */
export type Reply<T extends object = object> = Ack<T>

/** Publishes to MQTT, or sends chat text when given a string. */
export function publish(message: PublishRequest | string): Promise<Reply> {
  return emitWithAck((s, ack) => s.emit('message', message, ack))
}

/** `waitsForReply`: the device speaks MQTT 5 (`DeviceState.mqtt5`), so the ack waits for its answer. */
export function sendCommand(command: CommandRequest, waitsForReply = false): Promise<Reply<CommandResult>> {
  return emitWithAck((s, ack) => s.emit('command', command, ack), waitsForReply ? COMMAND_ACK_TIMEOUT_MS : ACK_TIMEOUT_MS)
}

function emitWithAck<T extends object>(send: (s: LiveSocket, ack: (ack: Ack<T>) => void) => void, timeoutMs = ACK_TIMEOUT_MS): Promise<Reply<T>> {
  return new Promise((resolve) => {
    const s = socket
    if (!s?.connected) {
      resolve(failure('E_NOT_CONNECTED', 'not connected to the server; try again once the banner is gone'))
      return
    }
    const timer = window.setTimeout(
      () => resolve(failure('E_NO_ANSWER', `the server did not answer within ${timeoutMs / 1000} s`)),
      timeoutMs,
    )
    send(s, (ack) => {
      window.clearTimeout(timer)
      resolve(ack)
    })
  })
}

function failure(code: Extract<ErrorCode, 'E_NOT_CONNECTED' | 'E_NO_ANSWER'>, message: string): Reply {
  return { ok: false, error: { code, message } }
}
