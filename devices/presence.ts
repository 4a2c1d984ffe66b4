import type { DeviceState, Envelope } from '../protocol/index.ts'

/** How long a silence, in usual intervals, makes an online device stale. */
const STALE_AFTER_INTERVALS = 3
/** Messages closer together than this are one burst (a device publishing each sensor on its own topic). */
const BURST_MS = 250
/** Characters of a will's payload shown with its device. */
const WILL_PREVIEW = 256
/**
 * A connection that ends within this long of its first message was a report, not a session:
 * a deep-sleep device wakes, publishes and goes. Two such reports make a device a sleeper.
 */
const REPORT_SESSION_MS = 30_000
const REPORTS_TO_SLEEP = 2

/** What presence keeps per device, beside its state. */
export interface DevicePresence {
  /** Smoothed gap between bursts of messages, ms; 0 until measured. */
  interval: number
  lastBurst: number
  /** Online state comes from a status topic, not only from the connection. */
  announcesStatus: boolean
  /** The MQTT client it was last seen through. */
  clientId?: string
  /** When the current connection's first message came, epoch ms; 0 when not connected. */
  sessionStart: number
  /** Short sessions in a row (connect, report, disconnect); at 2 the device is a sleeper. */
  reports: number
}

export interface Tracked {
  state: DeviceState
  presence: DevicePresence
  /** Its state is another node's, which says when it is stale: here its last-seen time moves only as often as that node shares it. */
  mirrored?: boolean
}

/**
 * Whether each device is there: online from its connection, its will or its
 * status topic, offline at once when its connection drops, stale when it goes
 * quiet for 3 × its usual interval; asleep when it connects, reports and
 * disconnects on a schedule, until it misses 3 × that interval. Keeps the wills of connected clients only,
 * and which devices each client publishes for (one client per device).
 */
export class Presence<D extends Tracked> {
  readonly #lookup: (id: string) => D | undefined
  readonly #changed: (device: D) => void
  /** Device ids by the MQTT client that published for them. */
  readonly #byClient = new Map<string, Set<string>>()
  /** Wills of connected clients only. */
  readonly #wills = new Map<string, { topic: string; payload: string }>()

  /** `lookup` finds a device by id; `changed` is told of each device whose presence changed. */
  constructor(lookup: (id: string) => D | undefined, changed: (device: D) => void) {
    this.#lookup = lookup
    this.#changed = changed
  }

  /** Wills held, one per connected client that set one. */
  get wills(): number {
    return this.#wills.size
  }

  static initial(): DevicePresence {
    return { interval: 0, lastBurst: 0, announcesStatus: false, sessionStart: 0, reports: 0 }
  }

  /** A message of this device arrived; true when the client it comes through, or its will, changed. */
  seen(device: D, envelope: Envelope): boolean {
    const { state, presence } = device
    const now = envelope.ts
    if (now - presence.lastBurst >= BURST_MS) {
      if (presence.lastBurst > 0) {
        const gap = now - presence.lastBurst
        presence.interval = presence.interval === 0 ? gap : presence.interval * 0.7 + gap * 0.3
      }
      presence.lastBurst = now
    }
    state.lastSeen = now
    if (state.stale) {
      state.stale = false
      this.#changed(device)
    }
    if (state.asleep) this.#wake(device)
    const clientId = envelope.source === 'mqtt' ? envelope.clientId : undefined
    if (!clientId) {
      // an external broker does not say who published: the message itself proves the device is there
      if (envelope.source === 'mqtt' && !presence.announcesStatus) this.#setOnline(device, true)
      return false
    }
    const moved = state.clientId !== clientId
    state.clientId = clientId
    const will = this.#wills.get(clientId)
    const newWill = will !== undefined && state.will?.topic !== will.topic
    if (will) state.will = will
    if (presence.clientId !== clientId || presence.sessionStart === 0) presence.sessionStart = now
    if (presence.clientId !== clientId) {
      if (presence.clientId !== undefined) this.#byClient.get(presence.clientId)?.delete(state.id)
      presence.clientId = clientId
      let ids = this.#byClient.get(clientId)
      if (!ids) this.#byClient.set(clientId, (ids = new Set()))
      ids.add(state.id)
    }
    // publishing proves the connection; a status topic that said offline is corrected by its own next message
    if (!presence.announcesStatus) this.#setOnline(device, true)
    return moved || newWill
  }

