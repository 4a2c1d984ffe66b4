import { createHash } from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'

/** One file of the built dashboard, ready to send. */
export interface DashboardFile {
  body: Buffer
  type: string
  etag: string
  /** Vite names assets by their content hash: the same name never changes, so browsers may keep it. */
  immutable: boolean
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.json': 'application/json',
  '.map': 'application/json',
  '.woff2': 'font/woff2',
  '.txt': 'text/plain; charset=utf-8',
}

/**
 * The built dashboard, read once at start and served from memory by URL path.
 * It is a few hundred KB that do not change while the server runs; reading it
 * up front costs a few ms, where a static-file plugin cost 0.2 s of start-up
 * (measured, docs/benchmarks.md). Null when the dashboard is not built.
 */
export function loadDashboard(dir: string): Map<string, DashboardFile> | null {
  if (!fs.existsSync(path.join(dir, 'index.html'))) return null
  const files = new Map<string, DashboardFile>()
  for (const entry of fs.readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue
    const file = path.join(entry.parentPath, entry.name)
    const body = fs.readFileSync(file)
    const rel = path.relative(dir, file).split(path.sep).join('/')
    files.set(`/${rel}`, {
      body,
      type: TYPES[path.extname(file)] ?? 'application/octet-stream',
      etag: `"${createHash('sha1').update(body).digest('base64url')}"`,
      immutable: rel.startsWith('assets/'),
    })
  }
  return files
}
