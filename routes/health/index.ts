/**
 * Kubernetes probes. Liveness only says the event loop turns. Readiness needs the database to
 * answer with the expected schema and the process not to be shutting down; provider outages
 * are reported in the body but never fail readiness: a provider down is that provider's
 * problem (its circuit answers fast), not a reason to take this replica out of the load balancer.
 * The originals store (ORIGINALS_URL), when configured, does fail it: every new upload must keep
 * its original, so a replica that cannot reach the store cannot take an upload.
 */
import { type FastifyPluginAsyncTypebox, Type } from '@fastify/type-provider-typebox'
import { schemaVersion } from '../../src/store/queries.js'

const readinessTimeoutMs = 2_000

const Check = Type.Object({ ok: Type.Boolean(), detail: Type.Optional(Type.String()) })
const Readiness = Type.Object(
  {
    status: Type.Union([Type.Literal('ready'), Type.Literal('unavailable')]),
    reason: Type.Optional(
      Type.Union(
        ['starting', 'shutting down', 'database unavailable', 'schema not ready', 'originals unavailable'].map((r) =>
          Type.Literal(r),
        ),
        { description: 'Why the service is not ready (absent when ready)' },
      ),
    ),
    checks: Type.Object({
      database: Check,
      schema: Check,
      shutdown: Check,
      originals: Type.Optional({
        ...Check,
        description: 'The originals store answers (only when ORIGINALS_URL is set)',
      }),
    }),
    transport: Type.String(),
    providers: Type.Record(Type.String(), Type.Object({ configured: Type.Boolean(), circuit: Type.String() })),
  },
  { $id: 'Readiness' },
)

interface CheckResult {
  ok: boolean
  detail?: string
}

const healthRoutes: FastifyPluginAsyncTypebox = async (app) => {
  /** Does the database answer, with the code's schema? Not asked while start-up is still at it. */
  async function databaseChecks(): Promise<{ database: CheckResult; schema: CheckResult }> {
    if (app.readiness.starting) {
      return {
        database: { ok: false, detail: 'starting: opening the database and applying migrations' },
        schema: { ok: false, detail: 'starting' },
      }
    }
    // Not migrated yet: the start-up loop is retrying; report what its last attempt found.
    if (!app.readiness.schemaReady && app.readiness.notReady) return app.readiness.notReady
    let timer: NodeJS.Timeout | undefined
    try {
      const version = await Promise.race([
        schemaVersion(app.store),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error('timed out')), readinessTimeoutMs)
        }),
      ])
      if (version === 0) return { database: { ok: true }, schema: { ok: false, detail: 'migrations not applied' } }
      const ok = app.readiness.schemaReady && version >= app.expectedSchemaVersion
      return {
        database: { ok: true },
        schema: ok ? { ok } : { ok, detail: `schema ${version}, expected ${app.expectedSchemaVersion}` },
      }
    } catch {
      return { database: { ok: false, detail: 'database did not answer' }, schema: { ok: false, detail: 'unknown' } }
    } finally {
      clearTimeout(timer)
    }
  }

  /** Does the originals store answer? One cheap round trip (a bucket HEAD, a directory access). */
  async function originalsCheck(): Promise<CheckResult | undefined> {
    const store = app.originals
    if (!store) return undefined
    let timer: NodeJS.Timeout | undefined
    try {
      await Promise.race([
        store.ping(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error('timed out')), readinessTimeoutMs)
        }),
      ])
      return { ok: true }
    } catch (err) {
      // The store's own message may name the bucket or the path: it goes to the log, not the body.
      app.log.warn({ err }, 'readiness: the originals store did not answer')
      return { ok: false, detail: `the ${store.kind} originals store did not answer` }
    } finally {
      clearTimeout(timer)
    }
  }

  app.get(
    '/healthz',
    {
      schema: {
        operationId: 'liveness',
        tags: ['probes'],
        summary: 'Liveness: 200 while the process and its event loop are alive',
        response: { 200: Type.Object({ status: Type.Literal('ok') }, { description: 'Alive' }) },
      },
      config: { rateLimit: false, scope: 'public' },
    },
    async () => ({ status: 'ok' as const }),
  )

  app.get(
    '/readyz',
    {
      schema: {
        operationId: 'readiness',
        tags: ['probes'],
        summary: 'Readiness: database answers, migrations applied, originals store answers, not shutting down',
        description:
          'Provider outages do not fail readiness; they show in `providers`. The originals store (when ' +
          'ORIGINALS_URL is set) does: uploads cannot succeed without it. A 503 carries Retry-After.',
        response: {
          200: { ...Readiness, description: 'Ready to take traffic' },
          503: {
            ...Readiness,
            description:
              'Not ready: starting, database down, schema not migrated, originals store down, or shutting down (see reason)',
          },
        },
      },
      config: { rateLimit: false, scope: 'public' },
    },
    async (_request, reply) => {
      const { readiness } = app
      const [{ database, schema }, originals] = await Promise.all([databaseChecks(), originalsCheck()])
      const shutdown = readiness.shuttingDown ? { ok: false, detail: 'shutting down' } : { ok: true }
      const ready = database.ok && schema.ok && shutdown.ok && (originals?.ok ?? true)
      const providers = Object.fromEntries(
        (app.hasDecorator('providers') ? app.providers.list() : []).map((p) => [
          p.name,
          { configured: p.config.configured, circuit: p.circuitState() },
        ]),
      )
      reply.code(ready ? 200 : 503)
      if (!ready) reply.header('retry-after', '5')
      const reason = readiness.starting
        ? ('starting' as const)
        : !shutdown.ok
          ? ('shutting down' as const)
          : !database.ok
            ? ('database unavailable' as const)
            : !schema.ok
              ? ('schema not ready' as const)
              : ('originals unavailable' as const)
      return {
        status: ready ? ('ready' as const) : ('unavailable' as const),
        ...(ready ? {} : { reason }),
        checks: { database, schema, shutdown, ...(originals ? { originals } : {}) },
        transport: app.store.transport,
        providers,
      }
    },
  )
}

export default healthRoutes
