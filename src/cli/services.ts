/**
 * The domain services a CLI command runs in-process against the configured store and providers,
 * built as the service builds them (src/plugins/services.ts), without an HTTP server, scheduler or
 * metrics listener.
 */
import pino from 'pino'
import type { Config } from '../config.js'
import { CleanupService } from '../domain/cleanup.js'
import { FileService } from '../domain/files.js'
import { createResumableUploads } from '../domain/resumable.js'
import { createMetrics } from '../metrics.js'
import { createOriginalsStore, type OriginalsStore } from '../originals/index.js'
import { createProviderRegistry, type ProviderRegistry } from '../providers/registry.js'
import { createStore, type StorePort } from '../store/index.js'
import { latestVersion, loadMigrations } from '../store/migrations.js'
import { schemaVersion } from '../store/queries.js'
import { CliError } from './io.js'

export interface CliServices {
  store: StorePort
  providers: ProviderRegistry
  cleanup: CleanupService
  close(): Promise<void>
}

/** The configured store, its schema checked to be the code's (closed again when it is not). */
export async function openStore(config: Config): Promise<StorePort> {
  const store = await createStore(config.store)
  try {
    const [version, expected] = [await schemaVersion(store), latestVersion(await loadMigrations())]
    if (version < expected)
      throw new CliError(`filegate: schema version ${version} is older than ${expected}: run \`filegate migrate\``)
    return store
  } catch (err) {
    await store.close()
    throw err
  }
}

export async function openServices(config: Config, logLevel: string): Promise<CliServices> {
  const store = await openStore(config)
  let providers: ProviderRegistry | undefined
  let originals: OriginalsStore | undefined
  try {
    const metrics = createMetrics()
    providers = createProviderRegistry(config)
    originals = config.originals ? await createOriginalsStore(config.originals) : undefined
    // Logs go to stderr, so that stdout keeps only the report.
    const log = pino({ level: logLevel, base: { name: 'filegate-cli' } }, pino.destination(2))
    const files = new FileService({ store, providers, config, metrics, originals, log })
    const deletion = files.deletionDeps
    const resumable = createResumableUploads({ store, originals, files, metrics, config, log })
    const cleanup = new CleanupService({
      store,
      providers,
      config,
      metrics,
      deletion,
      log,
      originals,
      healer: files.healer,
      resumable,
    })
    const registry = providers
    const kept = originals
    return {
      store,
      providers,
      cleanup,
      async close() {
        // Completions the resumable job took up finish before the store closes, and a provider copy
        // a heal here could not record (journaled) is recorded while the database answers.
        await resumable.stop()
        await files.unsettled.sweep().catch(() => 0)
        await kept?.close()
        await registry.close()
        await store.close()
      },
    }
  } catch (err) {
    await originals?.close()
    await providers?.close()
    await store.close()
    throw err
  }
}
