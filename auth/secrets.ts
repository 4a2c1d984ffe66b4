import { randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto'

/**
 * scrypt parameters: N = 2^14, r = 8, p = 1, as OWASP's minimum for scrypt; about 50 ms and
 * 16 MiB on a Raspberry Pi 4, a few ms on a desktop. They are written into each hash, so a
 * later version can raise them and still check old entries.
 */
const PARAMS = { N: 2 ** 14, r: 8, p: 1 } as const
const KEY_BYTES = 32

function derive(secret: string, salt: Buffer, opts: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scrypt(secret, salt, KEY_BYTES, { ...opts, maxmem: 64 * 1024 * 1024 }, (err, key) => (err ? reject(err) : resolve(key)))
  })
}

/** `scrypt$N$r$p$<salt base64>$<key base64>`: a fresh 16-byte salt per entry. */
export async function hashSecret(secret: string): Promise<string> {
  const salt = randomBytes(16)
  const key = await derive(secret, salt, PARAMS)
  return ['scrypt', PARAMS.N, PARAMS.r, PARAMS.p, salt.toString('base64'), key.toString('base64')].join('$')
}

/** True when `secret` is the one `hash` was made from; compared in constant time. A malformed hash never matches. */
export async function verifySecret(secret: string, hash: string): Promise<boolean> {
  const parts = hash.split('$')
  if (parts.length !== 6 || parts[0] !== 'scrypt') return false
  const [N, r, p] = parts.slice(1, 4).map(Number) as [number, number, number]
  const salt = Buffer.from(parts[4]!, 'base64')
  const expected = Buffer.from(parts[5]!, 'base64')
  if (!(N >= 2 && r >= 1 && p >= 1) || expected.length !== KEY_BYTES) return false
  const key = await derive(secret, salt, { N, r, p })
  return timingSafeEqual(key, expected)
}

/** A new random secret: a device password or the secret part of a token, URL-safe. */
export function newSecret(bytes = 24): string {
  return randomBytes(bytes).toString('base64url')
}

/** The form of a hash, for the config file's schema. */
export const HASH_PATTERN = /^scrypt\$\d+\$\d+\$\d+\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$/
