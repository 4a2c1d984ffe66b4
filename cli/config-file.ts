import path from 'node:path'
import { loadConfig, saveConfig, ConfigError, type AccessConfig } from '../auth/config.ts'
import { CliError } from './args.ts'

/** Where users, devices and tokens are kept: `--config`, `PULSEBOARD_CONFIG`, or pulseboard.json here. */
export function configPath(flag: string | undefined): string {
  return path.resolve(flag ?? process.env.PULSEBOARD_CONFIG ?? 'pulseboard.json')
}

/** Reads the config for a change; a missing file is an empty one. */
export function readForChange(file: string): AccessConfig {
  try {
    return loadConfig(file, { missingOk: true })
  } catch (err) {
    if (err instanceof ConfigError) throw new CliError(err.message)
    throw err
  }
}

export function write(file: string, config: AccessConfig): void {
  try {
    saveConfig(file, config)
  } catch (err) {
    throw new CliError(`${file}: cannot be written (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); check the directory's permissions`)
  }
}

/** What a running server does with the change. */
export const PICKED_UP = 'A running Pulseboard started with this file picks the change up within 2 s.'

/**
 * A password: typed without echo at a terminal (twice), or the first line of stdin with
 * `--password-stdin`, for scripts.
 */
export async function readPassword(fromStdin: boolean): Promise<string> {
  if (fromStdin) {
    let text = ''
    for await (const chunk of process.stdin) {
      text += String(chunk)
      if (text.includes('\n') || text.length > 4096) break
    }
    const password = text.split(/\r?\n/)[0] ?? ''
    if (password.length === 0) throw new CliError('--password-stdin: stdin gave no password')
    return password
  }
  if (!process.stdin.isTTY) throw new CliError('no terminal to ask for a password on; pass it on stdin with --password-stdin')
  const first = await askHidden('Password: ')
  if (first.length < 8) throw new CliError('the password must have at least 8 characters')
  const again = await askHidden('Again: ')
  if (again !== first) throw new CliError('the two passwords differ; nothing was changed')
  return first
}

function askHidden(prompt: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const stdin = process.stdin
    process.stderr.write(prompt)
    stdin.setRawMode(true)
    stdin.resume()
    let typed = ''
    const onData = (chunk: Buffer) => {
      for (const ch of chunk.toString('utf8')) {
        if (ch === '\r' || ch === '\n') return done(null)
        if (ch === '\u0003') return done(new CliError('cancelled'))
        if (ch === '\u007f' || ch === '\b') typed = typed.slice(0, -1)
        else typed += ch
      }
    }
    const done = (err: Error | null) => {
      stdin.off('data', onData)
      stdin.setRawMode(false)
      stdin.pause()
      process.stderr.write('\n')
      if (err) reject(err)
      else resolve(typed)
    }
    stdin.on('data', onData)
  })
}
