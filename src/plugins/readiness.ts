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
 * What /readyz answers is decided here too (`Readiness.check`): the database answers with the
 * code's schema, the originals store (when kept) answers, the process is not shutting down. Provider
 * outages never fail readiness: a provider down is that provider's problem (its circuit answers
 * fast), not a reason to take this replica out of the load balancer.
 */
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { errors } from '../errors.js'
import type { OriginalsStore } from '../originals/index.js'
import type { NotReadyReason, ReadinessCheck } from '../schemas.js'
import type { StorePort } from '../store/port.js'
import { schemaVersion } from '../store/queries.js'

/** What the last attempt to open and migrate the store found. */
export interface NotReadyFacts {
  database: ReadinessCheck
  schema: ReadinessCheck
}

/** What /readyz reports: each check, and (when not ready) the first reason. */
export interface ReadinessReport {
  ready: boolean
  reason?: NotReadyReason
  checks: { database: ReadinessCheck; schema: ReadinessCheck; shutdown: ReadinessCheck; originals?: ReadinessCheck }
}

/** What readiness asks: the database, the schema version the code expects, the originals store when kept. */
export interface ReadinessSources {
  store: StorePort
  expectedSchemaVersion: number
  originals: Pick<OriginalsStore, 'kind' | 'ping'> | undefined
  /** The store's own message may name the bucket or the path: it goes to the log, not the report. */
  log: { warn(fields: object, message: string): void }
}

/** How long a readiness check waits for the database or the originals store. */
const readinessTimeoutMs = 2_000

/** `work`, or a rejection once `readinessTimeoutMs` has passed. */
async function withinTimeout<T>(work: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([
      work,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error('timed out')), readinessTimeoutMs)
      }),
    ])
  } finally {
    clearTimeout(timer)
  }
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

  /** Asks the database and the originals store now, and reports whether the service is ready. */
  async check(sources: ReadinessSources): Promise<ReadinessReport> {
    const [{ database, schema }, originals] = await Promise.all([
      this.#databaseChecks(sources),
      originalsCheck(sources),
    ])
    const shutdown = this.#shuttingDown ? { ok: false, detail: 'shutting down' } : { ok: true }
    const checks = { database, schema, shutdown, ...(originals ? { originals } : {}) }
    if (database.ok && schema.ok && shutdown.ok && (originals?.ok ?? true)) return { ready: true, checks }
    const reason: NotReadyReason = this.#starting
      ? 'starting'
      : !shutdown.ok
        ? 'shutting down'
        : !database.ok
          ? 'database unavailable'
          : !schema.ok
            ? 'schema not ready'
            : 'originals unavailable'
    return { ready: false, reason, checks }
  }

  /** Does the database answer, with the code's schema? Not asked while start-up is still at it. */
  async #databaseChecks(sources: ReadinessSources): Promise<NotReadyFacts> {
    if (this.#starting) {
      return {
        database: { ok: false, detail: 'starting: opening the database and applying migrations' },
        schema: { ok: false, detail: 'starting' },
      }
    }
    // Not migrated yet: the start-up loop is retrying; report what its last attempt found.
    if (!this.#schemaReady && this.#notReady) return this.#notReady
    let version: number
    try {
      version = await withinTimeout(schemaVersion(sources.store))
    } catch {
      return { database: { ok: false, detail: 'database did not answer' }, schema: { ok: false, detail: 'unknown' } }
    }
    if (version === 0) return { database: { ok: true }, schema: { ok: false, detail: 'migrations not applied' } }
    const expected = sources.expectedSchemaVersion
    const ok = this.#schemaReady && version >= expected
    return { database: { ok: true }, schema: ok ? { ok } : { ok, detail: `schema ${version}, expected ${expected}` } }
  }
}

/** Does the originals store answer? One cheap round trip (a bucket HEAD, a directory access). */
async function originalsCheck(sources: ReadinessSources): Promise<ReadinessCheck | undefined> {
  const store = sources.originals
  if (!store) return undefined
  try {
    await withinTimeout(store.ping())
    return { ok: true }
  } catch (err) {
    sources.log.warn({ err }, 'readiness: the originals store did not answer')
    return { ok: false, detail: `the ${store.kind} originals store did not answer` }
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
