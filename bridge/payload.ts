import { isUtf8 } from 'node:buffer'
import type { PayloadEncoding } from '../protocol/index.ts'

/** MQTT payloads are bytes; socket clients get text, or base64 when the bytes are not UTF-8. */
export function encodePayload(payload: Buffer | string): { payload: string; encoding?: PayloadEncoding } {
  if (typeof payload === 'string') return { payload }
  if (isUtf8(payload)) return { payload: payload.toString('utf8') }
  return { payload: payload.toString('base64'), encoding: 'base64' }
}

export function decodePayload(payload: string, encoding?: PayloadEncoding): Buffer {
  return Buffer.from(payload, encoding === 'base64' ? 'base64' : 'utf8')
}
