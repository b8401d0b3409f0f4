/** `npm run db:migrate`: applies pending migrations to the configured database and exits. */
import { ConfigError, loadConfig } from './config.js'
import { createStore, migrateStore } from './store/index.js'

try {
  const config = loadConfig(process.env)
  const store = await createStore(config.store)
  try {
    const result = await migrateStore(store)
    if (!result) {
      throw new Error('the Supabase transport cannot run DDL: set DATABASE_URL too, or run `supabase db push`')
    }
    process.stdout.write(
      `filegate: schema at version ${result.version} (${result.applied.length ? `applied ${result.applied.join(', ')}` : 'nothing to apply'})\n`,
    )
  } finally {
    await store.close()
  }
} catch (err) {
  const message = err instanceof ConfigError || err instanceof Error ? err.message : String(err)
  process.stderr.write(`filegate: migration failed: ${message}\n`)
  process.exit(1)
}
