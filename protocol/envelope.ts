import { z } from 'zod'
import { MAX_VIEW_DEVICES } from './limits.ts'

/** How a payload is carried as a string: UTF-8 text as is, anything else as base64. */
export type PayloadEncoding = 'base64'

/**
 * The MQTT 5 properties of a message, as `/live` clients see them (absent under MQTT 3.1.1).
 * Only an external MQTT 5 broker (`--broker`) carries them; the embedded one speaks 3.1.1.
 */
export interface MessageProperties {
  /** Name and value pairs; a name sent more than once has its values in order. */
  userProperties?: Record<string, string | string[]>
  /** MIME type of the payload, e.g. `application/json`. */
  contentType?: string
  /** `true`: the publisher says the payload is UTF-8 text (payload format indicator 1). */
  payloadFormatIndicator?: boolean
  /** Where the publisher wants an answer. */
  responseTopic?: string
  /** Base64; sent back with the answer so the requester can match it. */
  correlationData?: string
  /** Seconds the message stays valid; the broker drops it for subscribers who are away longer. */
  messageExpiryInterval?: number
}

/** Bounds keep a property set within one packet and a log row. */
const PROPERTY_TEXT = z.string().max(4096)
export const MessagePropertiesSchema = z
  .object({
    userProperties: z
      .record(PROPERTY_TEXT, z.union([PROPERTY_TEXT, z.array(PROPERTY_TEXT).max(32)]))
      .refine((props) => Object.keys(props).length <= 64, 'at most 64 user properties')
      .optional(),
    contentType: PROPERTY_TEXT.optional(),
    payloadFormatIndicator: z.boolean().optional(),
    responseTopic: PROPERTY_TEXT.optional(),
    correlationData: z.base64().max(4096).optional(),
    messageExpiryInterval: z.number().int().min(0).max(0xffffffff).optional(),
  })
  .strict()

/** One message as `/live` clients see it, whichever side published it. */
export interface Envelope {
  topic: string
  /** UTF-8 text, or base64 when `encoding` says so. */
  payload: string
  /** Epoch milliseconds when the bridge received it. */
  ts: number
  source: 'mqtt' | 'socket'
  /** MQTT client id, or socket id for messages from socket clients. */
  clientId?: string
  qos: 0 | 1 | 2
  retain: boolean
  encoding?: PayloadEncoding
  /** Its MQTT 5 properties, when it had any. */
  properties?: MessageProperties
}

/** What a `/live` client emits as `message` to publish to MQTT. */
export const PublishRequestSchema = z
  .object({
    topic: z.string(),
    payload: z.string(),
    qos: z.union([z.literal(0), z.literal(1), z.literal(2)]).default(0),
    retain: z.boolean().default(false),
    encoding: z.literal('base64').optional(),
    /** MQTT 5 properties; only an MQTT 5 broker (`--broker`) carries them, the embedded one refuses them. */
    properties: MessagePropertiesSchema.optional(),
  })
  .strict()

export type PublishRequest = z.input<typeof PublishRequestSchema>

/** What a `/live` client emits as `subscribe`: one filter or several. */
export const SubscribeRequestSchema = z.union([z.string(), z.array(z.string()).min(1).max(256)])

export type SubscribeRequest = z.input<typeof SubscribeRequestSchema>

/**
 * Which devices one part of a view covers: every device (`true`), none (`false` or `[]`), or
 * these, by id (1 to `MAX_VIEW_DEVICES`).
 */
export type DeviceSelection = boolean | string[]

/**
 * What a `/live` client shows, and so receives: set in the handshake (`auth.view`), it applies
 * from the first message on; the `view` event replaces it without reconnecting. The server sends
 * nothing else: a client that shows one device's chart is sent that device's readings only.
 */
export interface LiveView {
  /** Topic filters of the messages it receives; `[]` for none. @default "#" (everything but `$SYS`) */
  filters?: string | string[]
  /**
   * Device state: the `devices` snapshot, `device` changes and `forget`, of every device, of
   * these devices, or of none. A `device` change whose only news is values goes at most once a
   * second per device: the overview's latest values at a bounded rate. @default true
   */
  devices?: DeviceSelection
  /** Readings (`readings`, at most every 100 ms) of every device, of these devices, or of none. @default the same as `devices` */
  readings?: DeviceSelection
}

const DeviceSelectionSchema = z.union([z.boolean(), z.array(z.string().min(1).max(1024)).max(MAX_VIEW_DEVICES)])

/** A `LiveView`, as the handshake and the `view` event take it; fields it does not know are ignored. */
export const LiveViewSchema = z.object({
  /** Checked as topic filters by the server, which says which one is wrong (`E_INVALID_FILTER`). */
  filters: z.unknown().optional(),
  devices: DeviceSelectionSchema.optional(),
  readings: DeviceSelectionSchema.optional(),
})

/**
 * The view a client has, as the server applies it (the `view` event's acknowledgement): defaults
 * filled in, filters and ids sorted and once each, an empty selection as `false`, and devices
 * the principal may not see left out (`true` becomes `false` for one who may not see them all).
 */
export interface AppliedView {
  filters: string[]
  devices: DeviceSelection
  readings: DeviceSelection
}

/** The socket.io handshake (`io(url, { auth })`): credentials, and for `/live` what the client shows. */
export interface LiveAuth {
  /** An API token, once the server has users (`pulseboard tokens create`). */
  token?: string
  view?: LiveView
  /** @deprecated since 0.2: use `view.filters`; still read, until 0.3. */
  filters?: SubscribeRequest
  /** @deprecated since 0.2: use `view.devices`; still read, until 0.3. */
  devices?: boolean
}

/** One message of the server's log (`GET /api/messages`): an envelope and its place in the log; `id` grows with each message logged. */
export interface LoggedEnvelope extends Envelope {
  id: number
}
