// aedes-persistence's own abstract suite, run with node:test against the bounded wrapper over
// the in-memory persistence: bounds that are not reached must change nothing.
import { test } from 'node:test'
import { createRequire } from 'node:module'
import { BoundedPersistence, type AsyncPersistence } from '../../broker/persistence.ts'
import { brokerDefaults } from '../../broker/broker.ts'

const require = createRequire(import.meta.url)
const abstractPersistence = require('aedes-persistence/abstract.js') as (opts: object) => void
const MemoryPersistence = require('aedes-persistence/asyncPersistence.js') as new () => AsyncPersistence

abstractPersistence({
  test,
  persistence: () => new BoundedPersistence(new MemoryPersistence(), brokerDefaults),
  testAsync: true,
})
