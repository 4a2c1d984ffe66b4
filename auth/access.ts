import { createHash, randomBytes } from 'node:crypto'
import { ANONYMOUS, OPEN_POLICY, type Policy, type Principal, type Rights, type Role } from '../protocol/access.ts'
import { DEFAULT_RULES, allows, type AclRule } from './acl.ts'
import { Backoff } from './backoff.ts'
import { hasCredentials, type AccessConfig } from './config.ts'
import { verifySecret } from './secrets.ts'

/** An API token as the CLIs and scripts send it: `pbt_<name>.<secret>`. */
export const TOKEN_PREFIX = 'pbt_'
/** Sessions kept at once; the oldest go first. */
const MAX_SESSIONS = 10_000
/** Tokens whose check is remembered, so a script's every request does not cost a scrypt. */
const MAX_CACHED_TOKENS = 1000

/** Why a credential was refused, as MQTT's CONNACK says it: 4 bad user name or password, 5 not authorized. */
export type Refusal = { refused: 4 | 5; reason: string; retryAfterMs?: number }

export interface Session {
  id: string
  principal: Principal
  expires: number
}

/**
 * Who may do what, from the config file: credentials, sessions, login back-off and the one
 * Policy that the broker, the bridge and the API ask. Without users, devices or tokens it is
 * open, as Pulseboard was before it had users.
 */
export class Access {
  #config: AccessConfig
  readonly #sessions = new Map<string, Session>()
  readonly #tokens = new Map<string, Principal>()
  readonly #backoff = new Backoff()
  /** The topics a device published on, so a restricted user sees the devices whose topics it may read. */
  readonly #topicsOf: (device: string) => readonly string[]

  constructor(config: AccessConfig, topicsOf: (device: string) => readonly string[] = () => []) {
    this.#config = config
    this.#topicsOf = topicsOf
  }

