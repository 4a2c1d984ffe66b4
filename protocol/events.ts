import type { Ack } from './errors.ts'
import type { AppliedView, Envelope, LiveView, PublishRequest, SubscribeRequest } from './envelope.ts'
import type { BrokerStatus } from './health.ts'
import type { CommandRequest, DeviceState } from './devices.ts'
import type { Reading } from './readings.ts'

/** What a command's acknowledgement carries. */
export interface CommandResult {
  topic: string
  payload: string
  /** The device's answer, when the command went as an MQTT 5 request. */
  reply?: Pick<Envelope, 'topic' | 'payload' | 'encoding' | 'properties' | 'ts'>
}

/** The structured namespace; `/` keeps the seed's one-string protocol. */
export const LIVE_NAMESPACE = '/live'

/** What a `/live` client receives until it asks for less: everything but `$SYS` [MQTT-4.7.2-1]. */
export const DEFAULT_LIVE_FILTERS: readonly string[] = ['#']

/** Namespace `/`: the seed protocol, one string per `message`. */
export interface ChatServerToClientEvents {
  message: (text: string) => void
}

export interface ChatClientToServerEvents {
  message: (text: string, ack?: (ack: Ack) => void) => void
}

/**
 * Namespace `/live`. A burst of messages that arrive together is sent as one
 * `messages` batch instead of many `message` events; clients handle both. Each client is
 * sent only what its view (`LiveView`) shows: messages its filters match, the state and the
 * readings of the devices it names.
 */
export interface LiveServerToClientEvents {
  message: (envelope: Envelope) => void
  messages: (batch: Envelope[]) => void
  /** Every known device of the view, on connect and after a `view` that changes `devices`. */
  devices: (all: DeviceState[]) => void
  /**
   * Devices that changed: within 100 ms when it matters (online, stale, name, a new metric),
   * at most once a second when only values and last-seen time moved (`readings` carry those sooner).
   */
  device: (changed: DeviceState[]) => void
  /** Readings of the view's devices since the last batch, at most every 100 ms. */
  readings: (batch: Reading[]) => void
  /** Where messages come from, on connect and whenever it connects or disconnects (an external broker's outage). */
  broker: (status: BrokerStatus) => void
  /** A device was forgotten (by a user, or to stay within `--max-devices`); it is new if it reports again. */
  forget: (id: string) => void
}

export interface LiveClientToServerEvents {
  /** A string is chat text; an object is published to MQTT as is. */
  message: (message: PublishRequest | string, ack?: (ack: Ack) => void) => void
  /** Replace this client's topic filters; the default is `#` (everything but `$SYS`). */
  subscribe: (filters: SubscribeRequest, ack?: (ack: Ack<{ filters: string[] }>) => void) => void
  /**
   * Replace this client's whole view (what the handshake's `auth.view` set; omitted fields take
   * their defaults). The ack carries the view as applied; a `devices` snapshot follows it when
   * the view has device state.
   */
  view: (view: LiveView, ack?: (ack: Ack<{ view: AppliedView }>) => void) => void
  /**
   * Sends a command where the device's firmware listens; the ack says where it went. To an MQTT 5
   * device (`DeviceState.mqtt5`) it goes as a request, and the ack waits for its `reply`, or fails
   * with `E_DEVICE_TIMEOUT`.
   */
  command: (command: CommandRequest, ack?: (ack: Ack<CommandResult>) => void) => void
}
