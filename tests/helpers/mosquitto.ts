import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { MOSQUITTO, freePort, waitForPort } from '../../bench/mosquitto.ts'

export interface MosquittoOptions {
  /** Users and passwords for a password file (mosquitto_passwd); without any, anonymous clients are let in. */
  users?: Record<string, string>
  /** A certificate and key (PEM files) for an MQTT over TLS listener, `tlsPort`. */
  tls?: { certFile: string; keyFile: string }
  /** A WebSocket listener, `wsPort`. */
  websockets?: boolean
}

export interface Mosquitto {
  port: number
  url: string
  tlsPort?: number
  wsPort?: number
  /** Lines of mosquitto's own log (connections, refusals). */
  log(): string
  /** Stops it (SIGTERM) and waits for it to exit; `start` brings it back on the same ports. */
  stop(): Promise<void>
  start(): Promise<void>
  close(): Promise<void>
}

/**
 * Debian's mosquitto 2.0 on free ports of 127.0.0.1, with a config written for this test: each
 * test gets its own broker, so nothing of one leaks into another.
 */
export async function startMosquitto(opts: MosquittoOptions = {}): Promise<Mosquitto> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pulseboard-mosquitto-'))
  const port = await freePort()
  const tlsPort = opts.tls ? await freePort() : undefined
  const wsPort = opts.websockets ? await freePort() : undefined
  const logFile = path.join(dir, 'mosquitto.log')
  const lines = [`per_listener_settings false`, `persistence false`, `log_dest file ${logFile}`, `log_type all`, `listener ${port} 127.0.0.1`]
  if (tlsPort !== undefined) lines.push(`listener ${tlsPort} 127.0.0.1`, `certfile ${opts.tls!.certFile}`, `keyfile ${opts.tls!.keyFile}`)
  if (wsPort !== undefined) lines.push(`listener ${wsPort} 127.0.0.1`, 'protocol websockets')
  if (opts.users && Object.keys(opts.users).length > 0) {
    const passwords = path.join(dir, 'passwords')
    for (const [user, password] of Object.entries(opts.users)) {
      execFileSync('mosquitto_passwd', [...(fs.existsSync(passwords) ? [] : ['-c']), '-b', passwords, user, password])
    }
    lines.push('allow_anonymous false', `password_file ${passwords}`)
  } else {
    lines.push('allow_anonymous true')
  }
  const conf = path.join(dir, 'mosquitto.conf')
  fs.writeFileSync(conf, lines.join('\n') + '\n')
  // mosquitto run as root drops to the `mosquitto` user, which must read the config and write the log
  fs.chmodSync(dir, 0o777)
  for (const file of fs.readdirSync(dir)) fs.chmodSync(path.join(dir, file), 0o644)

  let child: ChildProcess | null = null
  let exited: Promise<void> = Promise.resolve()
  async function start(): Promise<void> {
    const c = spawn(MOSQUITTO, ['-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] })
    let stderr = ''
    c.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
    child = c
    exited = new Promise((resolve) => c.once('exit', () => resolve()))
    await Promise.race([
      Promise.all([port, tlsPort, wsPort].filter((p) => p !== undefined).map((p) => waitForPort(p, 5000))),
      exited.then(() => {
        throw new Error(`mosquitto exited at start: ${stderr.trim() || read(logFile)}`)
      }),
    ])
  }
  async function stop(): Promise<void> {
    if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
    await exited
    child = null
  }
  await start()
  return {
    port,
    url: `mqtt://127.0.0.1:${port}`,
    ...(tlsPort !== undefined && { tlsPort }),
    ...(wsPort !== undefined && { wsPort }),
    log: () => read(logFile),
    stop,
    start,
    async close() {
      await stop()
      fs.rmSync(dir, { recursive: true, force: true })
    },
  }
}

function read(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8')
  } catch {
    return ''
  }
}
