import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { collect } from './stack.ts'

export const repoRoot = fileURLToPath(new URL('../..', import.meta.url))
/** The `pulseboard` command's sources, run through tsx: the tests exercise what is in the tree, built or not. */
export const cliPath = fileURLToPath(new URL('../../cli/pulseboard.ts', import.meta.url))

export interface Child {
  process: ChildProcessWithoutNullStreams
  /** Lines printed on stdout so far, and a way to wait for more. */
  stdout: ReturnType<typeof collect<string>>
  stderr: ReturnType<typeof collect<string>>
  /** Resolves with the exit code (or signal name) once the process ends. */
  exited: Promise<number | string>
  kill(): Promise<number | string>
}

const children = new Set<Child>()

/** Runs a program with piped stdio, in the repository unless told otherwise; `killAll` ends whatever is left. */
export function run(command: string, args: string[], env: NodeJS.ProcessEnv = {}, cwd = repoRoot): Child {
  const child = spawn(command, args, { cwd, env: { ...process.env, ...env } })
  const lines = (stream: NodeJS.ReadableStream) =>
    collect<string>((push) => {
      let rest = ''
      stream.setEncoding('utf8')
      stream.on('data', (chunk: string) => {
        const parts = (rest + chunk).split('\n')
        rest = parts.pop()!
        parts.forEach(push)
      })
      stream.on('end', () => rest && push(rest))
    })
  const exited = new Promise<number | string>((resolve) =>
    child.on('close', (code, signal) => resolve(code ?? signal ?? 'unknown')),
  )
  const handle: Child = {
    process: child,
    stdout: lines(child.stdout),
    stderr: lines(child.stderr),
    exited,
    kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
      return exited
    },
  }
  children.add(handle)
  void exited.then(() => children.delete(handle))
  return handle
}

/** The `pulseboard` command, as a user runs it. */
export function pulseboard(args: string[], env: NodeJS.ProcessEnv = {}): Child {
  return run(process.execPath, ['--import', 'tsx', cliPath, ...args], env)
}

export async function killAll(): Promise<void> {
  await Promise.all([...children].map((c) => c.kill()))
}
