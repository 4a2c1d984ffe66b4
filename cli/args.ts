import { parseArgs, type ParseArgsConfig } from 'node:util'
import { parseDuration } from '../simulators/duration.ts'

/** Wrong flags or values: the command says what is wrong and exits 2. */
export class UsageError extends Error {
  override name = 'UsageError'
  /** Print the whole usage too, as for an unknown flag; a bad value needs only its one line. */
  constructor(
    message: string,
    readonly showUsage = false,
  ) {
    super(message)
  }
}

/** Something went wrong at run time: the command prints one line and exits 1. */
export class CliError extends Error {
  override name = 'CliError'
}

/** A subcommand: its usage text, and what it does with its own arguments. */
export interface Command {
  usage: string
  run(argv: string[]): Promise<number | void>
}

type Options = NonNullable<ParseArgsConfig['options']>

/** `node:util` parseArgs, strict, with `--help` on every command and errors as UsageError. */
export function parse<O extends Options>(argv: string[], options: O, allowPositionals = false) {
  try {
    return parseArgs({
      args: argv,
      options: { ...options, help: { type: 'boolean', short: 'h' } },
      strict: true,
      allowPositionals,
    })
  } catch (err) {
    throw new UsageError((err as Error).message.replace(/\. To specify a positional argument.*$/s, ''), true)
  }
}

/** Parses a whole number within a range, or throws a UsageError that names the flag. */
export function integer(value: string, flag: string, min: number, max: number): number {
  const n = Number(value)
  if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
    throw new UsageError(`${flag} must be a whole number from ${min} to ${max}, got ${JSON.stringify(value)}`)
  }
  return n
}

/** Parses a duration flag (`500ms`, `10s`, `2m`) to milliseconds, or throws a UsageError that names the flag. */
export function duration(value: string | undefined, flag: string, fallbackMs: number): number {
  if (value === undefined) return fallbackMs
  const ms = parseDuration(value)
  if (ms === null) throw new UsageError(`${flag} must be a duration such as 500ms, 10s or 2m, got ${JSON.stringify(value)}`)
  return ms
}

/** Default server URL for the clients: the local Pulseboard, or PULSEBOARD_URL. */
export function serverUrl(flag: string | undefined): string {
  const url = flag ?? process.env.PULSEBOARD_URL ?? 'http://localhost:5000'
  if (!/^https?:\/\/[^/]/.test(url)) throw new UsageError(`--url must be an http:// or https:// URL, got ${JSON.stringify(url)}`)
  return url.replace(/\/+$/, '')
}

const BYTE_UNITS: Readonly<Record<string, number>> = { '': 1, b: 1, k: 1024, kb: 1024, kib: 1024, m: 1024 ** 2, mb: 1024 ** 2, mib: 1024 ** 2, g: 1024 ** 3, gb: 1024 ** 3, gib: 1024 ** 3 }

/** A size as people type it: `262144`, `256KiB`, `64M`, `1G` (powers of 1024). Null for anything else. */
export function parseBytes(text: string): number | null {
  const match = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(text.trim())
  const unit = match && BYTE_UNITS[match[2]!.toLowerCase()]
  if (!match || unit === undefined || unit === null) return null
  const bytes = Math.round(Number(match[1]) * unit)
  return Number.isSafeInteger(bytes) ? bytes : null
}
