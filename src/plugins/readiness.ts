/**
 * Readiness and shutdown: what /readyz reports, and the gates in front of every route that needs
 * the service (a route with a scope; probes, metrics and docs are public and stay open).
 * - Shutting down: from the first moment (the first signal, or the app closing) new work is 503
 *   SHUTTING_DOWN and every response says `Connection: close`; once the listener is closed, a
 *   connection whose response began before is closed as soon as that response is out (Node's
 *   server.close() only closes the connections idle at that moment, so one that turned idle later
 *   would hold the exit until SHUTDOWN_TIMEOUT_MS).
 * - Database not ready: until the store plugin reports the schema ready, a call would reach a
 *   missing function and fail as a bare 500; it is 503 DATABASE_UNAVAILABLE instead, before any
 *   body is read.
 * The store plugin reports the database's state here; the shutdown flag is set only here.
 */
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { errors } from '../errors.js'

export interface CheckFacts {
  ok: boolean
  detail?: string
}

/** What the last attempt to open and migrate the store found. */
export interface NotReadyFacts {
  database: CheckFacts
  schema: CheckFacts
}

export class Readiness {
  #starting = true
  #notReady: NotReadyFacts | undefined
  #schemaReady = false
  #shuttingDown = false
  #markReady: () => void = () => {}
  #markFailed: (err: unknown) => void = () => {}
  /**
   * Resolves when the schema is ready (tests and the scheduler wait on it); rejects when start-up
   * failed for good (a broken migration, a store that cannot open).
   */
  readonly schemaReadyPromise = new Promise<void>((resolve, reject) => {
    this.#markReady = resolve
    this.#markFailed = reject
  })

  constructor() {
    // Whoever waits on it handles a failure; this keeps one that nobody awaits from crashing the process.
    this.schemaReadyPromise.catch(() => {})
  }

  /** True while the first attempt to open and migrate the store is under way. */
  get starting(): boolean {
    return this.#starting
  }

  /**
   * Until the schema is ready, what the last attempt found (readiness reports it instead of
   * asking the database, which the start-up loop is already retrying).
   */
  get notReady(): NotReadyFacts | undefined {
    return this.#notReady
  }

  get schemaReady(): boolean {
    return this.#schemaReady
  }

  get shuttingDown(): boolean {
    return this.#shuttingDown
  }

  /** Readiness fails and new work is refused from now on (idempotent). */
  beginShutdown(): void {
    this.#shuttingDown = true
  }

  /** The store reports: open, and the schema at the code's version. */
  databaseReady(): void {
    this.#schemaReady = true
    this.#starting = false
    this.#notReady = undefined
    this.#markReady()
  }

  /** The store reports: an attempt found the database away or its schema behind; it retries. */
  databaseNotReady(facts: NotReadyFacts): void {
    this.#notReady = facts
    this.#starting = false
  }

  /** The store reports: start-up failed for good. */
  startUpFailed(err: unknown): void {
    this.#markFailed(err)
  }
}

declare module 'fastify' {
  interface FastifyInstance {
    readiness: Readiness
  }
}

/** Routes behind authentication are the service's work; the others (probes, metrics, docs) stay open. */
const needsService = (config: { scope?: string } | undefined) =>
  config?.scope !== undefined && config.scope !== 'public'

export default fp(
  async function readinessPlugin(app: FastifyInstance) {
    const readiness = new Readiness()
    app.decorate('readiness', readiness)

    // preParsing runs after authentication (an onRequest hook, so a bad key is still a 401) and
    // before any body is read.
    app.addHook('preParsing', (request, _reply, payload, done) => {
      if (readiness.shuttingDown && needsService(request.routeOptions.config)) {
        done(errors.shuttingDown())
        return
      }
      if (!readiness.schemaReady && needsService(request.routeOptions.config)) {
        const detail = readiness.starting
          ? 'The service is starting: the database is being opened and migrated; retry shortly'
          : 'The database schema is not ready yet; retry shortly'
        done(errors.databaseUnavailable(detail))
        return
      }
      done(null, payload)
    })

    app.addHook('onSend', (_request, reply, payload, done) => {
      if (readiness.shuttingDown) reply.header('connection', 'close')
      done(null, payload)
    })
    // Not during the drain: the listener is still open then, a connection just accepted counts as
    // idle, and the drain is there to keep serving.
    app.addHook('onResponse', (_request, _reply, done) => {
      if (readiness.shuttingDown && !app.server.listening) setImmediate(() => app.server.closeIdleConnections())
      done()
    })
    app.addHook('preClose', (done) => {
      readiness.beginShutdown()
      done()
    })
  },
  { name: 'filegate-readiness', dependencies: ['filegate-errors'] },
)