  /** Once the config has any credential, nobody is in without one (unless `anonymous` has a role). */
  get enabled(): boolean {
    return hasCredentials(this.#config)
  }

  get config(): AccessConfig {
    return this.#config
  }

  /** A changed config file: new credentials and rules apply to the next check; sessions of removed users end. */
  reload(config: AccessConfig): void {
    this.#config = config
    this.#tokens.clear()
    for (const [id, s] of this.#sessions) if (!this.#current(s.principal)) this.#sessions.delete(id)
  }

  /** Whoever comes without credentials. */
  anonymous(): Principal {
    if (!this.enabled) return ANONYMOUS
    return { ...ANONYMOUS, role: this.#config.anonymous.role }
  }

  /** An MQTT CONNECT: a user's or a device's name and password, or none. */
  async mqtt(username: string | undefined, password: Buffer | undefined, clientId: string, address: string): Promise<Principal | Refusal> {
    if (!this.enabled) return { ...ANONYMOUS, clientId }
    if (username === undefined || username === '') {
      const anonymous = this.anonymous()
      return anonymous.role ? { ...anonymous, clientId } : { refused: 5, reason: 'this broker needs a user name and password' }
    }
    const checked = await this.#check(username, password?.toString('utf8') ?? '', address, ['user', 'device'])
    return 'refused' in checked ? checked : { ...checked, clientId }
  }

  /** A dashboard login: a new session, or why not. Devices cannot log in. */
  async login(username: string, password: string, address: string): Promise<Session | Refusal> {
    const checked = await this.#check(username, password, address, ['user'])
    if ('refused' in checked) return checked
    if (checked.role === 'device') return { refused: 5, reason: `${username} is an MQTT-only user (role device)` }
    const session = { id: randomBytes(32).toString('base64url'), principal: checked, expires: Date.now() + this.#config.sessionHours * 3_600_000 }
    this.#sessions.set(session.id, session)
    if (this.#sessions.size > MAX_SESSIONS) this.#sessions.delete(this.#sessions.keys().next().value!)
    return session
  }

  /** The principal of a live session, or null for an unknown, forged or expired one. */
  session(id: string): Session | null {
    const session = this.#sessions.get(id)
    if (!session) return null
    if (session.expires <= Date.now()) {
      this.#sessions.delete(id)
      return null
    }
    return session
  }

  logout(id: string): void {
    this.#sessions.delete(id)
  }

  /** An API token (`pbt_<name>.<secret>`): its principal, or why not. */
  async token(token: string, address: string): Promise<Principal | Refusal> {
    const digest = createHash('sha256').update(token).digest('base64')
    const known = this.#tokens.get(digest)
    if (known) return known
    const dot = token.lastIndexOf('.')
    if (!token.startsWith(TOKEN_PREFIX) || dot < 0) return { refused: 4, reason: 'not a Pulseboard token (pbt_<name>.<secret>)' }
    const checked = await this.#check(token.slice(TOKEN_PREFIX.length, dot), token.slice(dot + 1), address, ['token'])
    if ('refused' in checked) return checked
    this.#tokens.set(digest, checked)
    if (this.#tokens.size > MAX_CACHED_TOKENS) this.#tokens.delete(this.#tokens.keys().next().value!)
    return checked
  }

  /** The one Policy: a principal's rules are its own plus its role's. */
  readonly policy: Policy = {
    canPublish: (p, topic) => (this.enabled ? p.role !== null && p.role !== 'viewer' && this.#allows(p, 'write', topic) : true),
    canSubscribe: (p, filter) => (this.enabled ? p.role !== null && this.#allows(p, 'read', filter) : true),
    canSeeDevice: (p, device) => (this.enabled ? this.#seesDevice(p, device) : OPEN_POLICY.canSeeDevice(p, device)),
    canCommand: (p, device) => (this.enabled ? (p.role === 'operator' || p.role === 'admin') && this.#seesDevice(p, device) : true),
  }

  /** Rights that follow from the role alone, for the dashboard to hide what it may not use. */
  static rights(role: Role | null): Rights {
    return { read: role !== null && role !== 'device', send: role === 'operator' || role === 'admin', manage: role === 'admin' }
  }

  #seesDevice(p: Principal, device: string): boolean {
    if (p.role === null || p.role === 'device') return false
    if (p.role === 'admin') return true
    const topics = this.#topicsOf(device)
    return topics.length === 0 ? this.#allows(p, 'read', `devices/${device}/#`) : topics.some((t) => this.#allows(p, 'read', t))
  }

  #rules(p: Principal): readonly AclRule[] {
    if (p.role === null) return []
    const own = p.kind === 'user' ? this.#config.users[p.name]?.acl : p.kind === 'device' ? this.#config.devices[p.name]?.acl : undefined
    const ofRole = this.#config.roles[p.role] ?? DEFAULT_RULES[p.role]
    return own ? [...own, ...ofRole] : ofRole
  }

  #allows(p: Principal, access: 'read' | 'write', filterOrTopic: string): boolean {
    return allows(this.#rules(p), access, filterOrTopic, p.name, p.clientId ?? '')
  }

  /** Still what the config says: a session of a user since removed, or whose role changed, is not. */
  #current(p: Principal): boolean {
    return p.kind === 'user' && this.#config.users[p.name]?.role === p.role
  }

  async #check(name: string, secret: string, address: string, kinds: readonly ('user' | 'device' | 'token')[]): Promise<Principal | Refusal> {
    const wait = Math.max(this.#backoff.wait(`address:${address}`), this.#backoff.wait(`name:${name}`))
    if (wait > 0) return { refused: 5, reason: `too many failed logins; try again in ${Math.ceil(wait / 1000)} s`, retryAfterMs: wait }
    const found =
      (kinds.includes('user') && this.#config.users[name] && { kind: 'user' as const, role: this.#config.users[name].role, hash: this.#config.users[name].password }) ||
      (kinds.includes('device') && this.#config.devices[name] && { kind: 'device' as const, role: 'device' as const, hash: this.#config.devices[name].password }) ||
      (kinds.includes('token') && this.#config.tokens[name] && { kind: 'token' as const, role: this.#config.tokens[name].role, hash: this.#config.tokens[name].secret }) ||
      null
    // an unknown name costs the same scrypt as a known one, so timing does not tell which names exist
    const ok = await verifySecret(secret, found ? found.hash : UNKNOWN_NAME_HASH)
    if (!found || !ok) {
      this.#backoff.fail(`address:${address}`)
      this.#backoff.fail(`name:${name}`)
      return { refused: 4, reason: 'wrong user name or password' }
    }
    this.#backoff.succeed(`address:${address}`)
    this.#backoff.succeed(`name:${name}`)
    return { kind: found.kind, name, role: found.role }
  }
}

/** A hash of nothing anyone knows, checked for names that do not exist. */
const UNKNOWN_NAME_HASH = `scrypt$16384$8$1$${randomBytes(16).toString('base64')}$${randomBytes(32).toString('base64')}`
