/**
 * The store. The plugin returns at once: the transport opens and the migrations apply in the
 * background (under the lock, so replicas can start together), while the service already listens:
 * liveness answers, readiness is 503 "starting", and requests that need the database answer 503
 * DATABASE_UNAVAILABLE (the readiness plugin's gate). The schema is reported ready once the
 * database reports the code's schema version. A database that cannot be reached is waited for
 * (with backoff); a broken migration or an unopenable store is reported as a failed start-up,
 * which stops the process.
 */
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import type { StoreConfig } from '../config.js'
import { AppError, errors } from '../errors.js'
import { DeferredStore } from '../store/deferred.js'
import { createStore, migrateStore, type StorePort } from '../store/index.js'
import { latestVersion, loadMigrations } from '../store/migrations.js'
import { schemaVersion } from '../store/queries.js'

declare module 'fastify' {
  interface FastifyInstance {
    store: StorePort
    expectedSchemaVersion: number
  }
}

const isUnavailable = (err: unknown) => err instanceof AppError && err.code === 'DATABASE_UNAVAILABLE'

export default fp(
  async function storePlugin(app: FastifyInstance, opts: { config: StoreConfig; store?: StorePort }) {
    const deferred = opts.store ? undefined : new DeferredStore(opts.config.transport)
    const store = opts.store ?? (deferred as DeferredStore)
    const expected = latestVersion(await loadMigrations())
    const { readiness } = app
    app.decorate('store', store)
    app.decorate('expectedSchemaVersion', expected)

    let closed = false
    let wake: (() => void) | undefined
    const pause = (ms: number) =>
      new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, ms)
        wake = () => {
          clearTimeout(timer)
          resolve()
        }
      })

    const prepare = async (): Promise<void> => {
      if (deferred && !deferred.opened) deferred.open(await createStore(opts.config, app.metrics))
      const result = await migrateStore(store)
      if (result?.applied.length) app.log.info({ applied: result.applied }, 'migrations applied')
      const version = await schemaVersion(store)
      if (version < expected) {
        throw errors.databaseUnavailable(
          `schema version ${version} is older than ${expected}: apply migrations (supabase db push or npm run db:migrate)`,
        )
      }
    }

    // Only "not reachable / not migrated yet" is worth waiting for; anything else stops start-up.
    const startUp = async (): Promise<void> => {
      for (let attempt = 0; !closed; attempt++) {
        try {
          await prepare()
          readiness.databaseReady()
          app.log.info('database open and migrated; ready')
          return
        } catch (err) {
          if (closed) return
          if (!isUnavailable(err)) throw err
          // Unreachable errors carry the driver's error as their cause; "schema behind" is ours.
          const schemaBehind = (err as AppError).cause === undefined
          readiness.databaseNotReady(
            schemaBehind
              ? { database: { ok: true }, schema: { ok: false, detail: (err as Error).message } }
              : {
                  database: { ok: false, detail: 'database did not answer' },
                  schema: { ok: false, detail: 'unknown' },
                },
          )
          app.log.warn({ err: { message: (err as Error).message }, attempt }, 'database not ready; retrying')
          await pause(Math.min(30_000, 500 * 2 ** attempt))
        }
      }
    }
    const started = startUp().catch((err: unknown) => {
      app.log.fatal({ err: { message: (err as Error).message } }, 'start-up failed')
      readiness.startUpFailed(err)
    })

    app.addHook('onClose', async () => {
      closed = true
      wake?.()
      // A start-up in flight (opening, migrating) finishes before its store is closed under it.
      await started
      if (!opts.store) await store.close()
    })
  },
  { name: 'filegate-store', dependencies: ['filegate-readiness', 'filegate-metrics'] },
)
