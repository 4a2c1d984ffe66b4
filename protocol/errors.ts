/**
 * The one catalogue of error codes, for every surface: socket.io acknowledgements,
 * HTTP bodies (`{ error: { code, message } }` with the status given here), handshake
 * refusals (`connect_error` with `data.code`), the dashboard and the CLI's one-line
 * messages. Codes are stable; messages are for people and may change.
 */
export const ERRORS = {
  /** The event argument or request body does not have the documented shape. */
  E_INVALID_MESSAGE: { status: 400 },
  /** A query or path parameter is missing or out of range; the message names it. */
  E_INVALID_REQUEST: { status: 400 },
  /** A topic is empty, has wildcards, contains NUL, is reserved (`$...`) or too long. */
  E_INVALID_TOPIC: { status: 400 },
  /** A topic filter is not a valid MQTT filter, or is too long. */
  E_INVALID_FILTER: { status: 400 },
  /** The request names no known endpoint. */
  E_NOT_FOUND: { status: 404 },
  /** The endpoint exists, for another method. */
  E_METHOD_NOT_ALLOWED: { status: 405 },
  /** No device with that id is known. */
  E_UNKNOWN_DEVICE: { status: 404 },
  /** A plain HTTP request to a WebSocket endpoint (`/mqtt`). */
  E_UPGRADE_REQUIRED: { status: 426 },
  /** The device has no command of that name. */
  E_UNKNOWN_COMMAND: { status: 404 },
  /** The payload is larger than the broker's maximum packet size. */
  E_PAYLOAD_TOO_LARGE: { status: 413 },
  /** Users exist and the request has no session or token, or a forged or expired one: log in, or send a token. */
  E_NOT_AUTHENTICATED: { status: 401 },
  /** The principal may not do this (publish here, see this device, send this command). */
  E_NOT_AUTHORIZED: { status: 403 },
  /** A browser page from another origin; `--allow-origin` admits it. */
  E_FORBIDDEN_ORIGIN: { status: 403 },
  /** `Host` names none of this server's names; `--public-url` adds one. */
  E_UNKNOWN_HOST: { status: 421 },
  /** A bound of docs/limits.md was reached (socket connections, for one). */
  E_LIMIT_REACHED: { status: 503 },
  /** The broker refused or failed the publish. */
  E_PUBLISH_FAILED: { status: 502 },
  /** The message has MQTT 5 properties, and the broker speaks MQTT 3.1.1 (the embedded one always does). */
  E_MQTT5_REQUIRED: { status: 400 },
  /** The external broker (`--broker`) is not connected now; Pulseboard is reconnecting. */
  E_BROKER_UNAVAILABLE: { status: 503 },
  /** The device did not answer a command sent as an MQTT 5 request in time. */
  E_DEVICE_TIMEOUT: { status: 504 },
  /** Something failed inside the server; its log has the details. */
  E_INTERNAL: { status: 500 },
  /** Made by a client, never sent: it is not connected to the server. */
  E_NOT_CONNECTED: { status: null },
  /** Made by a client, never sent: the server did not answer in time. */
  E_NO_ANSWER: { status: null },
} as const satisfies Record<string, { status: number | null }>

export type ErrorCode = keyof typeof ERRORS

/** The codes by name, for `ErrorCodes.E_INVALID_TOPIC` at call sites. */
export const ErrorCodes = Object.fromEntries(Object.keys(ERRORS).map((code) => [code, code])) as { readonly [C in ErrorCode]: C }

export interface ErrorBody {
  code: ErrorCode
  message: string
}

/** The one shape of every socket.io acknowledgement. */
export type Ack<T extends object = object> = ({ ok: true } & T) | { ok: false; error: ErrorBody }

/** An HTTP error answer: `{ error: { code, message } }`, with `ERRORS[code].status`. */
export interface ErrorReply {
  error: ErrorBody
}

export function fail(code: ErrorCode, message: string): { ok: false; error: ErrorBody } {
  return { ok: false, error: { code, message } }
}

/** An error that carries its catalogue code across a boundary (a MessageSource, a route). */
export class CodedError extends Error {
  override name = 'CodedError'
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message)
  }
}
