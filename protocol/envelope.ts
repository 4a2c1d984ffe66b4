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

/** What a `/live` client may send in its handshake (`io(url, { auth })`): filters applied from the first message on. */
export interface LiveAuth {
  filters?: SubscribeRequest
  /** `false` skips the `devices`, `device` and `readings` events (for clients that only want messages). @default true */
  devices?: boolean
}
