import { existsSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const here = path.dirname(fileURLToPath(import.meta.url))

/**
 * The package's root folder. This file is `server/package.ts` in the sources and
 * `dist/server/package.js` once built (in the repository and in an installed
 * package alike): the root is the nearest of the two parents with package.json.
 */
export const packageRoot = existsSync(path.join(here, '..', 'package.json')) ? path.resolve(here, '..') : path.resolve(here, '..', '..')

/** Pulseboard's version, from its package.json. */
export const version = (JSON.parse(readFileSync(path.join(packageRoot, 'package.json'), 'utf8')) as { version: string }).version

/** Where `npm run build` puts the dashboard. */
export const builtDashboardDir = path.join(packageRoot, 'dist', 'dashboard')
