/**
 * The store and the readiness facts. The plugin returns at once: the transport opens and the
 * migrations apply in the background (under the lock, so replicas can start together), while the
 * service already listens: liveness answers, readiness is 503 "starting", and requests that need
 * the database answer 503 DATABASE_UNAVAILABLE. `schemaReady` turns true once the database reports
 * the code's schema version. A database that cannot be reached is waited for (with backoff); a
 * broken migration or an unopenable store rejects `schemaReadyPromise`, which stops the process.
 */
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import type { StoreConfig } from '../config.js'
import { AppError } from '../errors.js'
import { DeferredStore } from '../store/deferred.js'
import { createStore, migrateStore, type StorePort } from '../store/index.js'
import { latestVersion, loadMigrations } from '../store/migrations.js'
import { schemaVersion } from '../store/queries.js'

export interface Lifecycle {
  /** True while the first attempt to open and migrate the store is under way. */
  starting: boolean
  /**
   * Until the schema is ready, what the last attempt found (readiness reports it instead of
   * asking the database, which the start-up loop is already retrying).
   */
  notReady: { database: { ok: boolean; detail?: string }; schema: { ok: boolean; detail?: string } } | undefined
  schemaReady: boolean
  shuttingDown: boolean
  /**
   * Resolves when the schema is ready (tests and the scheduler wait on it); rejects when start-up
   * failed for good (a broken migration, a store that cannot open).
   */
  schemaReadyPromise: Promise<void>
}

declare module 'fastify' {
  interface FastifyInstance {
    store: StorePort
    lifecycle: Lifecycle
    expectedSchemaVersion: number
  }
}

const isUnavailable = (err: unknown) => err instanceof AppError && err.code === 'DATABASE_UNAVAILABLE'

export default fp(
  async function storePlugin(app: FastifyInstance, opts: { config: StoreConfig; store?: StorePort }) {
    const deferred = opts.store ? undefined : new DeferredStore(opts.config.transport)
    const store = opts.store ?? (deferred as DeferredStore)
    const expected = latestVersion(await loadMigrations())
    let markReady: () => void = () => {}
    let markFailed: (err: unknown) => void = () => {}
    const lifecycle: Lifecycle = {
      starting: true,
      notReady: undefined,
      schemaReady: false,
      shuttingDown: false,
      schemaReadyPromise: new Promise<void>((resolve, reject) => {
        markReady = resolve
        markFailed = reject
      }),
    }
    // Whoever waits on it handles a failure; this keeps one that nobody awaits from crashing the process.
    lifecycle.schemaReadyPromise.catch(() => {})
    app.decorate('store', store)
    app.decorate('lifecycle', lifecycle)
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
      if (deferred && !deferred.opened) deferred.open(await createStore(opts.config))
      const result = await migrateStore(store)
      if (result?.applied.length) app.log.info({ applied: result.applied }, 'migrations applied')
      const version = await schemaVersion(store)
      if (version < expected) {
        throw new AppError('DATABASE_UNAVAILABLE', {
          detail: `schema version ${version} is older than ${expected}: apply migrations (supabase db push or npm run db:migrate)`,
        })
      }
    }

    // Only "not reachable / not migrated yet" is worth waiting for; anything else stops start-up.
    const startUp = async (): Promise<void> => {
      for (let attempt = 0; !closed; attempt++) {
        try {
          await prepare()
          lifecycle.schemaReady = true
          lifecycle.starting = false
          lifecycle.notReady = undefined
          app.log.info('database open and migrated; ready')
          markReady()
          return
        } catch (err) {
          if (closed) return
          if (!isUnavailable(err)) throw err
          // Unreachable errors carry the driver's error as their cause; "schema behind" is ours.
          const schemaBehind = (err as AppError).cause === undefined
          lifecycle.notReady = schemaBehind
            ? { database: { ok: true }, schema: { ok: false, detail: (err as Error).message } }
            : { database: { ok: false, detail: 'database did not answer' }, schema: { ok: false, detail: 'unknown' } }
          lifecycle.starting = false
          app.log.warn({ err: { message: (err as Error).message }, attempt }, 'database not ready; retrying')
          await pause(Math.min(30_000, 500 * 2 ** attempt))
        }
      }
    }
    const started = startUp().catch((err: unknown) => {
      app.log.fatal({ err: { message: (err as Error).message } }, 'start-up failed')
      markFailed(err)
    })

    // Until the schema is there, a call would reach a missing function and fail as a bare 500;
    // answer 503 instead. preParsing runs after authentication and before any body is read.
    app.addHook('preParsing', (request, _reply, payload, done) => {
      const auth = request.routeOptions.config?.auth
      if (!lifecycle.schemaReady && auth && auth !== 'none') {
        const detail = lifecycle.starting
          ? 'The service is starting: the database is being opened and migrated; retry shortly'
          : 'The database schema is not ready yet; retry shortly'
        done(new AppError('DATABASE_UNAVAILABLE', { detail }))
        return
      }
      done(null, payload)
    })

    app.addHook('preClose', async () => {
      lifecycle.shuttingDown = true
    })
    app.addHook('onClose', async () => {
      closed = true
      wake?.()
      // A start-up in flight (opening, migrating) finishes before its store is closed under it.
      await started
      if (!opts.store) await store.close()
    })
  },
  { name: 'filegate-store' },
)
