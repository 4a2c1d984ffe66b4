import { fork, type ChildProcess } from 'node:child_process'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { packageRoot } from '../server/package.ts'

/** Orders the bench sends to the processes it spawns. */
export type Order = { type: 'start' } | { type: 'measure' } | { type: 'stop' } | { type: 'report' }

/** A child process playing one part of a bench run, driven over IPC. */
export interface Role<Ready, Report> {
  readonly pid: number
  readonly ready: Ready
  send(order: Order): void
  /** The next message of this type (a `report` after `report` or `stop`). */
  next<T = Report>(type: string): Promise<T>
  onProgress(listener: (message: { received: number }) => void): void
  kill(): Promise<void>
}

/** In the sources the roles are .ts files beside this one, run through tsx; built, they are entry points of dist/app/. */
const fromSources = import.meta.url.endsWith('.ts')
const roleFile = (name: string) =>
  fromSources ? fileURLToPath(new URL(`./${name}.ts`, import.meta.url)) : path.join(packageRoot, 'dist', 'app', `${name}.js`)

/** Runs the role `name` (a module of this folder, such as 'serve') as a child process with `config`; resolves once it says ready. */
export function spawnRole<Ready, Report>(name: string, config: object, nodeArgs: string[] = []): Promise<Role<Ready, Report>> {
  const child: ChildProcess = fork(roleFile(name), [JSON.stringify(config)], {
    execArgv: [...(fromSources ? ['--import', 'tsx'] : []), ...nodeArgs],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  })
  const waiters = new Map<string, ((message: unknown) => void)[]>()
  const progress: ((message: { received: number }) => void)[] = []
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  child.on('message', (message: { type: string }) => {
    if (message.type === 'progress') return progress.forEach((l) => l(message as unknown as { received: number }))
    const queue = waiters.get(message.type)
    queue?.shift()?.(message)
  })
  const next = <T>(type: string) =>
    new Promise<T>((resolve, reject) => {
      const onExit = (code: number | null) => reject(new Error(`the ${name} role exited (${code}) before sending ${type}`))
      child.once('exit', onExit)
      const queue = waiters.get(type) ?? []
      queue.push((message) => {
        child.off('exit', onExit)
        resolve(message as T)
      })
      waiters.set(type, queue)
    })
  return next<{ error?: string } & Ready>('ready').then((ready) => {
    if (ready.error) throw new Error(ready.error)
    return {
      pid: child.pid!,
      ready,
      // a role that has exited (Ctrl-C reaches the whole process group) takes no more orders; sending would raise an uncaught 'error'
      send: (order) => void (child.connected && child.send(order)),
      next,
      onProgress: (listener) => progress.push(listener),
      async kill() {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
        await exited
      },
    }
  })
}

/** Inside a role: the config it was given, and a typed way to talk back. */
export function roleContext<Config>(): {
  config: Config
  send(message: { type: string } & Record<string, unknown>): void
  on(type: Order['type'], handler: () => void | Promise<void>): void
} {
  const handlers = new Map<string, () => void | Promise<void>>()
  process.on('message', (order: Order) => void handlers.get(order.type)?.())
  process.on('disconnect', () => process.exit(0))
  // exit normally, so that `--cpu-prof` writes its profile
  process.on('SIGTERM', () => process.exit(0))
  return {
    config: JSON.parse(process.argv[2]!) as Config,
    send: (message) => process.send!(message),
    on: (type, handler) => void handlers.set(type, handler),
  }
}
