// The bench starts PostgreSQL the same way; the one implementation is in bench/, which the build compiles and tests may import.
export { postgresInstalled, startPostgres, type Postgres } from '../../bench/postgres.ts'
