import type { IncomingHttpHeaders } from 'node:http'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { z } from 'zod'
import { CodedError, type ErrorReply, type LiveAuth, type Principal, type SessionInfo } from '../protocol/index.ts'
import { Access } from '../auth/access.ts'
import { sendError } from './http.ts'

/** The dashboard's session cookie. */
export const SESSION_COOKIE = 'pulseboard_session'

/** Where a request or handshake presents itself: headers, the peer address, and a socket's `auth.token`. */
export interface Presented {
  headers: IncomingHttpHeaders
  address: string
  token?: string | undefined
}

/**
 * Who a request or socket is: a bearer token (`Authorization: Bearer`, or a socket's
 * `auth.token`), else the session cookie, else anonymous. A token that does not check out is
 * refused outright; a session that is unknown, forged or expired counts as none.
 */
export async function identify(access: Access, { headers, address, token }: Presented): Promise<Principal> {
  if (!access.enabled) return access.anonymous()
  const bearer = token ?? /^Bearer\s+(\S+)$/i.exec(headers.authorization ?? '')?.[1]
  if (bearer !== undefined) {
    const who = await access.token(bearer, address)
    if ('refused' in who) throw new CodedError('E_NOT_AUTHENTICATED', `token refused: ${who.reason}`)
    return who
  }
  const session = cookieOf(headers.cookie, SESSION_COOKIE)
  return (session !== undefined && access.session(session)?.principal) || access.anonymous()
}

/** A socket's handshake: who it is, or a refusal that reaches the client as `connect_error`. */
export async function identifySocket(access: Access, handshake: { auth: LiveAuth; headers: IncomingHttpHeaders; address: string }): Promise<Principal> {
  // `auth` is whatever the client sent: a token that is not a string is refused here, not deep in a hash function
  const token: unknown = handshake.auth.token
  if (access.enabled && token !== undefined && typeof token !== 'string') {
    throw new CodedError('E_NOT_AUTHENTICATED', `auth.token must be a string (pbt_<name>.<secret>), got ${Array.isArray(token) ? 'an array' : typeof token}`)
  }
  const principal = await identify(access, { headers: handshake.headers, address: handshake.address, token: token as string | undefined })
  // without users the server is open: its anonymous principal has no role, and the Policy allows everything
  if (access.enabled && !Access.rights(principal.role).read) {
    throw new CodedError('E_NOT_AUTHENTICATED', 'this server has users: log in to the dashboard, or pass a token (auth.token, --token or PULSEBOARD_TOKEN)')
  }
  return principal
}

function cookieOf(header: string | undefined, name: string): string | undefined {
  for (const part of header?.split(';') ?? []) {
    const eq = part.indexOf('=')
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim()
  }
  return undefined
}

const loginBody = z.object({ user: z.string().min(1).max(64), password: z.string().min(1).max(1024) }).strict()
type Login = FastifyRequest<{ Body: { user: string; password: string } }>

/** Paths anyone may ask for, logged in or not: what the login page needs, and health for monitors. */
const PUBLIC_API = new Set(['/api/login', '/api/logout', '/api/session', '/api/health'])

/**
 * Logging in and out, and the gate in front of `/api` and `/metrics`: once users exist, those
 * need a session or a token whose role may read. The dashboard's files stay public, so the
 * login page can load.
 */
export function registerAccess(fastify: FastifyInstance, access: Access): void {
  fastify.addHook('preHandler', async (req, reply) => {
    const pathname = req.url.split('?')[0]!
    if (!(pathname.startsWith('/api/') || pathname === '/metrics')) return
    // without users, everyone may read (the anonymous principal has no role then, and the Policy allows all)
    const allowed = !access.enabled || Access.rights(req.principal.role).read
    // monitors and container health checks may ask without a key; they learn that it runs, nothing more
    if (pathname === '/api/health' && !allowed) return reply.send({ status: 'ok' })
    if (PUBLIC_API.has(pathname)) return
    if (!allowed) {
      return sendError(reply, 'E_NOT_AUTHENTICATED', 'this server has users: log in at / or send Authorization: Bearer <token>')
    }
  })

  fastify.get('/api/session', async (req): Promise<SessionInfo> => ({
    required: access.enabled,
    user: req.principal.kind === 'anonymous' ? null : req.principal.name,
    role: req.principal.role,
    rights: access.enabled ? Access.rights(req.principal.role) : Access.rights('admin'),
  }))

  fastify.post('/api/login', { schema: { body: loginBody } }, async (req: Login, reply) => {
    if (!access.enabled) return sendError(reply, 'E_INVALID_REQUEST', 'this server has no users yet; add one with `pulseboard users add <name>`')
    const result = await access.login(req.body.user, req.body.password, req.ip)
    if ('refused' in result) {
      req.log.info({ user: req.body.user, address: req.ip }, `login refused: ${result.reason}`)
      if (result.retryAfterMs !== undefined) {
        // 429 Too Many Requests (RFC 6585), not the catalogue's 503 for E_LIMIT_REACHED: the server is fine, this client must wait
        void reply.header('retry-after', String(Math.ceil(result.retryAfterMs / 1000)))
        return reply.code(429).send({ error: { code: 'E_LIMIT_REACHED', message: result.reason } } satisfies ErrorReply)
      }
      return sendError(reply, result.refused === 4 ? 'E_NOT_AUTHENTICATED' : 'E_NOT_AUTHORIZED', result.reason)
    }
    setSession(req, reply, result.id, Math.floor((result.expires - Date.now()) / 1000))
    return { user: result.principal.name, role: result.principal.role, rights: Access.rights(result.principal.role) }
  })

  fastify.post('/api/logout', async (req, reply) => {
    const session = cookieOf(req.headers.cookie, SESSION_COOKIE)
    if (session !== undefined) access.logout(session)
    setSession(req, reply, '', 0)
    return reply.code(204).send()
  })
}

/** HttpOnly (no script reads it), SameSite=Strict (no other site sends it), Secure under TLS. */
function setSession(req: FastifyRequest, reply: FastifyReply, value: string, maxAgeSeconds: number): void {
  const secure = req.protocol === 'https' ? '; Secure' : ''
  void reply.header('set-cookie', `${SESSION_COOKIE}=${value}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${maxAgeSeconds}${secure}`)
}
