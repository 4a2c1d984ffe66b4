// aedes-persistence's own abstract suite, run with node:test against the SQLite persistence,
// alone and inside the bounded wrapper as Pulseboard runs it. Each instance gets a fresh
// database file. PERSISTENCE_VARIANT=sqlite or bounded-sqlite runs one of them; unset, both.
import { after, describe, test } from 'node:test'
import { mkdtempSync, rmSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { BoundedPersistence, type AsyncPersistence } from '../../broker/persistence.ts'
import { brokerDefaults } from '../../broker/broker.ts'
import { SqlitePersistence, type PersistenceDatabase } from '../../broker/sqlite-persistence.ts'

const require = createRequire(import.meta.url)
const abstractPersistence = require('aedes-persistence/abstract.js') as (opts: object) => void
// better-sqlite3 ships no types: cast once to the part the persistence uses, plus close()
const Database = require('better-sqlite3') as new (file: string) => PersistenceDatabase & { close(): void }

const dir = mkdtempSync(join(tmpdir(), 'pulseboard-mqtt-abstract-'))
const opened: { close(): void }[] = []
let files = 0

/** A persistence over a database file of its own, closed and removed when the run ends. */
function fresh(): SqlitePersistence {
  const db = new Database(join(dir, `state-${++files}.db`))
  opened.push(db)
  return new SqlitePersistence(db)
}

after(() => {
  for (const db of opened) db.close()
  rmSync(dir, { recursive: true, force: true })
})

const variants: Record<string, () => AsyncPersistence> = {
  sqlite: fresh,
  'bounded-sqlite': () => new BoundedPersistence(fresh(), brokerDefaults),
}
const only = process.env.PERSISTENCE_VARIANT
if (only !== undefined && !(only in variants)) throw new Error(`PERSISTENCE_VARIANT must be one of ${Object.keys(variants).join(', ')}`)

for (const [name, persistence] of Object.entries(variants)) {
  if (only !== undefined && only !== name) continue
  describe(name, () => abstractPersistence({ test, persistence, testAsync: true }))
}
