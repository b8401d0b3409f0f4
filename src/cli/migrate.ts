/** `filegate migrate`: applies pending migrations to the configured database (what the service does at start). */
import type { Config } from '../config.js'
import { createStore, migrateStore } from '../store/index.js'
import { CliError, type CliIo, writeJson } from './io.js'

export async function migrateCommand(config: Config, io: CliIo, opts: { json?: boolean }): Promise<number> {
  const store = await createStore(config.store)
  try {
    const result = await migrateStore(store).catch((err: Error) => {
      throw new CliError(`filegate: migration failed: ${err.message}`)
    })
    if (!result) {
      throw new CliError(
        'filegate: migration failed: the Supabase transport cannot run DDL: set DATABASE_URL too, or run `supabase db push`',
      )
    }
    if (opts.json) writeJson(io, { version: result.version, applied: result.applied })
    else
      io.stdout.write(
        `filegate: schema at version ${result.version} (${result.applied.length ? `applied ${result.applied.join(', ')}` : 'nothing to apply'})\n`,
      )
    return 0
  } finally {
    await store.close()
  }
}
