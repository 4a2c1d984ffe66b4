import { formatDuration } from './format.ts'
import type { MessageProperties } from './protocol.ts'

/** Each user property as `name=value`, a name sent more than once once per value, in order. */
export function userPropertyPairs(props: MessageProperties | undefined): string[] {
  const pairs: string[] = []
  for (const [name, value] of Object.entries(props?.userProperties ?? {})) {
    for (const v of Array.isArray(value) ? value : [value]) pairs.push(`${name}=${v}`)
  }
  return pairs
}

/** Whether the envelope carried any MQTT 5 property at all. */
export function hasProperties(props: MessageProperties | undefined): props is MessageProperties {
  return props !== undefined && Object.values(props).some((v) => v !== undefined)
}

/** How many properties there are, each user property pair counted once. */
export function propertyCount(props: MessageProperties): number {
  const { userProperties: _, ...rest } = props
  return userPropertyPairs(props).length + Object.values(rest).filter((v) => v !== undefined).length
}

/** Correlation data as text, when its bytes are printable UTF-8 (they often are: a request id); else null. */
export function correlationText(base64: string): string | null {
  try {
    const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0))
    const text = new TextDecoder('utf-8', { fatal: true }).decode(bytes)
    // eslint-disable-next-line no-control-regex -- control characters are what make it binary
    return text !== '' && !/[\u0000-\u0008\u000e-\u001f\u007f]/.test(text) ? text : null
  } catch {
    return null
  }
}

/** "45s", "5m", "1h 30m": how long the message stays valid. */
export const formatExpiry = (seconds: number): string => formatDuration(seconds).replace(/ 0\D+$/, '')
