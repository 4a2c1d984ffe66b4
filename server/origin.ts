import os from 'node:os'
import net from 'node:net'
import type { IncomingMessage } from 'node:http'

export interface OriginCheckOptions {
  /** Origins besides this server's own whose pages may connect (`--allow-origin`), e.g. `https://dash.example.com`. */
  allowOrigins?: readonly string[]
  /** The URL people use to reach this server when it is not an IP address or this machine's name (`--public-url`). */
  publicUrl?: string
}

export interface Refusal {
  status: 403 | 421
  code: 'E_FORBIDDEN_ORIGIN' | 'E_UNKNOWN_HOST'
  message: string
}

/**
 * Decides, from its headers alone, whether a request may reach this server.
 *
 * `Host` must be an IP literal, `localhost`, this machine's name, or the host
 * of `--public-url`. A page on evil.example that has made its name resolve to
 * this machine (DNS rebinding) is then refused, although its requests are
 * same-origin to the browser.
 *
 * A browser sends `Origin` with every WebSocket and cross-origin request. It
 * must be this server's own (the host the dashboard was served from, which is
 * the request's `Host`), the origin of `--public-url`, or one of
 * `--allow-origin`. Clients that send no `Origin` (the CLI, Python, mqtt.js in
 * Node, devices) are not browsers and are not asked.
 */
export function createOriginCheck(opts: OriginCheckOptions): (req: IncomingMessage) => Refusal | null {
  const hostname = os.hostname().toLowerCase()
  const names = new Set(['localhost', hostname, `${hostname}.local`])
  const allowed = new Set((opts.allowOrigins ?? []).map((o) => new URL(o).origin))
  if (opts.publicUrl) {
    const url = new URL(opts.publicUrl)
    names.add(url.hostname.toLowerCase())
    allowed.add(url.origin)
  }

  return (req) => {
    const host = (req.headers.host ?? '').toLowerCase()
    const name = hostOf(host)
    if (!(net.isIP(name) || names.has(name) || name.endsWith('.localhost'))) {
      return {
        status: 421,
        code: 'E_UNKNOWN_HOST',
        message: `Host ${JSON.stringify(host)} is not a name of this server; if that is how people reach it, start Pulseboard with --public-url ${schemeOf(req)}://${host}`,
      }
    }
    const origin = req.headers.origin
    if (origin === undefined) return null
    let parsed: URL | null = null
    try {
      parsed = new URL(origin)
    } catch {
      // `Origin: null` (a sandboxed frame, a file:// page) and garbage alike
    }
    if (parsed && (parsed.host === host || allowed.has(parsed.origin))) return null
    return {
      status: 403,
      code: 'E_FORBIDDEN_ORIGIN',
      message: `pages from ${origin} may not connect to this server; allow them with --allow-origin ${origin}`,
    }
  }
}

/** The name part of a Host header: `[::1]:5000` → `::1`, `example:80` → `example`. */
function hostOf(host: string): string {
  if (host.startsWith('[')) return host.slice(1, host.indexOf(']'))
  const colon = host.lastIndexOf(':')
  return colon === -1 ? host : host.slice(0, colon)
}

/** The scheme people used: a TLS proxy in front says so in `X-Forwarded-Proto`. */
function schemeOf(req: IncomingMessage): 'http' | 'https' {
  const forwarded = req.headers['x-forwarded-proto']
  return (Array.isArray(forwarded) ? forwarded[0] : forwarded)?.split(',')[0]?.trim() === 'https' ? 'https' : 'http'
}
