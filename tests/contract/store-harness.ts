/**
 * Stores for the SQL contract suites, migrated and ready: PGlite in-process, and a throwaway
 * database on the machine's Postgres (dropped on close).
 */
import { applyMigrations, loadMigrations } from '../../src/store/migrations.js'
import { createPgliteStore } from '../../src/store/pglite.js'
import type { StorePort } from '../../src/store/port.js'
import { createPostgresStore } from '../../src/store/postgres.js'
import { createTestDatabase } from '../helper.js'

export interface Harness {
  store: StorePort
  close(): Promise<void>
}

export async function openPglite(): Promise<Harness> {
  const store = await createPgliteStore(undefined)
  await applyMigrations(store.migrator as NonNullable<StorePort['migrator']>, await loadMigrations())
  return { store, close: () => store.close() }
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
