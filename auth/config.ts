import { closeSync, fsyncSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs'
import path from 'node:path'
import { z } from 'zod'
import { filterError } from '../protocol/topics.ts'
import { ROLES, type Role } from '../protocol/access.ts'
import { HASH_PATTERN } from './secrets.ts'

/** User names, device ids and token names: they fill `%u` in ACL patterns, so no `/`, `+` or `#`. */
export const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/
const name = z.string().regex(NAME_PATTERN, 'must be 1 to 64 letters, digits, ".", "_" or "-", starting with a letter or digit')
const hash = z.string().regex(HASH_PATTERN, 'must be a hash written by pulseboard (scrypt$...), never a password in clear')
const role = z.enum(ROLES)
const rule = z
  .object({
    access: z.enum(['read', 'write', 'readwrite']),
    topic: z
      .string()
      .min(1)
      .max(1024)
      .refine((t) => filterError(t.replaceAll('%u', 'u').replaceAll('%c', 'c')) === null, 'must be an MQTT topic filter (%u and %c may stand for a level)'),
  })
  .strict()
const rules = z.array(rule).max(1000)

const ConfigSchema = z
  .object({
    /** People: the dashboard, the API and (with their password) MQTT. */
    users: z.record(name, z.object({ role, password: hash, acl: rules.optional() }).strict()).default({}),
    /** MQTT credentials of devices: the user name is the device id. */
    devices: z.record(name, z.object({ password: hash, acl: rules.optional(), created: z.string().optional() }).strict()).default({}),
    /** API tokens for scripts and the CLIs: `Authorization: Bearer pbt_<name>.<secret>`. */
    tokens: z.record(name, z.object({ role, secret: hash, created: z.string().optional() }).strict()).default({}),
    /** What a client without credentials may do once users exist; none by default. */
    anonymous: z.object({ role: role.nullable() }).strict().default({ role: null }),
    /** Rules that replace a role's defaults (auth/acl.ts DEFAULT_RULES). */
    roles: z.object({ admin: rules, operator: rules, viewer: rules, device: rules }).partial().strict().default({}),
    /** How long a dashboard login lasts. */
    sessionHours: z.number('must be a number of hours').positive('must be more than 0 hours').max(24 * 365, 'must be at most a year (8760 hours)').default(12),
  })
  .strict()

export type AccessConfig = z.infer<typeof ConfigSchema>
export type { Role }

/** The config file is missing, unreadable or invalid: one line naming the file, the field and the fix. */
export class ConfigError extends Error {
  override name = 'ConfigError'
}

/** An empty config: no users, so Pulseboard runs open. */
export function emptyConfig(): AccessConfig {
  return ConfigSchema.parse({})
}

/** Reads and checks the config file; `missingOk` gives an empty one when the file does not exist yet. */
export function loadConfig(file: string, { missingOk = false } = {}): AccessConfig {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'ENOENT' && missingOk) return emptyConfig()
    if (code === 'ENOENT') throw new ConfigError(`${file}: no such file; create it with \`pulseboard users add <name> --config ${file}\``)
    throw new ConfigError(`${file}: cannot be read (${code ?? (err as Error).message}); check its permissions`)
  }
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (err) {
    throw new ConfigError(`${file}: not valid JSON (${(err as Error).message}); fix it or move it aside`)
  }
  const parsed = ConfigSchema.safeParse(json)
  if (!parsed.success) throw new ConfigError(`${file}: ${describeIssue(parsed.error.issues[0]!)}`)
  return parsed.data
}

/** One problem as a person fixes it: the field's path, then what it must be (`users.alice.role must be one of admin, ...`). */
function describeIssue(issue: z.core.$ZodIssue): string {
  const where = issue.path.length > 0 ? issue.path.map(String).join('.') : 'the top level'
  switch (issue.code) {
    case 'invalid_value':
      return `${where} must be one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}`
    case 'invalid_key':
      // a record key: say which name, and why it is not one
      return `${where}: ${JSON.stringify(String(issue.path.at(-1)))} is not a valid name; it ${issue.issues[0]?.message ?? 'is invalid'}`
    case 'unrecognized_keys':
      return `${where} has unknown field${issue.keys.length === 1 ? '' : 's'} ${issue.keys.map((k) => JSON.stringify(k)).join(', ')}`
    case 'invalid_type':
      return issue.message.endsWith('received undefined') ? `${where} is missing (${issue.expected})` : `${where} must be ${article(issue.expected)}`
    default:
      return `${where} ${issue.message.replace(/^Invalid input: /, '')}`
  }
}

const article = (type: string) => (/^[aeiou]/.test(type) ? `an ${type}` : `a ${type}`)

/** Writes the config atomically (a temporary file, then rename), readable by its owner only. */
export function saveConfig(file: string, config: AccessConfig): void {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`)
  // a new file (O_EXCL): one left by a crash keeps its own mode when reopened, and a link planted there is not followed
  rmSync(tmp, { force: true })
  const fd = openSync(tmp, 'wx', 0o600)
  try {
    writeSync(fd, `${JSON.stringify(ConfigSchema.parse(config), null, 2)}\n`)
    fsyncSync(fd)
  } catch (err) {
    closeSync(fd)
    rmSync(tmp, { force: true })
    throw err
  }
  closeSync(fd)
  renameSync(tmp, file)
}

/** Whether this config turns access control on: once there is a user, device or token, nobody is in without a key. */
export function hasCredentials(config: AccessConfig): boolean {
  return Object.keys(config.users).length + Object.keys(config.devices).length + Object.keys(config.tokens).length > 0
}
