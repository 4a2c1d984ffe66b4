import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import type { HealthReport } from '../protocol/health.ts'
import { packageRoot } from '../server/package.ts'
import { freePort } from './mosquitto.ts'

/** `pulseboard start` as a user runs it, in its own process, on free loopback ports. */
export interface PulseboardProcess {
  pid: number
  httpUrl: string
  mqttPort: number
  /** From launch to the first answer of `/api/health`, ms. */
  readyMs: number
  /** The `--data-dir`, or null with `--no-store`. */
  dataDir: string | null
  /** `GET /api/health`, given up after `timeoutMs` (default 5 s). */
  health(timeoutMs?: number): Promise<HealthReport>
  /** Whether the process has ended. */
  readonly exited: boolean
  /** SIGTERM, then SIGKILL after 30 s; removes the data directory when this module made it. */
  stop(): Promise<void>
}

export interface StartOptions {
  /** `sqlite`: `--data-dir` (a new temporary one unless `dataDir`); `memory`: `--no-store`. */
  store: 'sqlite' | 'memory'
  /** Use this data directory and leave it in place at `stop()`. */
  dataDir?: string
  /** More arguments for `pulseboard start`. */
  args?: string[]
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
const fromSources = import.meta.url.endsWith('.ts')
const cli = fromSources ? path.join(packageRoot, 'cli', 'pulseboard.ts') : path.join(packageRoot, 'dist', 'app', 'pulseboard.js')
/** The node flags of the command's #! line, given by hand when it runs from the sources through tsx. */
const SHEBANG_FLAGS = ['--max-semi-space-size=1']
const READY_TIMEOUT_MS = 30_000
const STOP_TIMEOUT_MS = 30_000
/** Lines of the server's output kept to explain a failure. */
const TAIL_LINES = 20

/** Starts `pulseboard start` and resolves once `/api/health` answers; on failure nothing is left running or on disk. */
export async function startPulseboard(opts: StartOptions): Promise<PulseboardProcess> {
  const since = performance.now()
  const [port, mqttPort] = [await freePort(), await freePort()]
  const ownDir = opts.store === 'sqlite' && opts.dataDir === undefined
  const dataDir = opts.store === 'memory' ? null : (opts.dataDir ?? mkdtempSync(path.join(tmpdir(), 'pulseboard-bench-')))
  const args = [
    'start',
    ...['--port', String(port), '--mqtt-port', String(mqttPort), '--host', '127.0.0.1', '--log-level', 'warn'],
    ...(dataDir === null ? ['--no-store'] : ['--data-dir', dataDir]),
    ...(opts.args ?? []),
  ]
  const child = fromSources
    ? spawn(process.execPath, [...SHEBANG_FLAGS, '--import', 'tsx', cli, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    : spawn(cli, args, { stdio: ['ignore', 'pipe', 'pipe'] })
  // what it prints is read (a full pipe would block it), and the last lines kept for an error message
  const tail: string[] = []
  for (const stream of [child.stdout, child.stderr]) {
    stream.setEncoding('utf8')
    stream.on('data', (chunk: string) => {
      tail.push(...chunk.split('\n').filter(Boolean))
      tail.splice(0, Math.max(0, tail.length - TAIL_LINES))
    })
  }
  let exited = false
  const exit = new Promise<void>((resolve) =>
    child.once('exit', () => {
      exited = true
      resolve()
    }),
  )
  child.once('error', () => {})
  const httpUrl = `http://127.0.0.1:${port}`
  const removeDir = () => {
    if (ownDir && dataDir !== null) rmSync(dataDir, { recursive: true, force: true })
  }
  const stop = async () => {
    if (!exited) {
      child.kill('SIGTERM')
      const killer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS)
      await exit
      clearTimeout(killer)
    }
    removeDir()
  }
  try {
    for (;;) {
      if (exited) throw new Error(`pulseboard start exited before serving: ${tail.slice(-3).join(' | ') || 'no output'}`)
      if (performance.now() - since > READY_TIMEOUT_MS) throw new Error(`pulseboard start did not answer /api/health within ${READY_TIMEOUT_MS / 1000} s`)
      const ok = await fetch(`${httpUrl}/api/health`, { signal: AbortSignal.timeout(1000) }).then(
        (r) => r.ok,
        () => false,
      )
      if (ok) break
      await sleep(5)
    }
  } catch (err) {
    await stop()
    throw err
  }
  return {
    pid: child.pid!,
    httpUrl,
    mqttPort,
    readyMs: Math.round(performance.now() - since),
    dataDir,
    get exited() {
      return exited
    },
    async health(timeoutMs = 5000) {
      const res = await fetch(`${httpUrl}/api/health`, { signal: AbortSignal.timeout(timeoutMs) })
      if (!res.ok) throw new Error(`/api/health answered ${res.status}`)
      return (await res.json()) as HealthReport
    },
    stop,
  }
}
