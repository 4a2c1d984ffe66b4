import { spawn, type ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'

export const MOSQUITTO = '/usr/sbin/mosquitto'

export function mosquittoInstalled(): boolean {
  return fs.existsSync(MOSQUITTO)
}

/** Starts Debian's mosquitto on a free loopback port, anonymous, for side-by-side runs. */
export async function startMosquitto(): Promise<{ pid: number; port: number; stop(): Promise<void> }> {
  const port = await freePort()
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pulseboard-bench-'))
  const conf = path.join(dir, 'mosquitto.conf')
  fs.writeFileSync(conf, `listener ${port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 100000\n`)
  const child: ChildProcess = spawn(MOSQUITTO, ['-c', conf], { stdio: 'ignore' })
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  await waitForPort(port, 5000)
  return {
    pid: child.pid!,
    port,
    async stop() {
      child.kill('SIGTERM')
      await exited
      fs.rmSync(dir, { recursive: true, force: true })
    },
  }
}

/** A port nobody listens on now, on loopback. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo
      server.close(() => resolve(port))
    })
    server.once('error', reject)
  })
}

export async function waitForPort(port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, '127.0.0.1', () => (socket.destroy(), resolve(true)))
      socket.once('error', () => resolve(false))
    })
    if (ok) return
    if (Date.now() > deadline) throw new Error(`nothing listened on port ${port} within ${timeoutMs} ms`)
    await new Promise((r) => setTimeout(r, 50))
  }
}
