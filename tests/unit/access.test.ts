import { chmodSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { ConfigError, emptyConfig, loadConfig, saveConfig, type AccessConfig } from '../../auth/config.ts'
import { hashSecret, newSecret, verifySecret } from '../../auth/secrets.ts'
import { Access } from '../../auth/access.ts'

let dir: string
beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'pulseboard-access-unit-'))
})
afterEach(() => {
  rmSync(dir, { recursive: true, force: true })
})

/** A hash that passes the schema; made once, scrypt is not free. */
const HASH = 'scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA='

describe('loadConfig', () => {
  const write = (json: unknown) => {
    const file = path.join(dir, 'pulseboard.json')
    writeFileSync(file, typeof json === 'string' ? json : JSON.stringify(json))
    return file
  }
  const problem = (json: unknown) => {
    const file = write(json)
    try {
      loadConfig(file)
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError)
      const message = (err as Error).message
      // every message starts with the file
      expect(message.startsWith(`${file}: `)).toBe(true)
      return message.slice(file.length + 2)
    }
    throw new Error('the config was accepted')
  }

  it('names the file and the field of what is wrong, and what it must be', () => {
    expect(problem({ users: { alice: { role: 'boss', password: HASH } } })).toBe('users.alice.role must be one of "admin", "operator", "viewer", "device"')
    expect(problem({ users: { alice: { role: 'admin', password: 'hunter22' } } })).toMatch(/^users\.alice\.password must be a hash written by pulseboard .*never a password in clear$/)
    expect(problem({ users: { alice: { role: 'admin' } } })).toBe('users.alice.password is missing (string)')
    expect(problem({ users: { 'a/b': { role: 'admin', password: HASH } } })).toMatch(/^users\.a\/b: "a\/b" is not a valid name; it must be 1 to 64 letters/)
    expect(problem({ devices: { d1: { password: HASH, role: 'admin' } } })).toBe('devices.d1 has unknown field "role"')
    expect(problem({ roles: { viewer: [{ access: 'read', topic: 'a/#/b' }] } })).toMatch(/^roles\.viewer\.0\.topic must be an MQTT topic filter/)
    expect(problem({ roles: { viewer: [{ access: 'rw', topic: 'a' }] } })).toBe('roles.viewer.0.access must be one of "read", "write", "readwrite"')
    expect(problem({ sessionHours: 0 })).toBe('sessionHours must be more than 0 hours')
    expect(problem({ usres: {} })).toBe('the top level has unknown field "usres"')
    expect(problem([])).toBe('the top level must be an object')
    expect(problem('{"users": ')).toMatch(/^not valid JSON \(.+\); fix it or move it aside$/)
  })

  it('says how to create a missing file, and gives an empty config when told a missing one is fine', () => {
    const file = path.join(dir, 'none.json')
    expect(() => loadConfig(file)).toThrow(`${file}: no such file; create it with \`pulseboard users add <name> --config ${file}\``)
    expect(loadConfig(file, { missingOk: true })).toEqual(emptyConfig())
  })

  it('fills the defaults', () => {
    const config = loadConfig(write({ users: { alice: { role: 'viewer', password: HASH } } }))
    expect(config).toEqual({ users: { alice: { role: 'viewer', password: HASH } }, devices: {}, tokens: {}, anonymous: { role: null }, roles: {}, sessionHours: 12 })
  })
})

describe('hashSecret and verifySecret', () => {
  it('round-trips, with a fresh salt each time, and refuses a wrong secret', async () => {
    const a = await hashSecret('correct horse')
    const b = await hashSecret('correct horse')
    expect(a).toMatch(/^scrypt\$16384\$8\$1\$[A-Za-z0-9+/=]{24}\$[A-Za-z0-9+/=]{44}$/)
    expect(a).not.toBe(b)
    expect(await verifySecret('correct horse', a)).toBe(true)
    expect(await verifySecret('correct horse', b)).toBe(true)
    expect(await verifySecret('correct hors', a)).toBe(false)
    expect(await verifySecret('', a)).toBe(false)
  })

  it('fails for a tampered or malformed hash', async () => {
    const hash = await hashSecret('s3cret-s3cret')
    const parts = hash.split('$')
    const key = Buffer.from(parts[5]!, 'base64')
    key[0]! ^= 1
    const tampered = [...parts.slice(0, 5), key.toString('base64')].join('$')
    expect(await verifySecret('s3cret-s3cret', tampered)).toBe(false)
    const otherSalt = [...parts.slice(0, 4), Buffer.alloc(16, 7).toString('base64'), parts[5]].join('$')
    expect(await verifySecret('s3cret-s3cret', otherSalt)).toBe(false)
    const cheaper = ['scrypt', '1024', ...parts.slice(2)].join('$')
    expect(await verifySecret('s3cret-s3cret', cheaper)).toBe(false)
    for (const bad of ['', 'scrypt', 'bcrypt$16384$8$1$a$b', `${hash}$extra`, hash.replace(/\$[^$]+$/, '$AAAA'), 'scrypt$0$8$1$AAAA$' + 'A'.repeat(44)]) {
      expect(await verifySecret('s3cret-s3cret', bad), bad).toBe(false)
    }
  })

  it('makes URL-safe secrets', () => {
    expect(newSecret()).toMatch(/^[A-Za-z0-9_-]{32}$/)
    expect(newSecret()).not.toBe(newSecret())
  })
})

