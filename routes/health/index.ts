/**
 * Kubernetes probes. Liveness only says the event loop turns. Readiness needs the database to
 * answer with the expected schema and the process not to be shutting down; provider outages
 * are reported in the body but never fail readiness (SPEC §1).
 */
import { type FastifyPluginAsyncTypebox, Type } from '@fastify/type-provider-typebox'

const readinessTimeoutMs = 2_000

const Check = Type.Object({ ok: Type.Boolean(), detail: Type.Optional(Type.String()) })
const Readiness = Type.Object(
  {
    status: Type.Union([Type.Literal('ready'), Type.Literal('unavailable')]),
    checks: Type.Object({ database: Check, schema: Check, shutdown: Check }),
    transport: Type.String(),
    providers: Type.Record(Type.String(), Type.Object({ configured: Type.Boolean(), circuit: Type.String() })),
  },
  { $id: 'Readiness' },
)

const healthRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.get(
    '/healthz',
    {
      schema: {
        operationId: 'liveness',
        tags: ['probes'],
        summary: 'Liveness: 200 while the process and its event loop are alive',
        response: { 200: Type.Object({ status: Type.Literal('ok') }, { description: 'Alive' }) },
      },
      config: { rateLimit: false },
    },
    async () => ({ status: 'ok' as const }),
  )

  app.get(
    '/readyz',
    {
      schema: {
        operationId: 'readiness',
        tags: ['probes'],
        summary: 'Readiness: database answers, migrations applied, not shutting down',
        description: 'Provider outages do not fail readiness; they show in `providers`. A 503 carries Retry-After.',
        response: {
          200: { ...Readiness, description: 'Ready to take traffic' },
          503: { ...Readiness, description: 'Not ready: database down, schema not migrated, or shutting down' },
        },
      },
      config: { rateLimit: false },
    },
    async (_request, reply) => {
      const { lifecycle } = app
      let database: { ok: boolean; detail?: string } = { ok: true }
      let schema: { ok: boolean; detail?: string } = { ok: lifecycle.schemaReady }
      try {
        let timer: NodeJS.Timeout | undefined
        const version = await Promise.race([
          app.store.call<number>('filegate_schema_version'),
          new Promise<never>((_, reject) => {
            timer = setTimeout(() => reject(new Error('timed out')), readinessTimeoutMs)
          }),
        ]).finally(() => clearTimeout(timer))
        const ok = lifecycle.schemaReady && Number(version) >= app.expectedSchemaVersion
        schema = ok ? { ok } : { ok, detail: `schema ${version}, expected ${app.expectedSchemaVersion}` }
      } catch (err) {
        const code = (err as { code?: string }).code
        if (code === '42883' || code === 'PGRST202') {
          schema = { ok: false, detail: 'migrations not applied' }
        } else {
          database = { ok: false, detail: 'database did not answer' }
          schema = { ok: false, detail: 'unknown' }
        }
      }
      const shutdown = lifecycle.shuttingDown ? { ok: false, detail: 'shutting down' } : { ok: true }
      const ready = database.ok && schema.ok && shutdown.ok
      const providers = Object.fromEntries(
        (app.hasDecorator('providers') ? app.providers.list() : []).map((p) => [
          p.name,
          { configured: p.config.configured, circuit: p.circuitState() },
        ]),
      )
      reply.code(ready ? 200 : 503)
      if (!ready) reply.header('retry-after', '5')
      return {
        status: ready ? ('ready' as const) : ('unavailable' as const),
        checks: { database, schema, shutdown },
        transport: app.store.transport,
        providers,
      }
    },
  )
}

export default healthRoutes
