import { spawn, spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { freePort, waitForPort } from './mosquitto.ts'

export interface RedisServer {
  /** The redis-server process, for its CPU and memory. */
  pid: number
  port: number
  url: string
  close(): Promise<void>
}

/** Whether Debian's redis-server is on the PATH. */
export function redisInstalled(): boolean {
  return spawnSync('redis-server', ['--version'], { stdio: 'ignore' }).status === 0
}

/** Debian's redis-server on a free port of 127.0.0.1, without persistence, in a directory of its own. */
export async function startRedis(): Promise<RedisServer> {
  const port = await freePort()
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pulseboard-redis-'))
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' })
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  child.once('error', () => {})
  const close = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
    await exited
    fs.rmSync(dir, { recursive: true, force: true })
  }
  try {
    await Promise.race([
      waitForPort(port, 5000),
      exited.then(() => {
        throw new Error('redis-server exited at start')
      }),
    ])
  } catch (err) {
    await close()
    throw err
  }
  return { pid: child.pid!, port, url: `redis://127.0.0.1:${port}`, close }
}
