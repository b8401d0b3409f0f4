/**
 * Stores for the SQL contract suites, migrated and ready: PGlite in-process, and a throwaway
 * database on the machine's Postgres (dropped on close).
 */
import { applyMigrations, loadMigrations } from '../../src/store/migrations.js'
import type { StorePort } from '../../src/store/port.js'
import { createPostgresStore } from '../../src/store/postgres.js'
import { createTestDatabase, pgliteStore } from '../helper.js'

export interface Harness {
  store: StorePort
  close(): Promise<void>
}

/** PGlite in a data directory of its own (a copy of the run's template, when there is one), removed on close. */
export async function openPglite(): Promise<Harness> {
  const cleanups: Array<() => Promise<void>> = []
  const store = await pgliteStore({ after: (fn) => cleanups.push(fn) })
  await applyMigrations(store.migrator as NonNullable<StorePort['migrator']>, await loadMigrations())
  return {
    store,
    close: async () => {
      for (const cleanup of cleanups) await cleanup()
    },
  }
}

export async function openPostgres(prefix: string): Promise<Harness> {
  const db = await createTestDatabase(prefix)
  const store = createPostgresStore(db.url)
  await applyMigrations(store.migrator as NonNullable<StorePort['migrator']>, await loadMigrations())
  return {
    store,
    close: async () => {
      await store.close()
      await db.drop()
    },
  }
}
