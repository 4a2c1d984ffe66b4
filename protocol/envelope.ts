import { z } from 'zod'

/** How a payload is carried as a string: UTF-8 text as is, anything else as base64. */
export type PayloadEncoding = 'base64'

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
}

/** What a `/live` client emits as `message` to publish to MQTT. */
export const PublishRequestSchema = z
  .object({
    topic: z.string(),
    payload: z.string(),
    qos: z.union([z.literal(0), z.literal(1), z.literal(2)]).default(0),
    retain: z.boolean().default(false),
    encoding: z.literal('base64').optional(),
  })
  .strict()

export type PublishRequest = z.input<typeof PublishRequestSchema>

/** What a `/live` client emits as `subscribe`: one filter or several. */
export const SubscribeRequestSchema = z.union([z.string(), z.array(z.string()).min(1).max(256)])

export type SubscribeRequest = z.input<typeof SubscribeRequestSchema>

/** What a `/live` client shows, and so receives: set in the handshake, it applies from the first message on. */
export interface LiveView {
  /** Topic filters of the messages it receives. @default "#" (everything but `$SYS`) */
  filters?: SubscribeRequest
  /** `false` skips the `devices`, `device` and `readings` events (for clients that only want messages). @default true */
  devices?: boolean
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
