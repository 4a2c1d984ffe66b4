import { randomBytes, scryptSync } from 'node:crypto'

/**
 * A hash in the form hashSecret writes, at a lower scrypt cost (N = 2^10): verifySecret reads the
 * cost from the hash, and the tests log in dozens of times. The users the commands add cost the full N = 2^14.
 */
export function quickHash(secret: string): string {
  const salt = randomBytes(16)
  return ['scrypt', 1024, 8, 1, salt.toString('base64'), scryptSync(secret, salt, 32, { N: 1024, r: 8, p: 1 }).toString('base64')].join('$')
}
