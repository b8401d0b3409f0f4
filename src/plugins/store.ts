/**
 * Opens the store, applies migrations under the lock, and keeps the readiness facts:
 * `schemaReady` turns true once the database reports the code's schema version. When the
 * database is down at start, the service still starts (liveness holds, readiness fails) and
 * keeps trying in the background: it recovers by itself when the database returns.
 */
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import type { StoreConfig } from '../config.js'
import { AppError } from '../errors.js'
import { traceStoreCalls } from '../spans.js'
import { createStore, migrateStore, type StorePort } from '../store/index.js'
import { latestVersion, loadMigrations, schemaVersion } from '../store/migrations.js'

export interface Lifecycle {
  schemaReady: boolean
  shuttingDown: boolean
  /** Resolves when the schema is ready (tests and the scheduler wait on it). */
  schemaReadyPromise: Promise<void>
}

declare module 'fastify' {
  interface FastifyInstance {
    store: StorePort
    lifecycle: Lifecycle
    expectedSchemaVersion: number
  }
}

export default fp(
  async function storePlugin(app: FastifyInstance, opts: { config: StoreConfig; store?: StorePort }) {
    const store = opts.store ?? (await createStore(opts.config))
    const expected = latestVersion(await loadMigrations())
    let markReady: () => void = () => {}
    const lifecycle: Lifecycle = {
      schemaReady: false,
      shuttingDown: false,
      schemaReadyPromise: new Promise<void>((resolve) => {
        markReady = resolve
      }),
    }
    // Upload and sweep steps get a span each (no-ops while tracing is off).
    app.decorate('store', traceStoreCalls(store))
    app.decorate('lifecycle', lifecycle)
    app.decorate('expectedSchemaVersion', expected)

    let timer: NodeJS.Timeout | undefined
    let closed = false
    const prepare = async (): Promise<void> => {
      const result = await migrateStore(store)
      if (result?.applied.length) app.log.info({ applied: result.applied }, 'migrations applied')
      const version = await schemaVersion(store)
      if (version < expected) {
        throw new AppError('DATABASE_UNAVAILABLE', {
          detail: `schema version ${version} is older than ${expected}: apply migrations (supabase db push or npm run db:migrate)`,
        })
      }
      lifecycle.schemaReady = true
      markReady()
    }
    const retry = (attempt: number) => {
      const delay = Math.min(30_000, 500 * 2 ** attempt)
      timer = setTimeout(() => {
        if (closed) return
        prepare().catch((err) => {
          app.log.warn({ err: { message: (err as Error).message }, attempt }, 'database not ready; retrying')
          retry(attempt + 1)
        })
      }, delay)
      timer.unref()
    }

    try {
      await prepare()
    } catch (err) {
      // Only "not reachable / not migrated yet" is worth waiting for; a broken migration stops start-up.
      if (!(err instanceof AppError && err.code === 'DATABASE_UNAVAILABLE')) {
        await store.close()
        throw err
      }
      app.log.warn({ err: { message: err.message } }, 'database not ready at start; readiness stays 503 until it is')
      retry(0)
    }

    // Until the schema is there, a call would reach a missing function and fail as a bare 500;
    // answer 503 instead (SPEC §1). preParsing runs after authentication and before any body is read.
    app.addHook('preParsing', (request, _reply, payload, done) => {
      const auth = request.routeOptions.config?.auth
      if (!lifecycle.schemaReady && auth && auth !== 'none') {
        done(new AppError('DATABASE_UNAVAILABLE', { detail: 'The database schema is not ready yet; retry shortly' }))
        return
      }
      done(null, payload)
    })

    app.addHook('preClose', async () => {
      lifecycle.shuttingDown = true
    })
    app.addHook('onClose', async () => {
      closed = true
      if (timer) clearTimeout(timer)
      if (!opts.store) await store.close()
    })
  },
  { name: 'filegate-store' },
)
