/** Picks the transport from the configuration and applies migrations where it can. */
import type { StoreConfig } from '../config.js'
import { applyMigrations, loadMigrations, type MigrationResult } from './migrations.js'
import type { PoolMetrics } from './pool-watch.js'
import type { StorePort } from './port.js'
import { createPostgresStore } from './postgres.js'

export type { StorePort } from './port.js'

/** `metrics`: where the Postgres pool reports its connects and waiting calls (none: not reported). */
export async function createStore(config: StoreConfig, metrics?: PoolMetrics): Promise<StorePort> {
  switch (config.transport) {
    // PGlite (a WASM Postgres) and supabase-js are loaded only when selected: a service on
    // Postgres does not carry their modules in its resident memory.
    case 'pglite': {
      const { createPgliteStore } = await import('./pglite.js')
      return createPgliteStore(config.dataDir)
    }
    case 'postgres':
      return createPostgresStore(config.databaseUrl, { max: config.poolMax, metrics })
    case 'supabase': {
      const { createSupabaseStore } = await import('./supabase.js')
      const store = createSupabaseStore(config.url, config.serviceRoleKey)
      if (!config.databaseUrl) return store
      // With a direct URL too, filegate can run its own migrations; calls still go through PostgREST.
      const direct = createPostgresStore(config.databaseUrl, { max: 1 })
      return {
        ...store,
        migrator: direct.migrator,
        listen: direct.listen,
        close: async () => {
          await Promise.all([store.close(), direct.close()])
        },
      }
    }
  }
}

/** Applies pending migrations, or returns null when this transport cannot (supabase without DATABASE_URL). */
export async function migrateStore(store: StorePort): Promise<MigrationResult | null> {
  if (!store.migrator) return null
  return applyMigrations(store.migrator, await loadMigrations())
}
