/**
 * Kubernetes probes. Liveness only says the event loop turns. Readiness is the readiness plugin's
 * answer (src/plugins/readiness.ts: the database with the expected schema, the originals store
 * when ORIGINALS_URL is set, not shutting down); provider outages are reported in the body but
 * never fail it.
 */
import { type FastifyPluginAsyncTypebox, Type } from '@fastify/type-provider-typebox'
import { NotReadyReasonSchema, ReadinessCheckSchema } from '../../src/schemas.js'

const Readiness = Type.Object(
  {
    status: Type.Union([Type.Literal('ready'), Type.Literal('unavailable')]),
    reason: Type.Optional(NotReadyReasonSchema),
    checks: Type.Object({
      database: ReadinessCheckSchema,
      schema: ReadinessCheckSchema,
      shutdown: ReadinessCheckSchema,
      originals: Type.Optional({
        ...ReadinessCheckSchema,
        description: 'The originals store answers (only when ORIGINALS_URL is set)',
      }),
    }),
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
      const report = await app.readiness.check({
        store: app.store,
        expectedSchemaVersion: app.expectedSchemaVersion,
        originals: app.originals,
        log: app.log,
      })
      const providers = Object.fromEntries(
        (app.hasDecorator('providers') ? app.providers.list() : []).map((p) => [
          p.name,
          { configured: p.config.configured, circuit: p.circuitState() },
        ]),
      )
      reply.code(report.ready ? 200 : 503)
      if (!report.ready) reply.header('retry-after', '5')
      return {
        status: report.ready ? ('ready' as const) : ('unavailable' as const),
        ...(report.reason ? { reason: report.reason } : {}),
        checks: report.checks,
        transport: app.store.transport,
        providers,
      }
    },
  )
}

export default healthRoutes