describe('saveConfig', () => {
  const config = (): AccessConfig => ({ ...emptyConfig(), users: { alice: { role: 'admin', password: HASH } } })

  it('writes a file only its owner may read, that loads back', () => {
    const file = path.join(dir, 'pulseboard.json')
    saveConfig(file, config())
    expect(statSync(file).mode & 0o777).toBe(0o600)
    expect(loadConfig(file)).toEqual(config())
    // replacing a file that was world-readable leaves it owner-only too
    chmodSync(file, 0o644)
    saveConfig(file, config())
    expect(statSync(file).mode & 0o777).toBe(0o600)
  })

  it('replaces the file in one rename: a new inode, no temporary file left', () => {
    const file = path.join(dir, 'pulseboard.json')
    saveConfig(file, config())
    const before = statSync(file).ino
    saveConfig(file, { ...config(), sessionHours: 1 })
    expect(statSync(file).ino).not.toBe(before)
    expect(readdirSync(dir)).toEqual(['pulseboard.json'])
  })

  it('leaves the old file whole when the new config cannot be written', () => {
    const file = path.join(dir, 'pulseboard.json')
    saveConfig(file, config())
    const before = readFileSync(file, 'utf8')
    const bad = { ...config(), users: { alice: { role: 'boss', password: HASH } } } as unknown as AccessConfig
    expect(() => saveConfig(file, bad)).toThrow()
    expect(readFileSync(file, 'utf8')).toBe(before)
    expect(readdirSync(dir)).toEqual(['pulseboard.json'])
  })

  it('does not reuse a temporary file a crash left behind, with its mode', () => {
    const file = path.join(dir, 'pulseboard.json')
    const stale = path.join(dir, `.pulseboard.json.${process.pid}.tmp`)
    writeFileSync(stale, 'half a config', { mode: 0o666 })
    chmodSync(stale, 0o666)
    saveConfig(file, config())
    expect(statSync(file).mode & 0o777).toBe(0o600)
    expect(readdirSync(dir)).toEqual(['pulseboard.json'])
  })
})

describe('Access', () => {
  it('is open without credentials, and closed once there is one', async () => {
    const open = new Access(emptyConfig())
    expect(open.enabled).toBe(false)
    expect(await open.mqtt(undefined, undefined, 'c', '1.2.3.4')).toMatchObject({ kind: 'anonymous' })
    expect(open.policy.canPublish(open.anonymous(), 'anything')).toBe(true)

    const closed = new Access({ ...emptyConfig(), tokens: { t: { role: 'viewer', secret: HASH } } })
    expect(closed.enabled).toBe(true)
    expect(await closed.mqtt(undefined, undefined, 'c', '1.2.3.4')).toMatchObject({ refused: 5 })
    expect(closed.policy.canPublish(closed.anonymous(), 'anything')).toBe(false)
    expect(closed.policy.canSubscribe(closed.anonymous(), '#')).toBe(false)
  })

  it('ends a session when it expires, when its user is removed or changes role', async () => {
    const password = await hashSecret('pw-alice-1')
    const base = { ...emptyConfig(), users: { alice: { role: 'operator' as const, password }, bob: { role: 'viewer' as const, password } } }
    const access = new Access({ ...base, sessionHours: 12 })
    const alice = await access.login('alice', 'pw-alice-1', 'a')
    const bob = await access.login('bob', 'pw-alice-1', 'a')
    if ('refused' in alice || 'refused' in bob) throw new Error('login refused')
    expect(access.session(alice.id)?.principal).toMatchObject({ kind: 'user', name: 'alice', role: 'operator' })
    expect(access.session('forged')).toBeNull()
    access.reload({ ...base, users: { alice: { role: 'viewer', password } } })
    expect(access.session(alice.id)).toBeNull()
    expect(access.session(bob.id)).toBeNull()

    const short = new Access({ ...base, sessionHours: 1 / 3_600_000 }) // one millisecond
    const brief = await short.login('alice', 'pw-alice-1', 'a')
    if ('refused' in brief) throw new Error('login refused')
    await new Promise((resolve) => setTimeout(resolve, 5))
    expect(short.session(brief.id)).toBeNull()
  })

  it('refuses a wrong password with 4, then backs off with 5 and a wait, even for the right one', async () => {
    const access = new Access({ ...emptyConfig(), users: { alice: { role: 'admin', password: await hashSecret('right-pw') } } })
    for (let i = 0; i < 4; i++) expect(await access.mqtt('alice', Buffer.from('wrong'), 'c', '10.0.0.1')).toMatchObject({ refused: 4 })
    const refused = await access.mqtt('alice', Buffer.from('right-pw'), 'c', '10.0.0.1')
    expect(refused).toMatchObject({ refused: 5, reason: 'too many failed logins; try again in 1 s' })
    expect((refused as { retryAfterMs: number }).retryAfterMs).toBeGreaterThan(0)
    // the name is backed off from any address, the address for any name
    expect(await access.login('alice', 'right-pw', '10.0.0.2')).toMatchObject({ refused: 5 })
    expect(await access.login('nobody', 'x', '10.0.0.1')).toMatchObject({ refused: 5 })
  })
})
