/**
 * Who is asking, and what they may do. Every MQTT client, every socket
 * (`socket.data.principal`) and every HTTP request carries a Principal, and
 * every publish, subscription, device listing and command is asked of the one
 * Policy. Until users are configured the policy allows everything.
 */

/** What a principal may do: the device role is MQTT only; viewers read, operators also send, admins manage. */
export const ROLES = ['admin', 'operator', 'viewer', 'device'] as const
export type Role = (typeof ROLES)[number]

export interface Principal {
  /** How it was identified: no credentials, a user's password or session, a device credential, an API token. */
  kind: 'anonymous' | 'user' | 'device' | 'token'
  /** User name, device id or token name; `anonymous` for anonymous. */
  name: string
  /** What it may do; null when nothing is allowed (anonymous once users exist). */
  role: Role | null
  /** The MQTT client id of this connection, which ACL rules may name as `%c`. */
  clientId?: string
}

export interface Policy {
  /** May publish to this topic (MQTT, or through a socket). */
  canPublish(principal: Principal, topic: string): boolean
  /** May subscribe to this filter, or receive a message on this topic (a topic is a filter without wildcards). */
  canSubscribe(principal: Principal, filterOrTopic: string): boolean
  /** May see this device: in listings, history and device events. */
  canSeeDevice(principal: Principal, device: string): boolean
  /** May send this device a command. */
  canCommand(principal: Principal, device: string): boolean
}

/** What a role may do in the dashboard, so it can hide what it may not use. */
export interface Rights {
  /** See devices, topics, messages and history. */
  read: boolean
  /** Publish, chat and send commands; rename and forget devices. */
  send: boolean
  /** Everything, users included. */
  manage: boolean
}

/** `GET /api/session`: whether the server has users, and who this browser is logged in as. */
export interface SessionInfo {
  required: boolean
  user: string | null
  role: Role | null
  rights: Rights
}

/** Whoever connects without credentials. */
export const ANONYMOUS: Principal = Object.freeze({ kind: 'anonymous', name: 'anonymous', role: null })

/** The policy of a server without users: everyone may do everything. */
export const OPEN_POLICY: Policy = Object.freeze({
  canPublish: () => true,
  canSubscribe: () => true,
  canSeeDevice: () => true,
  canCommand: () => true,
})
