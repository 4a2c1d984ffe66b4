/**
 * The small, common subset of Home Assistant value templates (Jinja) that only pick a value:
 *   {{ value }}   {{ value_json.x }}   {{ value_json.x.y }}   {{value_json['ENERGY']['Total']}}
 *   {{ value_json.list[0] }}   optionally followed by | float, | int, | round(n), | abs, | default(n), | is_defined
 * Anything else (arithmetic, conditionals, other filters) is unsupported: compileTemplate returns null
 * and the entity yields no readings rather than wrong ones.
 */
import { isRecord, parseNumber } from './values.ts'

type Filter =
  | { kind: 'float' | 'int'; fallback?: number }
  | { kind: 'round'; digits: number }
  | { kind: 'abs' }
  | { kind: 'default'; fallback: number | string }

/** A compiled value template. */
export interface Template {
  json: boolean
  path: string[]
  filters: Filter[]
}

// Marks "the template found nothing" (missing key, failed conversion).
export const MISSING: unique symbol = Symbol('missing')

const IDENT = /\s*\.\s*([A-Za-z_][A-Za-z0-9_]*)/y
const INDEX = /\s*\[\s*(?:'([^']*)'|"([^"]*)"|(\d+))\s*\]/y
const FILTER = /\s*\|\s*([a-z_]+)(?:\(\s*([^()]*?)\s*\))?/y

export function compileTemplate(source: string): Template | null {
  if (source.length > 512) return null
  const m = /^\s*\{\{\s*([\s\S]*?)\s*\}\}\s*$/.exec(source)
  if (!m) return null
  const body = m[1]!
  let json: boolean
  let pos: number
  if (body.startsWith('value_json')) {
    json = true
    pos = 'value_json'.length
  } else if (body.startsWith('value') && !/^value[A-Za-z0-9_]/.test(body)) {
    json = false
    pos = 'value'.length
  } else return null

  const path: string[] = []
  for (;;) {
    IDENT.lastIndex = pos
    const ident = IDENT.exec(body)
    if (ident) {
      path.push(ident[1]!)
      pos = IDENT.lastIndex
      continue
    }
    INDEX.lastIndex = pos
    const index = INDEX.exec(body)
    if (index) {
      path.push(index[1] ?? index[2] ?? index[3]!)
      pos = INDEX.lastIndex
      continue
    }
    break
  }
  if (!json && path.length > 0) return null

  const filters: Filter[] = []
  for (;;) {
    FILTER.lastIndex = pos
    const f = FILTER.exec(body)
    if (!f) break
    pos = FILTER.lastIndex
    const filter = compileFilter(f[1]!, f[2])
    if (filter === null) return null
    if (filter !== undefined) filters.push(filter)
  }
  if (body.slice(pos).trim().length > 0) return null
  return { json, path, filters }
}

// Null: unsupported. Undefined: supported but does nothing here.
function compileFilter(name: string, arg: string | undefined): Filter | null | undefined {
  const argText = arg?.trim() ?? ''
  switch (name) {
    case 'float':
    case 'int': {
      if (argText === '') return { kind: name }
      const fallback = parseNumber(argText)
      return fallback === undefined ? null : { kind: name, fallback }
    }
    case 'round': {
      if (argText === '') return { kind: 'round', digits: 0 }
      const digits = parseNumber(argText)
      return digits === undefined || !Number.isInteger(digits) || digits < 0 || digits > 15
        ? null
        : { kind: 'round', digits }
    }
    case 'abs':
      return argText === '' ? { kind: 'abs' } : null
    case 'default': {
      const n = parseNumber(argText)
      if (n !== undefined) return { kind: 'default', fallback: n }
      const q = /^(?:'([^']*)'|"([^"]*)")$/.exec(argText)
      return q ? { kind: 'default', fallback: q[1] ?? q[2]! } : null
    }
    case 'is_defined':
      return undefined
    default:
      return null
  }
}

// Apply a template to a payload. `json` is called at most once per message by the caller's cache.
// Without a template the payload itself is the value.
export function evaluate(t: Template | undefined, payload: string, json: () => unknown): unknown {
  if (t === undefined) return payload
  let v: unknown = t.json ? json() : payload
  if (v === undefined) return MISSING
  for (const key of t.path) {
    if (Array.isArray(v) && /^\d+$/.test(key)) v = v[Number(key)]
    else if (isRecord(v) && Object.hasOwn(v, key)) v = v[key]
    else {
      v = MISSING
      break
    }
  }
  for (const f of t.filters) {
    if (f.kind === 'default') {
      if (v === MISSING || v === undefined || v === null) v = f.fallback
      continue
    }
    if (v === MISSING) break
    switch (f.kind) {
      case 'float':
      case 'int': {
        const n = toNumber(v)
        v = n === undefined ? (f.fallback ?? MISSING) : f.kind === 'int' ? Math.trunc(n) : n
        break
      }
      case 'abs':
        v = typeof v === 'number' ? Math.abs(v) : MISSING
        break
      case 'round':
        v = typeof v === 'number' ? roundTo(v, f.digits) : MISSING
        break
    }
  }
  return v === undefined ? MISSING : v
}

function toNumber(v: unknown): number | undefined {
  if (typeof v === 'number') return Number.isFinite(v) ? v : undefined
  if (typeof v === 'boolean') return v ? 1 : 0
  if (typeof v === 'string') return parseNumber(v)
  return undefined
}

function roundTo(n: number, digits: number): number {
  const f = 10 ** digits
  // Jinja's "common" method is Python's round(); the two differ only on exact binary halves.
  return (Math.sign(n) * Math.round(Math.abs(n) * f)) / f
}
