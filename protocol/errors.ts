/**
 * The catalogue of error codes a client can receive in an acknowledgement.
 * Codes are stable; messages are for people and may change.
 */
export const ErrorCodes = {
  /** The event argument does not have the documented shape. */
  E_INVALID_MESSAGE: 'E_INVALID_MESSAGE',
  /** A topic is empty, has wildcards, or is reserved (`$...`). */
  E_INVALID_TOPIC: 'E_INVALID_TOPIC',
  /** A topic filter is not a valid MQTT filter. */
  E_INVALID_FILTER: 'E_INVALID_FILTER',
  /** The payload is larger than the broker's maximum packet size. */
  E_PAYLOAD_TOO_LARGE: 'E_PAYLOAD_TOO_LARGE',
  /** The broker refused or failed the publish. */
  E_PUBLISH_FAILED: 'E_PUBLISH_FAILED',
  /** No device with that id is known. */
  E_UNKNOWN_DEVICE: 'E_UNKNOWN_DEVICE',
  /** The device has no command of that name. */
  E_UNKNOWN_COMMAND: 'E_UNKNOWN_COMMAND',
} as const

export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes]

export interface ErrorBody {
  code: ErrorCode
  message: string
}

/** The one shape of every socket.io acknowledgement. */
export type Ack<T extends object = object> = ({ ok: true } & T) | { ok: false; error: ErrorBody }

export function fail(code: ErrorCode, message: string): { ok: false; error: ErrorBody } {
  return { ok: false, error: { code, message } }
}
