// A throwaway PostgreSQL cluster for the tests and the bench: initdb in a temporary directory, the
// server on a free port of 127.0.0.1 (and a unix socket in that directory), trust authentication,
// fsync off. PostgreSQL refuses to run as root, so as root every command runs as the `postgres` user.
import { execFile, spawnSync } from 'node:child_process'
import { chownSync, chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import pg from 'pg'
import { freePort } from './mosquitto.ts'

export interface Postgres {
  readonly host: '127.0.0.1'
  readonly port: number
  /** The temporary directory: data, socket, log. */
  readonly dir: string
  /** The postmaster's process id (from `postmaster.pid` in the data directory); the server's other processes are its children. */
  postmasterPid(): number
  /** The URL of database `db` as the superuser `postgres`, with a password the server does not ask for. */
  url(db?: string): string
  /** A new, empty database of its own for one test; its URL. */
  createDatabase(): Promise<string>
  /** Runs one statement on database `db` (a URL from `url` or `createDatabase`), on a connection of its own. */
  sql<R extends pg.QueryResultRow = Record<string, unknown>>(url: string, text: string, values?: unknown[]): Promise<R[]>
  /** `pg_ctl stop -m fast`: the server goes away, its connections with it. */
  stop(): Promise<void>
  /** Starts the stopped server again, on the same port and data. */
  start(): Promise<void>
  /** Stops the server and removes the directory. */
  close(): Promise<void>
}

const COMMAND_TIMEOUT_MS = 60_000

const ROOT = '/usr/lib/postgresql'
const asRoot = process.getuid?.() === 0

/** The newest installed PostgreSQL's bin directory (Debian keeps them in /usr/lib/postgresql/<major>/bin), or null. */
function findBinDir(): string | null {
  const majors = existsSync(ROOT) ? readdirSync(ROOT).filter((v) => existsSync(path.join(ROOT, v, 'bin', 'initdb'))) : []
  const newest = majors.sort((a, b) => Number(b) - Number(a))[0]
  return newest ? path.join(ROOT, newest, 'bin') : null
}

function binDir(): string {
  const bin = findBinDir()
  if (!bin) throw new Error('PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): apt-get install postgresql')
  return bin
}

/** Whether a PostgreSQL server can be started here: installed, and as root a `postgres` user to run it as. */
export function postgresInstalled(): boolean {
  if (!findBinDir()) return false
  return !asRoot || readFileSync('/etc/passwd', 'utf8').split('\n').some((l) => l.startsWith('postgres:'))
}

/** `bin/<program> ...args`, as the postgres user when this runs as root; rejects with its output when it fails. */
function run(bin: string, program: string, args: string[]): Promise<string> {
  const [command, argv] = asRoot ? ['runuser', ['-u', 'postgres', '--', path.join(bin, program), ...args]] : [path.join(bin, program), args]
  return new Promise((resolve, reject) => {
    execFile(command, argv, { timeout: COMMAND_TIMEOUT_MS, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${program} ${args.join(' ')} failed: ${err.message}\n${stdout}${stderr}`))
      else resolve(stdout)
    })
  })
}

let databases = 0

/** Creates and starts a cluster; `close` it in afterAll. */
export async function startPostgres(): Promise<Postgres> {
  const bin = binDir()
  const dir = mkdtempSync(path.join(tmpdir(), 'pulseboard-pg-'))
  const data = path.join(dir, 'data')
  const socket = path.join(dir, 'socket')
  mkdirSync(socket)
  if (asRoot) {
    const { uid, gid } = postgresUser()
    for (const d of [dir, socket]) chownSync(d, uid, gid)
  }
  chmodSync(dir, 0o700)
  await run(bin, 'initdb', ['-D', data, '-A', 'trust', '-U', 'postgres', '-E', 'UTF8', '--locale=C', '--no-sync', '--no-instructions']).catch((err: unknown) => {
    rmSync(dir, { recursive: true, force: true })
    throw err
  })

  let port = 0
  const startServer = async () => {
    const options = [`-p ${port}`, `-k ${socket}`, '-c listen_addresses=127.0.0.1', '-c fsync=off', '-c synchronous_commit=off', '-c full_page_writes=off', '-c max_connections=50']
    await run(bin, 'pg_ctl', ['start', '-D', data, '-w', '-t', '30', '-l', path.join(dir, 'log'), '-o', options.join(' ')])
  }
  // PostgreSQL cannot be told to take port 0 and say which it got, and a port free when asked can
  // be taken before the server binds it: a few tries
  for (let attempt = 1; ; attempt++) {
    port = await freePort()
    try {
      await startServer()
      break
    } catch (err) {
      if (attempt === 3) {
        rmSync(dir, { recursive: true, force: true })
        throw err
      }
    }
  }
  let running = true
  // a test process that dies without afterAll still stops its server
  const onExit = () => {
    if (running) spawnSync(asRoot ? 'runuser' : path.join(bin, 'pg_ctl'), [...(asRoot ? ['-u', 'postgres', '--', path.join(bin, 'pg_ctl')] : []), 'stop', '-D', data, '-m', 'immediate'])
    rmSync(dir, { recursive: true, force: true })
  }
  process.once('exit', onExit)

  const url = (db = 'postgres') => `postgres://postgres:not-asked@127.0.0.1:${port}/${db}`
  const sql = async <R extends pg.QueryResultRow>(target: string, text: string, values?: unknown[]): Promise<R[]> => {
    const client = new pg.Client({ connectionString: target, connectionTimeoutMillis: 10_000 })
    await client.connect()
    try {
      return (await client.query<R>(text, values)).rows
    } finally {
      await client.end()
    }
  }
  return {
    host: '127.0.0.1',
    port,
    dir,
    postmasterPid: () => Number(readFileSync(path.join(data, 'postmaster.pid'), 'utf8').split('\n', 1)[0]),
    url,
    sql,
    async createDatabase() {
      const name = `pulseboard_${process.pid}_${++databases}`
      await sql(url(), `CREATE DATABASE ${name}`)
      return url(name)
    },
    async stop() {
      await run(bin, 'pg_ctl', ['stop', '-D', data, '-m', 'fast', '-w', '-t', '30'])
      running = false
    },
    async start() {
      await startServer()
      running = true
    },
    async close() {
      process.removeListener('exit', onExit)
      try {
        if (running) await run(bin, 'pg_ctl', ['stop', '-D', data, '-m', 'fast', '-w', '-t', '30'])
      } finally {
        running = false
        rmSync(dir, { recursive: true, force: true })
      }
    },
  }
}

function postgresUser(): { uid: number; gid: number } {
  const line = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('postgres:'))
  if (!line) throw new Error('running as root needs a postgres user to run PostgreSQL as (apt-get install postgresql makes one)')
  const [, , uid, gid] = line.split(':')
  return { uid: Number(uid), gid: Number(gid) }
}