  /** A status topic, will or `$state` of this device said online or offline. */
  announced(device: D, online: boolean): void {
    device.presence.announcesStatus = true
    // a device that says it is offline is not asleep, whatever its schedule
    if (!online && device.state.asleep) this.#wake(device)
    this.#setOnline(device, online)
  }

  /** An MQTT client connected: devices it published for before are back online. */
  connected(clientId: string, will?: { topic: string; payload: string }): void {
    const shown = will && { topic: will.topic, payload: will.payload.slice(0, WILL_PREVIEW) }
    if (shown) this.#wills.set(clientId, shown)
    else this.#wills.delete(clientId)
    for (const device of this.#devicesOf(clientId)) {
      device.state.clientId = clientId
      if (shown) device.state.will = shown
      // asleep means not connected but expected back: a sleeper that woke is online, not both
      if (device.state.asleep) this.#wake(device)
      this.#setOnline(device, true)
    }
  }

  /**
   * An MQTT client went away, cleanly or not: its devices are offline now, not at the next
   * timeout; or asleep, when they connect, report and go on a schedule.
   */
  disconnected(clientId: string, now = Date.now()): void {
    this.#wills.delete(clientId)
    for (const device of this.#devicesOf(clientId)) {
      const { state, presence } = device
      if (state.clientId !== clientId) continue
      delete state.clientId
      const report = presence.sessionStart > 0 && now - presence.sessionStart <= REPORT_SESSION_MS
      presence.reports = report ? presence.reports + 1 : 0
      presence.sessionStart = 0
      // a will or status topic that says offline arrives as a fact, after this, and wins
      if (presence.reports >= REPORTS_TO_SLEEP && presence.interval > 0 && state.online) this.#sleep(device)
      else this.#setOnline(device, false)
    }
  }

  /** A new connection took this client id from a connected one: its devices show it. */
  takenOver(clientId: string): void {
    for (const device of this.#devicesOf(clientId)) {
      device.state.takeovers = (device.state.takeovers ?? 0) + 1
      this.#changed(device)
    }
  }

  /** A device restored from a snapshot was last seen through this client: its connection, when it comes, is the device's. */
  adopt(device: D, clientId: string): void {
    device.presence.clientId = clientId
    let ids = this.#byClient.get(clientId)
    if (!ids) this.#byClient.set(clientId, (ids = new Set()))
    ids.add(device.state.id)
  }

  /** The registry forgot this device. */
  forget(device: D): void {
    const { clientId } = device.presence
    if (clientId !== undefined) this.#byClient.get(clientId)?.delete(device.state.id)
  }

  /**
   * Marks online devices that went quiet as stale (a mirrored one's node does that), and asleep
   * ones that missed their reports as offline: of a node that died too.
   */
  checkStale(devices: Iterable<D>, now: number): void {
    for (const device of devices) {
      const { state, presence } = device
      if (state.asleep && state.lastSeen !== null && now - state.lastSeen > STALE_AFTER_INTERVALS * presence.interval) {
        this.#wake(device)
        this.#changed(device)
        continue
      }
      if (device.mirrored || !state.online || state.stale || presence.interval === 0 || state.lastSeen === null) continue
      if (now - state.lastSeen > STALE_AFTER_INTERVALS * presence.interval) {
        state.stale = true
        this.#changed(device)
      }
    }
  }

  #sleep(device: D): void {
    const { state, presence } = device
    state.online = false
    state.stale = false
    state.asleep = true
    state.nextReport = Math.round(presence.lastBurst + presence.interval)
    this.#changed(device)
  }

  /** No longer asleep: it reported, said it is offline, or missed its reports. */
  #wake(device: D): void {
    device.state.asleep = false
    delete device.state.nextReport
  }

  #setOnline(device: D, online: boolean): void {
    if (device.state.online === online && !device.state.stale) return
    device.state.online = online
    device.state.stale = false
    this.#changed(device)
  }

  #devicesOf(clientId: string): D[] {
    const ids = this.#byClient.get(clientId)
    // not seen publishing through this client (a broker's client event, or a device restored at
    // start): the device whose id is the client id, which is how many firmwares name themselves
    if (!ids) {
      const same = this.#lookup(clientId)
      return same ? [same] : []
    }
    if (ids.size === 0) {
      this.#byClient.delete(clientId)
      return []
    }
    return [...ids].map((id) => this.#lookup(id)).filter((d): d is D => d !== undefined)
  }
}
